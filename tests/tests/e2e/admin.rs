use postern::cli::{AliasCommand, Command, DomainCommand, MailboxCommand, UserCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server_with_alias;

#[tokio::test]
async fn cli_errors_say_what_is_wrong() {
    let (server, _) = server_with_alias().await;
    let cases = [
        (
            Command::User(UserCommand::Add {
                email: "me@real.test".into(),
            }),
            "already exists",
        ),
        (
            Command::User(UserCommand::Add {
                email: "not-an-address".into(),
            }),
            "not a valid email address",
        ),
        (
            Command::Mailbox(MailboxCommand::Add {
                user_email: "ghost@real.test".into(),
                mailbox_email: "x@y.test".into(),
            }),
            "user ghost@real.test not found",
        ),
        (
            Command::Alias(AliasCommand::Add {
                user_email: "ghost@real.test".into(),
                address: None,
                mailboxes: vec![],
            }),
            "user ghost@real.test not found",
        ),
        (
            Command::Alias(AliasCommand::Add {
                user_email: "me@real.test".into(),
                address: Some("x@gmail.test".into()),
                mailboxes: vec![],
            }),
            "not on an alias domain",
        ),
        (
            Command::Alias(AliasCommand::Add {
                user_email: "me@real.test".into(),
                address: Some("shop@alias.test".into()),
                mailboxes: vec![],
            }),
            "already taken",
        ),
        (
            Command::Alias(AliasCommand::Add {
                user_email: "me@real.test".into(),
                address: None,
                mailboxes: vec!["other@real.test".into()],
            }),
            "not a mailbox of me@real.test",
        ),
        (
            Command::Alias(AliasCommand::Disable {
                alias: "nope@alias.test".into(),
            }),
            "alias nope@alias.test not found",
        ),
        (
            Command::Domain(DomainCommand::Dns {
                domain: "gmail.test".into(),
            }),
            "not one of this server's domains",
        ),
    ];
    for (command, expected) in cases {
        let label = format!("{command:?}");
        let err = server.cli(command).await.expect_err(&label);
        assert!(
            err.contains(expected),
            "{label}: expected `{expected}` in `{err}`"
        );
    }
}

#[tokio::test]
async fn cli_creates_random_aliases_and_lists_them() {
    let (server, _) = server_with_alias().await;
    let random = server.add_alias("me@real.test", None, &[]).await;
    assert!(random.ends_with("@alias.test"), "{random}");
    assert!(postern_domain::EmailAddress::parse(&random).is_ok());
    let list = server
        .cli(Command::Alias(AliasCommand::List {
            user_email: Some("me@real.test".into()),
            reserved: false,
        }))
        .await
        .expect("list");
    assert!(
        list.contains("shop@alias.test\tenabled\tme@real.test"),
        "{list}"
    );
    assert!(list.contains(&random));
    let key = server.add_user("other@real.test").await;
    assert!(
        key.len() >= 40 && key.chars().all(|c| c.is_ascii_alphanumeric()),
        "{key}"
    );
}

#[tokio::test]
async fn dns_records_are_zone_file_lines() {
    let (server, _) = server_with_alias().await;
    let out = server
        .cli(Command::Domain(DomainCommand::Dns {
            domain: "alias.test".into(),
        }))
        .await
        .expect("dns");
    assert!(
        out.contains("alias.test. IN MX 10 mx.alias.test.\n"),
        "{out}"
    );
    assert!(out.contains("alias.test. IN TXT \"v=spf1 "), "{out}");
    assert!(
        out.contains("_dmarc.alias.test. IN TXT \"v=DMARC1; "),
        "{out}"
    );
    assert!(
        out.contains("postern-rsa1._domainkey.alias.test. IN TXT \"v=DKIM1; k=rsa; p="),
        "{out}"
    );
    assert!(
        out.contains("postern-ed1._domainkey.alias.test. IN TXT \"v=DKIM1; k=ed25519; p="),
        "{out}"
    );
    // Keys are stable: asking again prints the same records.
    let again = server
        .cli(Command::Domain(DomainCommand::Dns {
            domain: "alias.test".into(),
        }))
        .await
        .expect("dns");
    assert_eq!(out, again);
}

#[tokio::test]
async fn health_endpoint_answers_over_http() {
    let (server, _) = server_with_alias().await;
    let mut stream = tokio::net::TcpStream::connect(server.http())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"status\":\"ok\""), "{response}");
    assert!(response.contains("\"queued\":0"), "{response}");
}
