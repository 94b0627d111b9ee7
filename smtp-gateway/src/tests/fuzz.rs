//! Arbitrary bytes against the session state machine: whatever a client sends, the session
//! answers only well-formed replies, never panics, and ends. Bounded (proptest), so it runs in
//! every test run; a failing case is kept in `proptest-regressions/` and replayed first.

use std::sync::Arc;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{CLIENT_IP, TestBackend, test_config};
use crate::Session;

/// Commands and fragments a fuzzed dialogue is built from, besides raw bytes.
const WORDS: &[&str] = &[
    "EHLO x.test\r\n",
    "HELO x\r\n",
    "MAIL FROM:<a@ext.test>\r\n",
    "MAIL FROM:<> SIZE=99999999999999999999\r\n",
    "RCPT TO:<b@alias.test>\r\n",
    "RCPT TO:<nobody@alias.test>\r\n",
    "RCPT TO:<@x:y@z>\r\n",
    "DATA\r\n",
    "BDAT 10 LAST\r\n",
    "STARTTLS\r\n",
    "RSET\r\n",
    "NOOP\r\n",
    "VRFY x\r\n",
    "AUTH PLAIN AAAA\r\n",
    "QUIT\r\n",
    "Subject: x\r\n\r\nbody\r\n",
    ".\r\n",
    "\r\n.\r\n",
    "\n.\n",
    "..\r\n",
    "\r\n",
    "\0",
    "\u{00ff}\u{00fe}",
];

fn dialogue() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        proptest::sample::select(WORDS).prop_map(|w| w.as_bytes().to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        (1usize..1500).prop_map(|n| vec![b'A'; n]),
    ];
    // Half the dialogues open a transaction properly first, so message content and the
    // states after DATA get fuzzed too.
    (any::<bool>(), proptest::collection::vec(piece, 0..24)).prop_map(|(open, pieces)| {
        let mut out = Vec::new();
        if open {
            out.extend_from_slice(
                b"EHLO x.test\r\nMAIL FROM:<a@ext.test>\r\nRCPT TO:<b@alias.test>\r\nDATA\r\n",
            );
        }
        out.extend(pieces.concat());
        out
    })
}

/// Runs one session over an in-memory stream fed `input`; returns what it wrote.
async fn run(input: Vec<u8>) -> Vec<u8> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let session = Session::new(
        server,
        CLIENT_IP,
        Arc::new(test_config()),
        None,
        Arc::new(TestBackend::default()),
    );
    let task = tokio::spawn(session.run());
    let (mut read, mut write) = tokio::io::split(client);
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&input).await;
        let _ = write.shutdown().await;
    });
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        read.read_to_end(&mut out),
    )
    .await
    .expect("the session ends when the input does");
    let _ = writer.await;
    task.await.expect("the session task does not panic");
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_get_well_formed_replies(input in dialogue()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let out = runtime.block_on(run(input));
        let text = String::from_utf8(out).expect("replies are text");
        prop_assert!(text.starts_with("220 "), "{text}");
        for line in text.split_terminator("\r\n") {
            let b = line.as_bytes();
            prop_assert!(
                b.len() >= 4 && b[..3].iter().all(u8::is_ascii_digit) && (b[3] == b' ' || b[3] == b'-'),
                "malformed reply line {line:?}"
            );
            prop_assert!(b.len() <= 512, "reply line too long");
        }
    }
}
