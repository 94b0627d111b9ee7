//! Email addresses as a parsed newtype: once built, an address is trusted everywhere.

use std::fmt;

/// A lowercase `local@domain` address with no routing tricks in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EmailAddress {
    full: String,
    at: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a valid email address: {reason}")]
pub struct AddressError {
    pub input: String,
    pub reason: &'static str,
}

impl EmailAddress {
    /// Parses an address, optionally in angle brackets.
    ///
    /// Rejects everything a relay could be tricked with: percent-hack (`a%b@c`), bang paths,
    /// source routes (`@a,@b:c@d`), quoted local parts and a second `@`.
    pub fn parse(input: &str) -> Result<Self, AddressError> {
        let err = |reason| AddressError {
            input: input.chars().take(256).collect(),
            reason,
        };
        let s = input.trim();
        let s = s
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(s);
        if s.is_empty() {
            return Err(err("it is empty"));
        }
        if s.len() > 254 {
            return Err(err("it is longer than 254 characters"));
        }
        if s.chars()
            .any(|c| c.is_control() || c.is_whitespace() || "\"%!:,;<>()[]\\".contains(c))
        {
            return Err(err("it contains a character not allowed in an address"));
        }
        let Some(at) = s.find('@') else {
            return Err(err("it has no @"));
        };
        if s[at + 1..].contains('@') {
            return Err(err("it has more than one @"));
        }
        let (local, domain) = (&s[..at], &s[at + 1..]);
        if local.is_empty() || local.len() > 64 {
            return Err(err("the part before @ must be 1 to 64 characters"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(err("the part before @ has a misplaced dot"));
        }
        let domain = domain.trim_end_matches('.');
        if !postern_config::is_domain(domain) || !domain.contains('.') && domain != "localhost" {
            return Err(err("the domain is not valid"));
        }
        let full = format!("{}@{}", local, domain).to_lowercase();
        let at = full.rfind('@').unwrap_or(0);
        Ok(Self { full, at })
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn local(&self) -> &str {
        &self.full[..self.at]
    }

    pub fn domain(&self) -> &str {
        &self.full[self.at + 1..]
    }

    pub fn into_string(self) -> String {
        self.full
    }
}

/// Whether a local part is safe to hand out as an alias: no invisible characters, nothing
/// that normalises to something else (fullwidth letters, ligatures), and letters from one
/// script only, so `pаypal` with a Cyrillic `а` cannot pass for `paypal`. `Err` says why.
pub fn check_local_part(local: &str) -> Result<(), &'static str> {
    use unicode_normalization::UnicodeNormalization;
    if local.is_ascii() {
        return Ok(());
    }
    if local.chars().any(is_invisible) {
        return Err("contains an invisible character");
    }
    if local.nfkc().ne(local.chars()) {
        return Err("contains a character that normalises to another (fullwidth, ligature, …)");
    }
    let mut scripts = local
        .chars()
        .filter(|c| c.is_alphabetic())
        .map(script_of)
        .collect::<Vec<_>>();
    scripts.dedup();
    scripts.sort_unstable();
    scripts.dedup();
    if scripts.len() > 1 {
        return Err("mixes letters of different scripts");
    }
    Ok(())
}

/// Format and default-ignorable characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// The script of a letter, by Unicode block: enough to tell the scripts whose letters look
/// alike (Latin, Greek, Cyrillic, Armenian, Cherokee) apart; every other block counts as its
/// own script.
fn script_of(c: char) -> u32 {
    match u32::from(c) {
        0x0000..=0x024F | 0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF => 1, // Latin
        0x0370..=0x03FF | 0x1F00..=0x1FFF => 2,                                     // Greek
        0x0400..=0x052F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => 3, // Cyrillic
        0x0530..=0x058F => 4,                                                       // Armenian
        0x13A0..=0x13FF | 0xAB70..=0xABBF => 5,                                     // Cherokee
        // Han, kana and Hangul are written together.
        0x3040..=0x30FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xAC00..=0xD7AF => 6,
        other => 0x100 + (other >> 7),
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl AsRef<str> for EmailAddress {
    fn as_ref(&self) -> &str {
        &self.full
    }
}

#[cfg(test)]
mod tests {
    use super::EmailAddress;

    #[test]
    fn accepts_and_lowercases() {
        let a = EmailAddress::parse("<Shop.Cat123@Example.COM>").expect("valid");
        assert_eq!(a.as_str(), "shop.cat123@example.com");
        assert_eq!((a.local(), a.domain()), ("shop.cat123", "example.com"));
        assert!(EmailAddress::parse("a+tag@sub.example.org").is_ok());
        assert!(EmailAddress::parse("postmaster@localhost").is_ok());
    }

    #[test]
    fn local_parts_that_pass_for_another_are_refused() {
        use super::check_local_part;
        for ok in ["shop.cat123", "zoë", "пример", "δοκιμή", "例え", "jürgen-2"] {
            assert_eq!(check_local_part(ok), Ok(()), "{ok}");
        }
        for bad in [
            "p\u{0430}ypal",  // Cyrillic а among Latin letters
            "admin\u{200B}",  // zero-width space
            "\u{FF50}aypal",  // fullwidth p
            "pay\u{00AD}pal", // soft hyphen
            "\u{FB01}nance",  // ﬁ ligature
            "\u{03BF}penai",  // Greek omicron among Latin letters
        ] {
            assert!(check_local_part(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn rejects_routing_tricks_and_garbage() {
        for bad in [
            "",
            "plain",
            "a%b@alias.test",
            "b!a@alias.test",
            "@relay.test:victim@alias.test",
            "@a,@b:c@d.test",
            "\"x@evil.test\"@alias.test",
            "a@b@alias.test",
            "a b@alias.test",
            "a@alias..test",
            "a@-alias.test",
            ".a@alias.test",
            "a@nodot",
            "a\r\n@alias.test",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }
}
