//! Short, common words for readable random aliases (`river_maple123`).

pub(crate) const WORDS: &[&str] = &[
    "able", "acid", "aged", "also", "area", "army", "away", "baby", "back", "bake", "ball", "band",
    "bank", "base", "bath", "bean", "bear", "beat", "bell", "belt", "bird", "blue", "boat", "body",
    "bold", "bone", "book", "boot", "bowl", "brave", "bread", "brick", "brook", "cake", "calm",
    "camp", "card", "care", "cart", "cash", "cave", "cell", "chalk", "charm", "chef", "cider",
    "city", "clay", "cliff", "cloud", "coal", "coast", "coat", "code", "coin", "cold", "comet",
    "coral", "corn", "cove", "crane", "creek", "crisp", "crow", "cube", "dawn", "deer", "desk",
    "dew", "dial", "dock", "dove", "draft", "dream", "dune", "dusk", "eagle", "earth", "echo",
    "elm", "ember", "fable", "fern", "field", "fig", "film", "finch", "fire", "flag", "flame",
    "flint", "flute", "foam", "fog", "forest", "fox", "frost", "garden", "gem", "glade", "glow",
    "goat", "gold", "grape", "grass", "grove", "gull", "harbor", "hare", "hawk", "hazel", "heron",
    "hill", "honey", "horse", "iris", "iron", "ivory", "jade", "jazz", "kelp", "kite", "lake",
    "lamp", "lark", "lava", "leaf", "lemon", "lily", "lime", "lotus", "lunar", "maple", "marsh",
    "meadow", "mint", "mist", "moon", "moss", "moth", "nest", "north", "oak", "oasis", "ocean",
    "olive", "onyx", "orbit", "otter", "owl", "palm", "panda", "pear", "pearl", "pebble", "pepper",
    "pine", "plum", "pond", "poppy", "quail", "quartz", "rain", "raven", "reed", "reef", "ridge",
    "river", "robin", "rose", "ruby", "sage", "sail", "salt", "sand", "seal", "shell", "silk",
    "sky", "slate", "snow", "solar", "spark", "spruce", "star", "stone", "storm", "stream", "sun",
    "swan", "tea", "thorn", "tide", "tiger", "topaz", "trail", "tulip", "vale", "valley", "violet",
    "wave", "whale", "willow", "wind", "wolf", "wren", "yarrow", "zebra", "zinc",
];
