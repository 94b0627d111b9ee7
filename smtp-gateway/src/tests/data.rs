use super::support::{Harness, test_config};

/// Runs one DATA with `content` sent in a single write, then QUIT; returns the reply to the
/// content and what the backend received.
async fn deliver(content: &[u8]) -> (String, Vec<Vec<u8>>) {
    let mut h = Harness::start(test_config()).await;
    h.client.ehlo().await;
    h.client
        .start_message("s@example.org", "a@alias.test")
        .await;
    let reply = h.client.send_raw(content).await.expect("2").await;
    let received = h.quit().await.received();
    (reply, received.into_iter().map(|(_, body)| body).collect())
}

#[tokio::test]
async fn a_lone_dot_on_the_first_line_is_an_empty_message() {
    let (reply, bodies) = deliver(b".\r\n").await;
    assert!(reply.starts_with("250 2.0.0 Ok: queued as Q1"));
    assert_eq!(bodies, [b""]);
}

#[tokio::test]
async fn a_stuffed_dot_on_the_first_line_is_unstuffed() {
    let (_, bodies) = deliver(b"..foo\r\nbar\r\n.\r\n").await;
    assert_eq!(bodies, [b".foo\r\nbar\r\n"]);
}

#[tokio::test]
async fn dot_stuffing_in_the_middle_is_undone() {
    let (_, bodies) = deliver(b"a\r\n..b\r\n.c\r\n...\r\n..\r\n.\r\n").await;
    assert_eq!(bodies, [b"a\r\n.b\r\nc\r\n..\r\n.\r\n"]);
}

#[tokio::test]
async fn eight_bit_and_nul_bytes_pass_through() {
    let content = b"\x00\xff\xfe binary\r\n\xc3\xa9t\xc3\xa9\r\n";
    let mut wire = content.to_vec();
    wire.extend_from_slice(b".\r\n");
    let (_, bodies) = deliver(&wire).await;
    assert_eq!(bodies, [content]);
}

/// SMTP smuggling (CVE-2023-51764 and kin): only CRLF.CRLF ends the data, so the
/// commands after a fake terminator stay message content and never run.
#[tokio::test]
async fn fake_terminators_do_not_end_the_message() {
    // (fake terminator, what it leaves in the body): after a real CRLF the dot is
    // unstuffed like any leading dot, but the line goes on.
    let cases: [(&[u8], &[u8]); 5] = [
        (b"\n.\n", b"\n.\n"),
        (b"\n.\r\n", b"\n.\r\n"),
        (b"\r.\r\n", b"\r.\r\n"),
        (b"\r.\r", b"\r.\r"),
        (b"\r\n.\n", b"\r\n\n"),
    ];
    let smuggled: &[u8] = b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@alias.test>\r\n\
        DATA\r\nSubject: smuggled\r\n\r\nsmuggled";
    for (fake, kept) in cases {
        let head = b"Subject: smuggle\r\n\r\nhello";
        let wire = [&head[..], fake, smuggled, b"\r\n.\r\n"].concat();
        let mut content = [&head[..], kept, smuggled].concat();
        // One reply and then QUIT's: the smuggled commands produced none.
        let (reply, bodies) = deliver(&wire).await;
        assert!(reply.starts_with("250 2.0.0 Ok: queued as Q1"), "{fake:?}");
        content.extend_from_slice(b"\r\n");
        assert_eq!(bodies, [content], "{fake:?}");
    }
}

/// The same, fed one byte per write, so every terminator straddles reads.
#[tokio::test]
async fn terminators_split_across_reads_are_found() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.start_message("s@example.org", "a@alias.test").await;
    let wire = b"..x\r\nhi\n.\nMAIL FROM:<e@example.org>\r\n..\r\n\r.\r\nend\r\n.\r\n";
    for byte in &wire[..wire.len() - 1] {
        c.send_raw(std::slice::from_ref(byte)).await;
    }
    c.send_raw(b"\n")
        .await
        .expect("250 2.0.0 Ok: queued as Q1")
        .await;
    let (_, body) = h.quit().await.only_message();
    assert_eq!(
        body,
        b".x\r\nhi\n.\nMAIL FROM:<e@example.org>\r\n.\r\n\r.\r\nend\r\n"
    );
}

#[tokio::test]
async fn oversized_content_is_drained_and_refused() {
    let mut config = test_config();
    config.max_message_size = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.start_message("s@example.org", "a@alias.test").await;
    // Commands inside the oversized part are discarded with it.
    let mut big = b"MAIL FROM:<x@example.org>\r\n".repeat(2000);
    big.extend_from_slice(b".\r\n");
    c.send_raw(&big)
        .await
        .expect("552 5.3.4 Message too big")
        .await;
    // The transaction is over, the session goes on.
    c.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    c.start_message("s@example.org", "a@alias.test").await;
    c.send_raw(b"small\r\n.\r\n")
        .await
        .expect("250 2.0.0")
        .await;
    let (_, body) = h.quit().await.only_message();
    assert_eq!(body, b"small\r\n");
}

#[tokio::test]
async fn the_size_limit_is_exact() {
    let mut config = test_config();
    config.max_message_size = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.ehlo().await;
    for (len, reply) in [(100, "250 2.0.0"), (101, "552 5.3.4"), (102, "552 5.3.4")] {
        c.start_message("s@example.org", "a@alias.test").await;
        let mut body = vec![b'x'; len - 2];
        body.extend_from_slice(b"\r\n.\r\n");
        c.send_raw(&body).await.expect(reply).await;
    }
    let (_, body) = h.quit().await.only_message();
    assert_eq!(body.len(), 100);
}
