use super::support::{Harness, TempDir, test_config, tls_pair};

#[tokio::test]
async fn starttls_upgrades_and_resets_the_session() {
    let dir = TempDir::new("starttls-upgrade");
    let (server_tls, connector) = tls_pair(&dir);
    let mut h = Harness::start_with_tls(test_config(), Some(server_tls)).await;
    let ehlo = h.client.ehlo().await;
    assert!(ehlo.ends_with("250 STARTTLS\r\n"), "{ehlo}");
    h.client.cmd("MAIL FROM:<s@example.org>", "250 2.1.0").await;
    h.client
        .cmd("STARTTLS", "220 2.0.0 Ready to start TLS")
        .await;

    let mut h = h.upgrade(&connector).await;
    let c = &mut h.client;
    // The clear-text transaction and greeting are forgotten.
    c.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    c.cmd("MAIL FROM:<s@example.org>", "503 5.5.1").await;
    let ehlo = c.ehlo().await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    c.cmd("STARTTLS", "503 5.5.1").await;
    c.start_message("s@example.org", "a@alias.test").await;
    c.send_raw(b"secret\r\n.\r\n")
        .await
        .expect("250 2.0.0")
        .await;

    let (envelope, body) = h.quit().await.only_message();
    assert!(envelope.tls);
    assert_eq!(body, b"secret\r\n");
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let dir = TempDir::new("starttls-injection");
    let (server_tls, connector) = tls_pair(&dir);
    let mut h = Harness::start_with_tls(test_config(), Some(server_tls)).await;
    h.client.ehlo().await;
    h.client
        .send_raw(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<a@alias.test>\r\n")
        .await
        .expect("220 2.0.0")
        .await;
    // `upgrade` also checks that no reply followed the 220 in clear text.
    let mut h = h.upgrade(&connector).await;
    // Had the injected commands run inside TLS, their replies would come first.
    h.client.ehlo().await;
    h.client.cmd("RCPT TO:<a@alias.test>", "503 5.5.1").await;
    assert!(h.quit().await.received().is_empty());
}

#[tokio::test]
async fn a_failed_handshake_ends_the_session_quietly() {
    let dir = TempDir::new("starttls-garbage");
    let (server_tls, _) = tls_pair(&dir);
    let mut h = Harness::start_with_tls(test_config(), Some(server_tls)).await;
    h.client.ehlo().await;
    h.client.cmd("STARTTLS", "220 2.0.0").await;
    h.client.send("EHLO this is not a ClientHello").await;
    h.finished().await;
}
