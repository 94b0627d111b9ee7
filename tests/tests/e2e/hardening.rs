//! The accounts review's findings, each replayed as the attack over real HTTP: it must fail.

use postern_tests::client;
use postern_tests::harness::{TestServer, WAIT};
use postern_tests::http::{Reply, call, confirm_link, http};
use serde_json::{Value, json};

use crate::message;

const PASSWORD: &str = "a long passphrase";

/// A user with a password; returns their API key.
async fn user_with_password(server: &TestServer, email: &str) -> String {
    let key = server.add_user(email).await;
    server.set_password(email, PASSWORD).await;
    key
}

async fn with_key(
    server: &TestServer,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    http(
        server.http(),
        method,
        path,
        &[
            ("Authentication", key),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
    .await
}

/// A browser session opened the way the review did it: API key → cookie token → cookie.
/// Returns (cookie, csrf).
async fn exchanged_session(server: &TestServer, key: &str) -> (String, String) {
    let r = with_key(server, "GET", "/api/user/cookie_token", key, None).await;
    let token = r.json["token"].as_str().expect("token").to_string();
    let r = http(
        server.http(),
        "GET",
        &format!("/auth/api_to_cookie?token={token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let cookie = r
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let r = http(
        server.http(),
        "GET",
        "/api/csrf",
        &[("Cookie", &cookie), ("X-Sl-Allowcookies", "1")],
        None,
    )
    .await;
    let csrf = r.json["csrf_token"].as_str().expect("csrf").to_string();
    (cookie, csrf)
}

async fn with_session(
    server: &TestServer,
    method: &str,
    path: &str,
    (cookie, csrf): &(String, String),
    body: Option<Value>,
) -> Reply {
    let body = body.map(|b| b.to_string());
    http(
        server.http(),
        method,
        path,
        &[
            ("Cookie", cookie),
            ("X-Sl-Allowcookies", "1"),
            ("X-CSRF-Token", csrf),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    )
    .await
}

/// Every endpoint that needs sudo, with a body it accepts.
fn sudo_endpoints() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("POST", "/api/api_key", Some(json!({"device": "evil"}))),
        ("POST", "/api/mfa/setup", None),
        ("POST", "/api/mfa/enable", Some(json!({"code": "123456"}))),
        ("DELETE", "/api/mfa", None),
        ("DELETE", "/api/user", None),
    ]
}

#[tokio::test]
async fn an_api_key_cannot_become_sudo_through_a_cookie_session() {
    let server = TestServer::start().await;
    let key = user_with_password(&server, "victim@real.test").await;
    let session = exchanged_session(&server, &key).await;
    for (method, path, body) in sudo_endpoints() {
        let r = with_key(&server, method, path, &key, body.clone()).await;
        assert_eq!(
            (r.status, &r.json),
            (440, &json!({"error": "Need sudo"})),
            "key: {method} {path}"
        );
        let r = with_session(&server, method, path, &session, body).await;
        assert_eq!(
            (r.status, &r.json),
            (440, &json!({"error": "Need sudo"})),
            "exchanged session: {method} {path}"
        );
    }
    // The account is intact: the key still works, nothing was created or deleted.
    let r = with_key(&server, "GET", "/api/api_keys", &key, None).await;
    assert_eq!(r.json["api_keys"].as_array().map(Vec::len), Some(1));

    // Proving the password now, in that same session, is what grants sudo.
    let r = with_session(
        &server,
        "PATCH",
        "/api/sudo",
        &session,
        Some(json!({"password": "wrong guess"})),
    )
    .await;
    assert_eq!(r.status, 403);
    let r = with_session(
        &server,
        "PATCH",
        "/api/sudo",
        &session,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    for (method, path, body) in sudo_endpoints() {
        let r = with_session(&server, method, path, &session, body).await;
        assert_ne!(r.status, 440, "sudo session: {method} {path}: {}", r.json);
    }
    // The last of them deleted the account.
    let r = with_key(&server, "GET", "/api/user_info", &key, None).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn sudo_with_a_totp_code_when_mfa_is_on() {
    let server = TestServer::start().await;
    let key = user_with_password(&server, "mfa-sudo@real.test").await;
    let secret = server.enable_totp("mfa-sudo@real.test").await;
    // The password alone no longer proves it: a leaked password and key could turn MFA off.
    let r = with_key(
        &server,
        "PATCH",
        "/api/sudo",
        &key,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.json);
    let r = with_key(&server, "DELETE", "/api/mfa", &key, None).await;
    assert_eq!(r.status, 440);
    let now = chrono::Utc::now().timestamp();
    let code = postern_domain::auth::totp_at(&secret, now / 30).expect("code");
    let r = with_key(
        &server,
        "PATCH",
        "/api/sudo",
        &key,
        Some(json!({"mfa_token": code})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    let r = with_key(
        &server,
        "POST",
        "/api/api_key",
        &key,
        Some(json!({"device": "x"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.json);
    // The same code cannot be used twice.
    let r = with_key(
        &server,
        "PATCH",
        "/api/sudo",
        &key,
        Some(json!({"mfa_token": code})),
    )
    .await;
    assert_eq!(r.status, 403);
}

#[tokio::test]
async fn role_addresses_and_lookalikes_cannot_be_claimed() {
    let server = TestServer::start_with(&[("mail.postmaster", "ops@ops.test")]).await;
    let key = server.add_user("squatter@real.test").await;
    for local in [
        "postmaster",
        "abuse",
        "hostmaster",
        "webmaster",
        "admin",
        "administrator",
        "root",
        "no-reply",
        "mailer-daemon",
        "security",
        "support",
        "info",
        "ssl-admin",
        "PostMaster",
        "p\u{0430}ypal",
        "admin\u{200B}",
        "\u{FF41}dmin",
    ] {
        let r = http(
            server.http(),
            "POST",
            "/api/v1/aliases",
            &[
                ("Authorization", &format!("Bearer {key}")),
                ("Content-Type", "application/json"),
            ],
            Some(
                &json!({"domain": "alias.test", "format": "custom", "local_part": local})
                    .to_string(),
            ),
        )
        .await;
        assert!(
            (400..500).contains(&r.status) && r.json["error"].is_string(),
            "{local:?}: {} {}",
            r.status,
            r.body
        );
    }
    let r = call(
        &server,
        "GET",
        "/api/v2/aliases?page_id=0",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(r.json["aliases"], json!([]), "nothing was created");
}

#[tokio::test]
async fn postmaster_and_abuse_reach_the_operator_even_when_an_alias_holds_them() {
    let server = TestServer::start_with(&[("mail.postmaster", "ops@ops.test")]).await;
    server.add_user("early@real.test").await;
    // Aliases taken before the names were reserved (written directly, as an old version did).
    let db = server.running().ctx.db();
    let user = postern_domain::accounts::require_user(db, "early@real.test")
        .await
        .expect("user");
    for address in [
        "postmaster@alias.test",
        "abuse@alias.test",
        "admin@alias.test",
    ] {
        use sea_orm::{ActiveModelTrait, Set};
        let alias = postern_entity::alias::ActiveModel {
            user_id: Set(user.id),
            email: Set(address.to_string()),
            enabled: Set(true),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(db)
        .await
        .expect("legacy alias");
        postern_entity::alias_mailbox::ActiveModel {
            alias_id: Set(alias.id),
            mailbox_id: Set(user.default_mailbox_id.expect("mailbox")),
        }
        .insert(db)
        .await
        .expect("link");
    }
    for rcpt in [
        "postmaster@alias.test",
        "abuse@alias.test",
        "admin@alias.test",
    ] {
        let r = client::send(
            server.smtp(),
            "reporter@ext.test",
            &[rcpt],
            &message("reporter@ext.test", rcpt, &format!("to {rcpt}"), "report"),
        )
        .await;
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    server.sink.wait_for(3, WAIT).await;
    let to_ops = server.sink.for_rcpt("ops@ops.test");
    let to_user = server.sink.for_rcpt("early@real.test");
    let subjects = |mails: &[postern_tests::sink::Received]| {
        let mut s: Vec<String> = mails.iter().filter_map(|m| m.header("Subject")).collect();
        s.sort();
        s
    };
    assert_eq!(
        subjects(&to_ops),
        vec!["to abuse@alias.test", "to postmaster@alias.test"]
    );
    // Other reserved names already held keep working for their holder.
    assert_eq!(subjects(&to_user), vec!["to admin@alias.test"]);

    let out = server
        .cli(postern::cli::Command::Alias(
            postern::cli::AliasCommand::List {
                user_email: None,
                reserved: true,
            },
        ))
        .await
        .expect("list --reserved");
    for line in [
        "postmaster@alias.test\tearly@real.test\tgoes to mail.postmaster",
        "abuse@alias.test\tearly@real.test\tgoes to mail.postmaster",
        "admin@alias.test\tearly@real.test\tstill forwards",
    ] {
        assert!(out.contains(line), "{line} in:\n{out}");
    }
}

#[tokio::test]
async fn every_numeric_input_is_bounded() {
    let server = TestServer::start().await;
    let key = server.add_user("numbers@real.test").await;
    let alias = server.add_alias("numbers@real.test", None, &[]).await;
    let r = call(
        &server,
        "GET",
        "/api/v2/aliases?page_id=0",
        Some(&key),
        None,
    )
    .await;
    let alias_id = r.json["aliases"][0]["id"].as_i64().expect("id");
    assert!(alias.contains('@'));
    let values = [
        "9223372036854775807",
        "9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999",
        "-1",
        "-9223372036854775808",
        "0",
        "abc",
        "1e9",
        "0x10",
        "%20",
        "1.5",
    ];
    let mut requests: Vec<(&str, String, Option<Value>)> = Vec::new();
    for v in values {
        for path in [
            format!("/api/v2/aliases?page_id={v}"),
            format!("/api/aliases?page_id={v}"),
            format!("/api/aliases/{alias_id}/activities?page_id={v}"),
            format!("/api/aliases/{alias_id}/contacts?page_id={v}"),
            format!("/api/notifications?page={v}"),
            format!("/api/v1/aliases?page[number]={v}"),
            format!("/api/v1/aliases?page[size]={v}"),
            format!("/api/aliases/{v}"),
            format!("/api/aliases/{v}/activities?page_id=0"),
            format!("/api/aliases/{v}/contacts?page_id=0"),
            format!("/api/v1/aliases/{v}"),
        ] {
            requests.push(("GET", path, None));
        }
        for (method, path) in [
            ("PATCH", format!("/api/aliases/{v}")),
            ("DELETE", format!("/api/aliases/{v}")),
            ("POST", format!("/api/aliases/{v}/toggle")),
            ("POST", format!("/api/aliases/{v}/contacts")),
            ("DELETE", format!("/api/contacts/{v}")),
            ("POST", format!("/api/contacts/{v}/toggle")),
            ("PUT", format!("/api/mailboxes/{v}")),
            ("DELETE", format!("/api/mailboxes/{v}")),
            ("DELETE", format!("/api/api_keys/{v}")),
            ("POST", format!("/api/notifications/{v}/read")),
            ("PATCH", format!("/api/custom_domains/{v}")),
            ("DELETE", format!("/api/v1/aliases/{v}")),
        ] {
            requests.push((method, path, Some(json!({}))));
        }
    }
    for n in [
        json!(9223372036854775807i64),
        json!(-1),
        json!(1e300),
        json!("7"),
        json!(u64::MAX),
    ] {
        requests.push((
            "PATCH",
            format!("/api/aliases/{alias_id}"),
            Some(json!({"mailbox_ids": [n]})),
        ));
        requests.push((
            "PATCH",
            format!("/api/aliases/{alias_id}"),
            Some(json!({"mailbox_id": n})),
        ));
        requests.push((
            "POST",
            "/api/v3/alias/custom/new".to_string(),
            Some(json!({"alias_prefix": "x", "signed_suffix": ".a@alias.test.sig", "mailbox_ids": [n]})),
        ));
        requests.push((
            "DELETE",
            "/api/mailboxes/1".to_string(),
            Some(json!({"transfer_aliases_to": n})),
        ));
    }
    for (method, path, body) in &requests {
        let r = with_key(&server, method, path, &key, body.clone()).await;
        assert!(
            r.status != 0 && r.status < 500,
            "{method} {path}: {} {}",
            r.status,
            r.body
        );
        if !(200..300).contains(&r.status) {
            assert!(
                r.json["error"].is_string(),
                "{method} {path}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // The review's case, precisely.
    let r = with_key(
        &server,
        "GET",
        "/api/v2/aliases?page_id=9223372036854775807",
        &key,
        None,
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (
            400,
            &json!({"error": "page_id must be a whole number from 0 to 1000000"})
        )
    );
    // The alias survived the sweep (only its own id was in no destructive request).
    let r = with_key(
        &server,
        "GET",
        &format!("/api/aliases/{alias_id}"),
        &key,
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn totp_codes_are_one_step_wide_single_use_and_server_chosen() {
    let server = TestServer::start().await;
    let key = user_with_password(&server, "otp@real.test").await;
    let r = with_key(
        &server,
        "PATCH",
        "/api/sudo",
        &key,
        Some(json!({"password": PASSWORD})),
    )
    .await;
    assert_eq!(r.status, 200);

    // A secret the client chose is never stored.
    let chosen = postern_domain::auth::new_totp_secret();
    let now = chrono::Utc::now().timestamp();
    let chosen_code = postern_domain::auth::totp_at(&chosen, now / 30).expect("code");
    let r = with_key(
        &server,
        "POST",
        "/api/mfa/enable",
        &key,
        Some(json!({"secret": chosen, "code": chosen_code})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.json);
    let r = with_key(&server, "POST", "/api/mfa/setup", &key, None).await;
    let secret = r.json["secret"].as_str().expect("secret").to_string();
    let r = with_key(
        &server,
        "POST",
        "/api/mfa/enable",
        &key,
        Some(json!({"secret": chosen, "code": chosen_code})),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.json);
    let mfa_on = |server: &TestServer| {
        let db = server.running().ctx.db().clone();
        async move {
            postern_domain::accounts::require_user(&db, "otp@real.test")
                .await
                .expect("user")
                .totp_secret
        }
    };
    assert_eq!(mfa_on(&server).await, None);
    let code = postern_domain::auth::totp_at(&secret, now / 30).expect("code");
    let r = with_key(
        &server,
        "POST",
        "/api/mfa/enable",
        &key,
        Some(json!({"code": code})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    assert_eq!(mfa_on(&server).await.as_deref(), Some(secret.as_str()));

    // A wrong code sent to enable while MFA is on changes nothing.
    let r = with_key(
        &server,
        "POST",
        "/api/mfa/enable",
        &key,
        Some(json!({"code": "000000"})),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(mfa_on(&server).await.as_deref(), Some(secret.as_str()));

    // ±1 step: two steps old is refused, one step old is accepted.
    let login = || {
        http(
            server.http(),
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            Some(r#"{"email": "otp@real.test", "password": "a long passphrase"}"#),
        )
    };
    let mfa = |mfa_key: String, code: String| {
        let body = json!({"mfa_token": code, "mfa_key": mfa_key, "device": "d"}).to_string();
        let addr = server.http();
        async move {
            http(
                addr,
                "POST",
                "/api/auth/mfa",
                &[("Content-Type", "application/json")],
                Some(&body),
            )
            .await
        }
    };
    let r = login().await;
    let mfa_key = r.json["mfa_key"].as_str().expect("mfa_key").to_string();
    {
        // Forget the step used to enable, so only the window decides.
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        postern_entity::user::Entity::update_many()
            .col_expr(
                postern_entity::user::Column::TotpLastStep,
                Expr::value(Option::<i64>::None),
            )
            .filter(postern_entity::user::Column::Email.eq("otp@real.test"))
            .exec(server.running().ctx.db())
            .await
            .expect("reset step");
    }
    let now = chrono::Utc::now().timestamp();
    let old = postern_domain::auth::totp_at(&secret, now / 30 - 2).expect("code");
    let next = postern_domain::auth::totp_at(&secret, now / 30 + 1).expect("code");
    if old != next {
        let r = mfa(mfa_key.clone(), old).await;
        assert_eq!(
            (r.status, &r.json),
            (400, &json!({"error": "Wrong TOTP Token"}))
        );
    }
    // Two requests racing with one fresh code: exactly one gets in.
    let (a, b) = tokio::join!(
        mfa(mfa_key.clone(), next.clone()),
        mfa(mfa_key.clone(), next.clone())
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{} / {}", a.body, b.body);
}

#[tokio::test]
async fn a_password_change_ends_every_other_session_and_key() {
    let server = TestServer::start().await;
    server.add_user("moving@real.test").await;
    server.set_password("moving@real.test", PASSWORD).await;
    let login = |device: &'static str| {
        http(
            server.http(),
            "POST",
            "/api/auth/login",
            &[("Content-Type", "application/json")],
            Some(Box::leak(
                json!({"email": "moving@real.test", "password": PASSWORD, "device": device})
                    .to_string()
                    .into_boxed_str(),
            )),
        )
    };
    let laptop = login("laptop").await;
    let phone = login("phone").await;
    let laptop_key = laptop.json["api_key"].as_str().expect("key").to_string();
    let phone_key = phone.json["api_key"].as_str().expect("key").to_string();
    let cookie = phone
        .header("set-cookie")
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let browser = [("Cookie", cookie.as_str()), ("X-Sl-Allowcookies", "1")];
    assert_eq!(
        http(server.http(), "GET", "/api/user_info", &browser, None)
            .await
            .status,
        200
    );

    let r = with_key(
        &server,
        "PATCH",
        "/api/user/password",
        &laptop_key,
        Some(json!({"current_password": PASSWORD, "new_password": "a newer passphrase"})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    assert_eq!(
        with_key(&server, "GET", "/api/user_info", &laptop_key, None)
            .await
            .status,
        200
    );
    assert_eq!(
        with_key(&server, "GET", "/api/user_info", &phone_key, None)
            .await
            .status,
        401
    );
    assert_eq!(
        http(server.http(), "GET", "/api/user_info", &browser, None)
            .await
            .status,
        401
    );
    server.sink.wait_for(1, WAIT).await;
    assert!(
        server
            .sink
            .for_rcpt("moving@real.test")
            .iter()
            .any(|m| m.header("Subject").as_deref() == Some("Your Postern password was changed"))
    );

    // A reset by email ends everything, the caller's key included.
    let r = http(
        server.http(),
        "POST",
        "/api/auth/forgot_password",
        &[("Content-Type", "application/json")],
        Some(r#"{"email": "moving@real.test"}"#),
    )
    .await;
    assert_eq!(r.status, 200);
    let mails = server.sink.wait_for(2, WAIT).await;
    let text = mails
        .iter()
        .rev()
        .find(|m| m.text().contains("token="))
        .expect("reset mail")
        .text();
    let token = text
        .split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("token")
        .to_string();
    let r = http(
        server.http(),
        "POST",
        "/api/auth/reset_password",
        &[("Content-Type", "application/json")],
        Some(&json!({"token": token, "password": "the newest passphrase"}).to_string()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        with_key(&server, "GET", "/api/user_info", &laptop_key, None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn taken_addresses_answer_like_free_ones_and_the_email_says_why() {
    let server = TestServer::start().await;
    server.add_user("owner@real.test").await;
    let prober = server.add_user("prober@real.test").await;
    let register = |email: &str| {
        let body = json!({"email": email, "password": PASSWORD}).to_string();
        let addr = server.http();
        async move {
            http(
                addr,
                "POST",
                "/api/auth/register",
                &[("Content-Type", "application/json")],
                Some(&body),
            )
            .await
        }
    };
    // Sign-up: another user's mailbox, an existing account, a free address.
    server
        .add_mailbox("owner@real.test", "second@real.test")
        .await;
    let taken = register("second@real.test").await;
    let free = register("fresh@real.test").await;
    assert_eq!((taken.status, &taken.json), (free.status, &free.json));
    server.sink.wait_for(2, WAIT).await;
    let to_second = server.sink.for_rcpt("second@real.test");
    assert_eq!(to_second.len(), 1);
    assert!(
        to_second[0]
            .text()
            .contains("already the mailbox of a Postern account")
    );
    assert!(
        !to_second[0].text().contains("token="),
        "no way in for the prober"
    );

    // Asking for a new confirmation tells nothing either.
    let reactivate = |email: &str| {
        let body = json!({"email": email}).to_string();
        let addr = server.http();
        async move {
            http(
                addr,
                "POST",
                "/api/auth/reactivate",
                &[("Content-Type", "application/json")],
                Some(&body),
            )
            .await
        }
    };
    let answers: Vec<(u16, Value)> = futures_answers(vec![
        reactivate("owner@real.test").await,
        reactivate("nobody@real.test").await,
        reactivate("fresh@real.test").await,
    ]);
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    server.sink.wait_for(3, WAIT).await;

    // Add-mailbox: someone else's address answers exactly like a free one.
    let add = |email: &str| {
        let body = json!({"email": email}).to_string();
        let addr = server.http();
        let prober = prober.clone();
        async move {
            http(
                addr,
                "POST",
                "/api/mailboxes",
                &[
                    ("Authentication", prober.as_str()),
                    ("Content-Type", "application/json"),
                ],
                Some(&body),
            )
            .await
        }
    };
    let taken = add("owner@real.test").await;
    let free = add("spare@real.test").await;
    let shape = |r: &Reply| {
        let mut v = r.json.clone();
        v["id"] = json!(0);
        v["email"] = json!("");
        v["creation_timestamp"] = json!(0);
        (r.status, v)
    };
    assert_eq!(shape(&taken), shape(&free));
    assert_eq!(taken.status, 201);
    server.sink.wait_for(5, WAIT).await;
    let to_owner = server.sink.for_rcpt("owner@real.test");
    assert!(
        to_owner.iter().any(|m| m
            .text()
            .contains("already the mailbox of a Postern account")
            && !m.text().contains("token=")),
        "the owner's address is told, with no link"
    );

    // A squatted, unverified claim blocks nobody and expires.
    let squat = add("victim@real.test").await;
    assert_eq!(squat.status, 201);
    let r = register("victim@real.test").await;
    assert_eq!(r.status, 200);
    let mails = server.sink.wait_for(7, WAIT).await;
    let activation = mails
        .iter()
        .filter(|m| m.rcpts.iter().any(|r| r == "victim@real.test"))
        .find_map(|m| {
            let text = m.text();
            text.contains("/auth/activate?token=").then(|| {
                text.split("token=")
                    .nth(1)
                    .and_then(|t| t.split_whitespace().next())
                    .map(str::to_string)
            })?
        })
        .expect("the real owner gets an activation link");
    let r = confirm_link(server.http(), "/auth/activate", &activation).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Housekeeping forgets unverified claims past accounts.unverified_days.
    {
        use sea_orm::sea_query::Expr;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let db = server.running().ctx.db();
        postern_entity::mailbox::Entity::update_many()
            .col_expr(
                postern_entity::mailbox::Column::CreatedAt,
                Expr::value(chrono::Utc::now() - chrono::Duration::days(8)),
            )
            .filter(postern_entity::mailbox::Column::Verified.eq(false))
            .exec(db)
            .await
            .expect("age the claims");
    }
    let done = postern_domain::retention::prune(&server.running().ctx)
        .await
        .expect("retention");
    assert_eq!(done.unverified_mailboxes, 3, "{done:?}");
    let r = with_key(&server, "GET", "/api/v2/mailboxes", &prober, None).await;
    assert_eq!(
        r.json["mailboxes"].as_array().map(Vec::len),
        Some(1),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn a_mailbox_link_opened_by_a_scanner_verifies_nothing() {
    let server = TestServer::start().await;
    let key = server.add_user("scan@real.test").await;
    let r = with_key(
        &server,
        "POST",
        "/api/mailboxes",
        &key,
        Some(json!({"email": "new@scan.test"})),
    )
    .await;
    assert_eq!(r.status, 201);
    let mails = server.sink.wait_for(1, WAIT).await;
    let text = mails[0].text();
    let token = text
        .split("token=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("token")
        .to_string();
    let r = http(
        server.http(),
        "GET",
        &format!("/mailbox/verify?token={token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let verified = || async {
        let r = with_key(&server, "GET", "/api/mailboxes", &key, None).await;
        r.json["mailboxes"].as_array().map(Vec::len)
    };
    assert_eq!(verified().await, Some(1), "the GET verified nothing");
    let r = confirm_link(server.http(), "/mailbox/verify", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(verified().await, Some(2));
}

#[tokio::test]
async fn limits_key_on_the_client_behind_a_trusted_proxy_and_hold_across_instances() {
    let server = TestServer::start_with(&[
        ("limits.login_per_minute", "3"),
        ("http.trusted_proxies", "127.0.0.1/32"),
    ])
    .await;
    server.add_user("target@real.test").await;
    server.set_password("target@real.test", PASSWORD).await;
    server.add_user("bystander@real.test").await;
    server.set_password("bystander@real.test", PASSWORD).await;
    let login = |client: &str, email: &str, password: &str| {
        let body = json!({"email": email, "password": password}).to_string();
        let client = client.to_string();
        let addr = server.http();
        async move {
            http(
                addr,
                "POST",
                "/api/auth/login",
                &[
                    ("Content-Type", "application/json"),
                    ("X-Forwarded-For", &format!("203.0.113.50, {client}")),
                ],
                Some(&body),
            )
            .await
        }
    };
    for _ in 0..3 {
        let r = login("192.0.2.1", "nobody@real.test", "wrong").await;
        assert_eq!(r.status, 400);
    }
    let r = login("192.0.2.1", "bystander@real.test", PASSWORD).await;
    assert_eq!(r.status, 429, "the attacker's address is limited");
    // Everyone else behind the same proxy is not.
    let r = login("192.0.2.2", "bystander@real.test", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Wrong passwords for one account, each through a new API instance (the in-memory
    // limiter starts empty each time): the database count locks the account, even for a
    // client never seen before.
    let body = json!({"email": "target@real.test", "password": "wrong"});
    for _ in 0..3 {
        let r = call(&server, "POST", "/api/auth/login", None, Some(body.clone())).await;
        assert_eq!(r.status, 400);
    }
    let r = login("192.0.2.3", "target@real.test", PASSWORD).await;
    assert_eq!(r.status, 429, "{}", r.body);
    // Someone else's account is untouched.
    let r = login("192.0.2.4", "bystander@real.test", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn key_use_is_written_at_most_once_a_minute() {
    let server = TestServer::start().await;
    let key = server.add_user("reader@real.test").await;
    for _ in 0..5 {
        assert_eq!(
            with_key(&server, "GET", "/api/user_info", &key, None)
                .await
                .status,
            200
        );
    }
    let db = server.running().ctx.db();
    let row = postern_domain::auth::api_key_row(db, &key)
        .await
        .expect("query")
        .expect("key");
    assert_eq!(row.use_count, 1, "one write for five reads");
    assert!(row.last_used.is_some());
}

fn futures_answers(replies: Vec<Reply>) -> Vec<(u16, Value)> {
    replies.into_iter().map(|r| (r.status, r.json)).collect()
}
