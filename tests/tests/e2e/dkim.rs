//! DKIM keys over months: rotation (pending until published, then signing, the old key kept
//! for the overlap), keys sealed at rest, and the DNS check of our domains.

use postern::Roles;
use postern::cli::{Command, DomainCommand};
use postern_tests::client;
use postern_tests::harness::{TestServer, WAIT};
use postern_worker::Job;

use crate::{message, server_with_alias};

/// Sends one message to `alias` and returns the `s=` of each DKIM signature of the forward.
async fn selectors_of_next_forward(server: &TestServer, alias: &str, subject: &str) -> Vec<String> {
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[alias],
        &message("bob@ext.test", alias, subject, "x"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let n = server.sink.received().len() + 1;
    let got = server.sink.wait_for(n, WAIT).await;
    let forward = got
        .iter()
        .find(|m| m.header("Subject").as_deref() == Some(subject))
        .expect("forwarded");
    let text = forward.text();
    let mut selectors: Vec<String> = text
        .split("DKIM-Signature:")
        .skip(1)
        .filter_map(|sig| {
            let sig: String = sig.split("\r\n").collect();
            let at = sig.find(" s=")?;
            Some(sig[at + 3..].split(';').next()?.trim().to_string())
        })
        .collect();
    selectors.sort();
    selectors
}

async fn dkim_job(server: &TestServer) -> String {
    Job::Dkim
        .run_once(&server.running().ctx)
        .await
        .expect("dkim job")
}

#[tokio::test]
async fn keys_rotate_only_once_published_and_the_old_ones_retire_after_the_overlap() {
    let (server, alias) = server_with_alias().await;
    let ctx = &server.running().ctx;
    assert_eq!(
        selectors_of_next_forward(&server, &alias, "before").await,
        vec!["postern-ed1", "postern-rsa1"]
    );
    // Nothing is due yet: the keys are new.
    assert!(dkim_job(&server).await.starts_with("generated none;"));
    // Six months later (the active keys made to look old), the job starts a rotation.
    {
        use postern_entity::dkim_key;
        use sea_orm::EntityTrait;
        use sea_orm::sea_query::Expr;
        dkim_key::Entity::update_many()
            .col_expr(
                dkim_key::Column::ActivatedAt,
                Expr::value(Some(chrono::Utc::now() - chrono::Duration::days(200))),
            )
            .exec(ctx.db())
            .await
            .expect("age keys");
    }
    let done = dkim_job(&server).await;
    assert!(done.contains("._domainkey.alias.test"), "{done}");
    assert!(done.contains("waiting for DNS postern-"), "{done}");
    // A second rotation by hand is refused while one waits.
    let err = server
        .cli(Command::Domain(DomainCommand::RotateDkim {
            domain: "reply.test".into(),
        }))
        .await
        .expect_err("already pending");
    assert!(err.contains("already waiting"), "{err}");
    // `domain dns` shows the new records to publish; until they are in DNS, the old keys sign
    // (forwards are signed for the reply domain, whose address is in their From).
    let zone = server
        .cli(Command::Domain(DomainCommand::Dns {
            domain: "reply.test".into(),
        }))
        .await
        .expect("dns");
    assert!(zone.contains("; DKIM selector postern-"), "{zone}");
    assert!(zone.contains(": pending"), "{zone}");
    assert_eq!(
        selectors_of_next_forward(&server, &alias, "waiting").await,
        vec!["postern-ed1", "postern-rsa1"]
    );
    // Published: the job activates them and forwards are signed with them, verifiably.
    server.publish_txt_lines(&zone);
    let done = dkim_job(&server).await;
    assert!(done.contains("activated postern-"), "{done}");
    let now_signing = selectors_of_next_forward(&server, &alias, "rotated").await;
    assert!(
        now_signing.iter().all(|s| s.starts_with("postern-2")),
        "{now_signing:?}"
    );
    let forward = server.sink.received().pop().expect("forward");
    let verdict = postern_tests::verifier::verify_dkim(&server, &forward.data, "reply.test")
        .await
        .unwrap_or_else(|report| panic!("DKIM verification failed:\n{report}"));
    assert!(verdict.contains("rsa-sha256"), "{verdict}");
    // The old keys stay published during the overlap, then go.
    let zone = server.publish_dkim("reply.test").await;
    assert!(zone.contains("postern-rsa1._domainkey"), "{zone}");
    assert!(zone.contains(": retiring"), "{zone}");
    {
        use postern_entity::dkim_key;
        use sea_orm::EntityTrait;
        use sea_orm::sea_query::Expr;
        dkim_key::Entity::update_many()
            .col_expr(
                dkim_key::Column::RetireAfter,
                Expr::value(Some(chrono::Utc::now() - chrono::Duration::minutes(1))),
            )
            .exec(ctx.db())
            .await
            .expect("end the overlap");
    }
    let done = dkim_job(&server).await;
    let retired = done.split("retired ").nth(1).unwrap_or_default();
    assert!(
        retired.contains("postern-rsa1._domainkey.reply.test")
            && retired.contains("postern-ed1._domainkey.reply.test"),
        "{done}"
    );
    let zone = server.publish_dkim("reply.test").await;
    assert!(!zone.contains("postern-rsa1._domainkey"), "{zone}");
    // A rotation by hand prints the records to publish.
    let out = server
        .cli(Command::Domain(DomainCommand::RotateDkim {
            domain: "reply.test".into(),
        }))
        .await
        .expect("rotate");
    assert!(out.contains("publish these records"), "{out}");
    assert_eq!(
        out.lines().filter(|l| l.contains("._domainkey.")).count(),
        2
    );
}

#[tokio::test]
async fn private_keys_are_sealed_and_an_instance_without_the_key_refuses_to_start() {
    let mut server = TestServer::start().await;
    {
        use postern_entity::dkim_key;
        use sea_orm::EntityTrait;
        let keys = dkim_key::Entity::find()
            .all(server.running().ctx.db())
            .await
            .expect("keys");
        assert!(!keys.is_empty());
        for k in &keys {
            assert!(k.encrypted, "{} is sealed", k.selector);
            // Neither PKCS#8 DER (RSA starts 0x30 0x82) nor readable as one.
            assert_eq!(k.private_key[0], 1, "{}", k.selector);
            assert!(!k.private_key.starts_with(&[0x30]));
        }
    }
    server.stop().await;
    let kek_file = server.settings.data_dir.join("dkim-kek");
    let kek = std::fs::read_to_string(&kek_file).expect("the embedded default made one");
    std::fs::remove_file(&kek_file).expect("remove");
    let err = match postern::start(server.settings.clone(), Roles::ALL, false).await {
        Ok(_) => panic!("started without the key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("no key-encryption key") && err.contains("POSTERN_DKIM__KEK"),
        "{err}"
    );
    // Another key does not open them.
    let mut wrong = server.settings.clone();
    wrong.dkim.kek = Some(data_encoding::BASE64.encode(&[7u8; 32]));
    let err = match postern::start(wrong, Roles::ALL, false).await {
        Ok(_) => panic!("started with the wrong key"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("cannot be opened"), "{err}");
    // Given the right key (as another instance would be), it starts and signs.
    let mut right = server.settings.clone();
    right.dkim.kek = Some(kek.trim().to_string());
    right.smtp.listen = "127.0.0.1:0".parse().expect("addr");
    right.http.listen = "127.0.0.1:0".parse().expect("addr");
    let running = postern::start(right, Roles::ALL, false)
        .await
        .expect("starts with the key");
    running
        .ctx
        .signers()
        .sign("alias.test", b"From: a@alias.test\r\n\r\nx\r\n".to_vec())
        .expect("signs");
    running.stop().await;
}

#[tokio::test]
async fn the_dns_check_says_what_is_missing_until_everything_is_published() {
    let server = TestServer::start().await;
    let check = || async {
        server
            .cli(Command::Domain(DomainCommand::Check {
                domain: "alias.test".into(),
            }))
            .await
            .expect("check")
    };
    let first = check().await;
    assert!(first.starts_with("alias.test: needs attention"), "{first}");
    assert!(
        first.contains("missing: MX record pointing to mx.alias.test"),
        "{first}"
    );
    assert!(first.contains("missing: SPF"), "{first}");
    assert!(first.contains("missing: DMARC"), "{first}");
    assert!(
        first.contains("missing: DKIM postern-rsa1._domainkey.alias.test"),
        "{first}"
    );
    server
        .dns
        .load(
            "alias.test MX 10 mx.alias.test\n\
             alias.test TXT \"v=spf1 mx a:mx.alias.test ~all\"\n\
             _dmarc.alias.test TXT \"v=DMARC1; p=quarantine\"\n",
        )
        .expect("zone");
    server.publish_dkim("alias.test").await;
    let second = check().await;
    assert!(second.starts_with("alias.test: ok"), "{second}");
    assert!(
        second.contains("ok: DKIM postern-ed1._domainkey.alias.test"),
        "{second}"
    );
    // A second MX we do not run is a finding, until mail.mx_hosts lists it.
    server
        .dns
        .load("alias.test MX 20 mx.elsewhere.test\n")
        .expect("zone");
    let third = check().await;
    assert!(
        third.contains("wrong: MX points to mx.elsewhere.test instead of mx.alias.test"),
        "{third}"
    );
    // The daily job checks every domain and says which need attention.
    let done = Job::Dns
        .run_once(&server.running().ctx)
        .await
        .expect("dns job");
    assert!(done.contains("need attention"), "{done}");
    assert!(done.contains("reply.test"), "{done}");
}
