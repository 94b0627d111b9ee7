//! Direct delivery under MTA-STS: a domain whose policy is `enforce` gets mail only over TLS
//! with a certificate its policy vouches for; never in clear text, never to another host.
//! Everything on loopback: the MX host and the policy server answer for names the test DNS
//! serves, with certificates from the tests' own CA (trusted through `outbound.ca_file`).

use std::collections::HashMap;

use postern_tests::client;
use postern_tests::harness::{TestServer, WAIT};
use postern_tests::sink::Sink;
use postern_tests::tls::{TestCa, serve_policies};

use crate::message;

const MAILBOX: &str = "me@mbox.test";

enum Mx {
    /// STARTTLS with a certificate for mx.mbox.test from the test CA.
    Trusted,
    /// STARTTLS with a self-signed certificate for another name.
    SelfSigned,
    /// No STARTTLS at all.
    Plain,
}

struct Setup {
    server: TestServer,
    mx: Sink,
    alias: String,
    _dir: tempfile::TempDir,
}

async fn setup(mx: Mx, policy: Option<&str>) -> Setup {
    let dir = tempfile::tempdir().expect("dir");
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).expect("write CA");
    let mx = match mx {
        Mx::Trusted => Sink::start_with_tls(ca.server(dir.path(), &["mx.mbox.test"])).await,
        Mx::SelfSigned => Sink::start_tls(dir.path()).await,
        Mx::Plain => Sink::start().await,
    };
    let mut bodies = HashMap::new();
    if let Some(body) = policy {
        bodies.insert("mta-sts.mbox.test".to_string(), body.to_string());
    }
    let policy_server = serve_policies(ca.server(dir.path(), &["mta-sts.mbox.test"]), bodies).await;
    let (mx_port, sts_port, ca_path) = (
        mx.addr.port().to_string(),
        policy_server.port().to_string(),
        ca_file.to_string_lossy().into_owned(),
    );
    let server = TestServer::start_with(&[
        ("outbound.relay", ""),
        ("outbound.mx_port", &mx_port),
        ("outbound.mta_sts_port", &sts_port),
        ("outbound.ca_file", &ca_path),
    ])
    .await;
    let mut zone = String::from(
        "mbox.test MX 10 mx.mbox.test\nmx.mbox.test A 127.0.0.1\nmta-sts.mbox.test A 127.0.0.1\n",
    );
    if policy.is_some() {
        zone.push_str("_mta-sts.mbox.test TXT v=STSv1; id=20261207\n");
    }
    server.dns.load(&zone).expect("zone");
    server.add_user(MAILBOX).await;
    let alias = server
        .add_alias(MAILBOX, Some("shop@alias.test"), &[])
        .await;
    Setup {
        server,
        mx,
        alias,
        _dir: dir,
    }
}

const ENFORCE: &str = "version: STSv1\r\nmode: enforce\r\nmx: mx.mbox.test\r\nmax_age: 86400\r\n";

async fn send(s: &Setup) {
    let reply = client::send(
        s.server.smtp(),
        "bob@ext.test",
        &[&s.alias],
        &message("bob@ext.test", &s.alias, "hello", "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
}

/// Waits for the first attempt to end, and returns the delivery's status and last error.
async fn after_first_attempt(s: &Setup) -> (String, String) {
    use postern_entity::delivery;
    use sea_orm::{ActiveEnum, EntityTrait};
    let outcome = || async {
        let rows = delivery::Entity::find()
            .all(s.server.running().ctx.db())
            .await
            .expect("deliveries");
        rows.iter()
            .find(|d| d.rcpt == MAILBOX)
            .filter(|d| d.last_error.is_some() || d.status != delivery::DeliveryStatus::Queued)
            .map(|d| {
                (
                    d.status.to_value(),
                    d.last_error.clone().unwrap_or_default(),
                )
            })
    };
    postern_tests::harness::wait_until("the first attempt's end", || async {
        outcome().await.is_some()
    })
    .await;
    outcome().await.expect("attempted")
}

#[tokio::test]
async fn enforce_delivers_over_verified_tls() {
    let s = setup(Mx::Trusted, Some(ENFORCE)).await;
    send(&s).await;
    // The sink refuses mail before STARTTLS: arriving at all means it went over TLS.
    let got = s.mx.wait_for(1, WAIT).await;
    assert_eq!(got[0].rcpts, vec![MAILBOX]);
}

#[tokio::test]
async fn enforce_refuses_a_certificate_it_cannot_verify_and_keeps_the_mail() {
    let s = setup(Mx::SelfSigned, Some(ENFORCE)).await;
    send(&s).await;
    let (status, error) = after_first_attempt(&s).await;
    assert_eq!(status, "queued", "kept for a retry: {error}");
    assert!(error.contains("MTA-STS"), "{error}");
    assert!(s.mx.received().is_empty());
}

#[tokio::test]
async fn enforce_never_falls_back_to_clear_text() {
    let s = setup(Mx::Plain, Some(ENFORCE)).await;
    send(&s).await;
    let (status, error) = after_first_attempt(&s).await;
    assert_eq!(status, "queued", "{error}");
    assert!(error.contains("TLS required by MTA-STS"), "{error}");
    assert!(s.mx.received().is_empty(), "sent in clear text");
}

#[tokio::test]
async fn enforce_goes_only_to_the_hosts_the_policy_names() {
    let policy = "version: STSv1\r\nmode: enforce\r\nmx: *.elsewhere.test\r\nmax_age: 86400\r\n";
    let s = setup(Mx::Trusted, Some(policy)).await;
    send(&s).await;
    let (status, error) = after_first_attempt(&s).await;
    assert_eq!(status, "queued", "{error}");
    assert!(error.contains("MTA-STS policy names"), "{error}");
    assert!(s.mx.received().is_empty());
}

#[tokio::test]
async fn testing_mode_and_no_policy_deliver_with_opportunistic_tls() {
    let testing = "version: STSv1\r\nmode: testing\r\nmx: mx.mbox.test\r\nmax_age: 86400\r\n";
    for policy in [Some(testing), None] {
        let s = setup(Mx::SelfSigned, policy).await;
        send(&s).await;
        let got = s.mx.wait_for(1, WAIT).await;
        assert_eq!(got[0].rcpts, vec![MAILBOX], "{policy:?}");
    }
}

/// Direct delivery keeps its connections warm: a run of mail to one mail host opens one
/// connection (and does one TLS handshake), under either policy.
#[tokio::test]
async fn mail_to_one_mail_host_goes_over_one_warm_connection() {
    for policy in [Some(ENFORCE), None] {
        let s = setup(Mx::Trusted, policy).await;
        for n in 1..=3 {
            send(&s).await;
            // One at a time: each delivery ends (and its connection is back in the pool)
            // before the next message arrives.
            s.mx.wait_for(n, WAIT).await;
            postern_tests::harness::wait_until("the delivery's end", || async {
                let rows = postern_tests::harness::deliveries(&s.server).await;
                rows.len() == n && rows.iter().all(|(_, status)| status != "queued")
            })
            .await;
        }
        assert_eq!(s.mx.connections(), 1, "policy {policy:?}");
    }
}
