use std::time::Duration;

use super::support::{CLIENT_IP, Harness, test_config};

#[tokio::test]
async fn happy_path_delivers_the_exact_body() {
    let mut h = Harness::start(test_config()).await;
    let ehlo = h.client.ehlo().await;
    assert_eq!(
        ehlo,
        "250-mx.alias.test\r\n250-PIPELINING\r\n250-SIZE 10000\r\n250-8BITMIME\r\n\
         250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n",
        "no STARTTLS without a TLS config"
    );
    let c = &mut h.client;
    c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME", "250 2.1.0")
        .await;
    c.cmd("RCPT TO:<alice@alias.test>", "250 2.1.5").await;
    c.cmd("DATA", "354 ").await;
    c.send_raw(b"Subject: hi\r\n\r\nHello \xc3\xa9\r\n.\r\n")
        .await
        .expect("250 2.0.0 Ok: queued as Q1\r\n")
        .await;

    let backend = h.quit().await;
    let (envelope, body) = backend.only_message();
    assert_eq!(body, b"Subject: hi\r\n\r\nHello \xc3\xa9\r\n");
    assert_eq!(envelope.mail_from, "sender@example.org");
    assert_eq!(envelope.rcpt_to, ["alice@alias.test"]);
    assert_eq!(envelope.remote_ip, CLIENT_IP);
    assert_eq!(envelope.helo, "client.example.org");
    assert!(!envelope.tls);
    assert!(envelope.body_8bit);
    assert!(!envelope.smtputf8);
}

#[tokio::test]
async fn helo_is_enough_and_transactions_repeat() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.cmd("HELO old.example.org", "250 2.0.0 mx.alias.test")
        .await;
    for n in 1..=2 {
        c.cmd("MAIL FROM:<s@example.org> SMTPUTF8", "250 2.1.0")
            .await;
        c.cmd("RCPT TO:<alice@alias.test>", "250 2.1.5").await;
        c.cmd("DATA", "354").await;
        c.send_raw(format!("n={n}\r\n.\r\n").as_bytes())
            .await
            .expect(&format!("250 2.0.0 Ok: queued as Q{n}"))
            .await;
    }
    let received = h.quit().await.received();
    assert_eq!(received.len(), 2);
    assert_eq!(received[1].1, b"n=2\r\n");
    assert_eq!(received[0].0.helo, "old.example.org");
    assert!(received[0].0.smtputf8);
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.send_raw(
        b"MAIL FROM:<s@example.org>\r\nRCPT TO:<a@alias.test>\r\n\
          RCPT TO:<nobody@alias.test>\r\nRCPT TO:<b@alias.test>\r\nDATA\r\n",
    )
    .await;
    c.expect("250 2.1.0").await;
    c.expect("250 2.1.5").await;
    c.expect("550 5.1.1").await;
    c.expect("250 2.1.5").await;
    c.expect("354").await;
    // The end of data and the next commands in one packet, too.
    c.send_raw(b"body\r\n.\r\nNOOP\r\nRSET\r\n").await;
    c.expect("250 2.0.0 Ok: queued as Q1").await;
    c.expect("250 2.0.0 OK").await;
    c.expect("250 2.0.0 Reset").await;
    let (envelope, body) = h.quit().await.only_message();
    assert_eq!(envelope.rcpt_to, ["a@alias.test", "b@alias.test"]);
    assert_eq!(body, b"body\r\n");
}

#[tokio::test]
async fn commands_out_of_order_get_503() {
    let mut config = test_config();
    config.max_errors = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.cmd("MAIL FROM:<s@example.org>", "503 5.5.1").await;
    c.ehlo().await;
    c.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    c.cmd("DATA", "503 5.5.1").await;
    c.cmd("MAIL FROM:<s@example.org>", "250 2.1.0").await;
    c.cmd("DATA", "554 5.5.1 No valid recipients").await;
    c.cmd("MAIL FROM:<again@example.org>", "503 5.5.1").await;
    c.cmd("RCPT TO:<nobody@alias.test>", "550 5.1.1").await;
    c.cmd("DATA", "554 5.5.1").await;
    c.cmd("RSET", "250 2.0.0").await;
    c.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    h.quit().await;
}

#[tokio::test]
async fn declared_size_over_the_limit_is_refused_at_mail() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.cmd(
        "MAIL FROM:<s@example.org> SIZE=10001",
        "552 5.3.4 Message too big",
    )
    .await;
    c.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    c.cmd("MAIL FROM:<s@example.org> SIZE=10000", "250 2.1.0")
        .await;
    c.cmd("RSET", "250 2.0.0").await;
    // Too large for any integer: still too big, not wrapped around to a small number.
    c.cmd(
        "MAIL FROM:<s@example.org> size=99999999999999999999999",
        "552 5.3.4 Message too big",
    )
    .await;
    h.quit().await;
}

#[tokio::test]
async fn recipients_beyond_the_limit_get_452_and_duplicates_count_once() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.cmd("MAIL FROM:<s@example.org>", "250 2.1.0").await;
    c.cmd("RCPT TO:<a@alias.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<a@alias.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<A@alias.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<b@alias.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<c@alias.test>", "250 2.1.5").await;
    c.cmd("RCPT TO:<d@alias.test>", "452 4.5.3 Too many recipients")
        .await;
    c.cmd("DATA", "354").await;
    c.send_raw(b"x\r\n.\r\n").await.expect("250 2.0.0").await;
    let (envelope, _) = h.quit().await.only_message();
    assert_eq!(
        envelope.rcpt_to,
        ["a@alias.test", "b@alias.test", "c@alias.test"]
    );
}

#[tokio::test]
async fn recipient_verdicts_map_to_replies() {
    let mut config = test_config();
    config.max_errors = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.cmd("MAIL FROM:<s@example.org>", "250 2.1.0").await;
    c.cmd("RCPT TO:<nobody@alias.test>", "550 5.1.1").await;
    c.cmd("RCPT TO:<someone@elsewhere.example>", "550 5.7.1")
        .await;
    c.cmd("RCPT TO:<tempfail@alias.test>", "451 4.3.0").await;
    c.cmd("RCPT TO:<not an address>", "501 5.1.3").await;
    c.cmd("RCPT TO:<a@b@alias.test>", "501 5.1.3").await;
    c.cmd("RCPT TO:<>", "501 5.1.3").await;
    c.cmd("RCPT TO:a@alias.test", "501 5.1.3").await;
    // RFC 5321 appendix C: a source route is accepted and ignored.
    c.cmd(
        "RCPT TO:<@relay.example,@b.example:a@alias.test>",
        "250 2.1.5",
    )
    .await;
    c.cmd("RCPT TO:<PostMaster>", "250 2.1.5").await;
    c.cmd("DATA", "354").await;
    c.send_raw(b"x\r\n.\r\n").await.expect("250 2.0.0").await;
    let (envelope, _) = h.quit().await.only_message();
    assert_eq!(envelope.rcpt_to, ["a@alias.test", "postmaster"]);
}

#[tokio::test]
async fn message_verdicts_map_to_replies() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    for (header, reply) in [
        ("X-Verdict: malformed", "554 5.6.0"),
        ("X-Verdict: tempfail", "451 4.3.0"),
    ] {
        c.start_message("s@example.org", "a@alias.test").await;
        c.send_raw(format!("{header}\r\n\r\nx\r\n.\r\n").as_bytes())
            .await
            .expect(reply)
            .await;
    }
    assert!(h.quit().await.received().is_empty());
}

#[tokio::test]
async fn null_sender_is_accepted() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.start_message("", "a@alias.test").await;
    c.send_raw(b"bounce\r\n.\r\n")
        .await
        .expect("250 2.0.0")
        .await;
    let (envelope, _) = h.quit().await.only_message();
    assert_eq!(envelope.mail_from, "");
}

#[tokio::test]
async fn other_verbs() {
    let mut config = test_config();
    config.max_errors = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.cmd("NOOP", "250 2.0.0").await;
    c.cmd("VRFY alice", "252 2.5.2").await;
    c.cmd("HELP", "214 2.0.0").await;
    c.cmd("AUTH PLAIN AGFAAGI=", "502 5.5.1").await;
    c.cmd("BDAT 10 LAST", "502 5.5.1").await;
    c.cmd("EXPN list", "502 5.5.1").await;
    c.cmd("STARTTLS", "502 5.5.1").await;
    c.cmd("MAIL FROM:<s@example.org> BODY=BINARYMIME", "503 5.5.1")
        .await;
    c.ehlo().await;
    c.cmd("MAIL FROM:<s@example.org> BODY=BINARYMIME", "555 5.5.4")
        .await;
    c.cmd("MAIL FROM:<s@example.org> FOO=BAR", "555 5.5.4")
        .await;
    c.cmd("MAIL FROM:s@example.org", "501 5.1.7").await;
    c.cmd("EHLO", "501 5.5.4").await;
    h.quit().await;
}

#[tokio::test]
async fn long_lines_get_500_without_being_buffered() {
    let mut config = test_config();
    config.max_errors = 100;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    // Complete in one packet.
    let mut line = vec![b'A'; 1001];
    line.extend_from_slice(b"\r\n");
    c.send_raw(&line)
        .await
        .expect("500 5.5.2 Line too long")
        .await;
    // Far longer than smtp-proto's own 4096 limit, arriving in pieces: one reply, and
    // the tail of the line is skipped rather than parsed as commands.
    c.send_raw(&[b'B'; 3000]).await.expect("500 5.5.2").await;
    c.send_raw(&[b'C'; 20_000]).await;
    c.send_raw(b"QUIT\r\nNOOP\r\n")
        .await
        .expect("250 2.0.0 OK")
        .await;
    // A 1000-octet line (CRLF included) is still a command.
    let mut noop = b"NOOP ".to_vec();
    noop.resize(998, b'x');
    noop.extend_from_slice(b"\r\n");
    c.send_raw(&noop).await.expect("250 2.0.0").await;
    h.quit().await;
}

#[tokio::test]
async fn garbage_gets_500_and_no_panic() {
    let mut config = test_config();
    config.max_errors = 10_000;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.send_raw(b"\xff\xfe\x00\x01garbage\r\n")
        .await
        .expect("500 5.5.1")
        .await;
    c.send_raw(b"\r\n").await.expect("500 5.5.1").await;
    c.send_raw(b"MAIL \xc3\x28\r\n").await.expect("50").await;
    c.send_raw(b"RCPT TO:<\xff@alias.test>\r\n")
        .await
        .expect("50")
        .await;
    // Deterministic pseudo-random lines; each gets exactly one well-formed reply.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let len = usize::try_from(next() % 200).unwrap_or(0);
        let mut line: Vec<u8> = (0..len)
            .map(|_| next().to_le_bytes()[0])
            .filter(|&b| b != b'\n')
            .collect();
        line.extend_from_slice(b"\r\n");
        c.send_raw(&line).await.expect("5").await;
    }
    c.cmd("NOOP", "250 2.0.0").await;
    h.quit().await;
}

#[tokio::test]
async fn too_many_errors_close_the_session() {
    let mut config = test_config();
    config.max_errors = 3;
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.cmd("FOO", "500 5.5.1").await;
    c.cmd("MAIL FROM:<s@example.org>", "503 5.5.1").await;
    c.cmd("BAR", "500 5.5.1").await;
    c.expect("421 4.7.0").await;
    c.expect_closed().await;
    h.finished().await;
}

#[tokio::test]
async fn idle_client_is_closed_with_421() {
    let mut config = test_config();
    config.command_timeout = Duration::from_millis(200);
    let mut h = Harness::start(config).await;
    h.client.ehlo().await;
    h.client.expect("421 4.4.2").await;
    h.client.expect_closed().await;
    h.finished().await;
}

#[tokio::test]
async fn stalled_data_is_closed_with_421() {
    let mut config = test_config();
    config.data_timeout = Duration::from_millis(200);
    let mut h = Harness::start(config).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.start_message("s@example.org", "a@alias.test").await;
    c.send_raw(b"Subject: half a message\r\n").await;
    c.expect("421 4.4.2").await;
    c.expect_closed().await;
    assert!(h.finished().await.received().is_empty());
}

#[tokio::test]
async fn client_disconnect_mid_data_is_not_delivered() {
    let mut h = Harness::start(test_config()).await;
    let c = &mut h.client;
    c.ehlo().await;
    c.start_message("s@example.org", "a@alias.test").await;
    c.send_raw(b"partial").await;
    assert!(h.finished().await.received().is_empty());
}
