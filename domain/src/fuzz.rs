//! Property tests over untrusted input, bounded so they run with every test run. Messages
//! are the seed corpus in `fuzz-corpus/` mutated (bytes flipped, inserted, cut, spliced) or
//! raw bytes; a failing case is kept in `proptest-regressions/` and replayed first.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::message::{Arrival, ParsedMessage};
use crate::rewrite::{self, ForwardContext, Mailbox, ReplyContext, SenderFormat};
use crate::scrub::Scrubber;
use crate::secrets::HmacKey;
use crate::verp::Verp;

fn seeds() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz-corpus");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .expect("the seed corpus")
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {dir}");
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize, usize),
    Splice(usize, usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let interesting = prop_oneof![
        Just(b"\r\n".to_vec()),
        Just(b"\r\n\r\n".to_vec()),
        Just(b"=?utf-8?b?".to_vec()),
        Just(b"?=".to_vec()),
        Just(b"--o".to_vec()),
        Just(b"Content-Transfer-Encoding: base64\r\n".to_vec()),
        Just(b"Content-Type: message/rfc822\r\n".to_vec()),
        Just(b"me@real.test".to_vec()),
        Just(b"=4".to_vec()),
        Just(b"<".to_vec()),
        Just(b"\"".to_vec()),
        Just(b" ".to_vec()),
        proptest::collection::vec(any::<u8>(), 1..16),
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), interesting).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), 0usize..64).prop_map(|(i, n)| Mutation::Cut(i, n)),
        (any::<usize>(), any::<usize>(), 1usize..64)
            .prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x = *b;
                }
            }
            Mutation::Insert(i, b) => {
                let at = i % (bytes.len() + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Cut(i, n) => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Splice(a, b, n) => {
                let from = a % len;
                let to = (from + n).min(bytes.len());
                let piece: Vec<u8> = bytes.get(from..to).unwrap_or_default().to_vec();
                let at = b % (bytes.len() + 1);
                bytes.splice(at..at, piece);
            }
        }
    }
    bytes
}

fn message() -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds();
    let n = seeds.len();
    prop_oneof![
        3 => (0..n, proptest::collection::vec(mutation(), 0..12))
            .prop_map(move |(i, m)| mutate(seeds[i].clone(), &m)),
        1 => proptest::collection::vec(any::<u8>(), 0..2048),
    ]
}

/// The whole message path on one input: report reading, receive (repair + parse), forward
/// rewrite, reply rewrite, scrub. Panics are the failures; outputs must still be messages.
fn through_the_pipeline(raw: Vec<u8>) {
    // What a bounce address receives is read as a report first.
    let report = crate::dsn::read(&raw);
    let _ = report.about("me@real.test");
    let arrival = Arrival {
        mail_from: "bob@ext.test",
        id_domain: "reply.test",
        received: Some("Received: from x ([192.0.2.1])\r\n\tby mx.alias.test; now"),
        authentication: Some("Authentication-Results: mx.alias.test; spf=none\r\n"),
        now: 1_796_000_000,
    };
    let Ok(message) = ParsedMessage::receive(raw, &arrival) else {
        return;
    };
    let reverse: HashMap<String, String> = message
        .inspection
        .addresses
        .iter()
        .enumerate()
        .map(|(i, (_, m))| (m.address.to_lowercase(), format!("ra-{i}@reply.test")))
        .collect();
    let fallback = Mailbox {
        name: None,
        address: "bob@ext.test".into(),
    };
    let mut reverse = reverse;
    reverse.insert("bob@ext.test".into(), "ra-bob@reply.test".into());
    let forward = rewrite::rewrite_forward(
        message.raw(),
        &ForwardContext {
            alias: "shop@alias.test",
            envelope_from: "bob@ext.test",
            original_from: Some(&fallback),
            reverse_aliases: &reverse,
            restore_ids: &HashMap::new(),
            sender_format: SenderFormat::At,
            warning: false,
        },
    );
    if let Ok(forward) = forward {
        assert!(
            ParsedMessage::parse(forward).is_ok(),
            "a forward is a message"
        );
    }
    let contacts: HashMap<String, Mailbox> = message
        .recipients
        .iter()
        .map(|r| {
            (
                r.clone(),
                Mailbox {
                    name: Some("Contact".into()),
                    address: format!("real-{r}"),
                },
            )
        })
        .collect();
    let reply = rewrite::rewrite_reply(
        message.raw(),
        &ReplyContext {
            alias: "shop@alias.test",
            mailbox: "me@real.test",
            alias_name: None,
            contacts: &contacts,
            new_message_id: "new@alias.test",
            map_ids: &HashMap::new(),
        },
    );
    let scrubber = Scrubber::new(["me@real.test", "me@work.test"], "shop@alias.test");
    if let Ok(reply) = reply {
        let scrubbed = scrubber.message(&reply);
        // Scrubbing twice changes nothing more.
        assert_eq!(scrubber.message(&scrubbed), scrubbed);
    }
    let _ = scrubber.message(message.raw());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn messages_never_break_the_pipeline(raw in message()) {
        through_the_pipeline(raw);
    }

    #[test]
    fn verp_and_reverse_alias_codecs(local in ".{0,80}", id in any::<i64>(), email in "[a-z0-9._+-]{1,30}@[a-z0-9.-]{1,30}") {
        let key = HmacKey::from_bytes([7; 32]);
        // Anything that is not ours is refused, never a panic.
        let forged = Verp::verify(&key, &local);
        prop_assert!(forged.is_none() || local.starts_with("b."));
        let address = Verp::address(&key, id, "reply.test");
        let local_part = address.split('@').next().unwrap_or_default();
        prop_assert_eq!(Verp::verify(&key, local_part).map(|v| v.delivery_id), Some(id));
        prop_assert!(Verp::looks_like(local_part));
        let reverse = crate::accounts::reverse_alias_address(&key, id, &email, "reply.test");
        prop_assert_eq!(&reverse, &crate::accounts::reverse_alias_address(&key, id, &email, "reply.test"));
        prop_assert!(crate::EmailAddress::parse(&reverse).is_ok(), "{}", reverse);
        prop_assert!(!Verp::looks_like(reverse.split('@').next().unwrap_or_default()));
    }
}

#[test]
fn every_seed_goes_through_as_it_is() {
    for seed in seeds() {
        through_the_pipeline(seed);
    }
}
