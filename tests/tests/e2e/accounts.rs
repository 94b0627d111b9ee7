use postern_tests::harness::{TestServer, WAIT};
use postern_tests::http::{call, http};
use serde_json::{Value, json};

/// The text after `marker` in the newest email to `to`, up to whitespace.
async fn from_email(server: &TestServer, to: &str, n: usize, marker: &str) -> String {
    postern_tests::harness::word_in_email(server, to, n, marker).await
}

async fn post(server: &TestServer, path: &str, body: Value) -> postern_tests::http::Reply {
    call(server, "POST", path, None, Some(body)).await
}

#[tokio::test]
async fn sign_up_confirm_by_code_and_log_in() {
    let server = TestServer::start().await;
    let r = post(
        &server,
        "/api/auth/register",
        json!({"email": "new@real.test", "password": "short"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "password too short"}))
    );
    let r = post(
        &server,
        "/api/auth/register",
        json!({"email": "new@real.test", "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (200, &json!({"msg": "User needs to confirm their account"}))
    );
    let code = from_email(&server, "new@real.test", 1, "code in your app: ").await;
    assert_eq!(code.len(), 6);

    let login =
        json!({"email": "new@real.test", "password": "a long passphrase", "device": "test"});
    let r = post(&server, "/api/auth/login", login.clone()).await;
    assert_eq!(
        (r.status, &r.json),
        (422, &json!({"error": "Account not activated"}))
    );
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let r = post(
        &server,
        "/api/auth/activate",
        json!({"email": "new@real.test", "code": wrong}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "Wrong email or code"}))
    );
    let r = post(
        &server,
        "/api/auth/activate",
        json!({"email": "new@real.test", "code": code}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (
            200,
            &json!({"msg": "Account is activated, user can login now"})
        )
    );

    let r = post(&server, "/api/auth/login", login).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        (r.json["mfa_enabled"].clone(), r.json["email"].clone()),
        (json!(false), json!("new@real.test"))
    );
    let key = r.json["api_key"].as_str().expect("key").to_string();
    let me = call(&server, "GET", "/api/user_info", Some(&key), None).await;
    assert_eq!(me.json["email"], json!("new@real.test"));
    // The account's address is now a verified mailbox: aliases can use it.
    let r = call(&server, "POST", "/api/alias/random/new", Some(&key), None).await;
    assert_eq!(r.status, 201, "{}", r.json);

    for (email, password) in [
        ("new@real.test", "wrong password"),
        ("nobody@real.test", "a long passphrase"),
    ] {
        let r = post(
            &server,
            "/api/auth/login",
            json!({"email": email, "password": password}),
        )
        .await;
        assert_eq!(
            (r.status, &r.json),
            (400, &json!({"error": "Email or password incorrect"}))
        );
    }
    // Signing up again with a taken address answers the same and tells the owner.
    let r = post(
        &server,
        "/api/auth/register",
        json!({"email": "new@real.test", "password": "another passphrase"}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"msg": "User needs to confirm their account"})
    );
    server.sink.wait_for(2, WAIT).await;
    assert!(
        server
            .sink
            .for_rcpt("new@real.test")
            .iter()
            .any(|m| m.text().contains("Sign-up attempt"))
    );
}

#[tokio::test]
async fn the_activation_link_works_over_http_once() {
    let server = TestServer::start().await;
    post(
        &server,
        "/api/auth/register",
        json!({"email": "link@real.test", "password": "a long passphrase"}),
    )
    .await;
    let token = from_email(&server, "link@real.test", 1, "token=").await;
    // Opening the link alone (as a mail scanner does) confirms nothing.
    for _ in 0..2 {
        let r = http(
            server.http(),
            "GET",
            &format!("/auth/activate?token={token}"),
            &[],
            None,
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "link@real.test", "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(r.status, 422, "not confirmed by a GET: {}", r.json);
    let r = postern_tests::http::confirm_link(server.http(), "/auth/activate", &token).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = http(
        server.http(),
        "POST",
        "/auth/activate",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&format!("token={token}")),
    )
    .await;
    assert_eq!(r.status, 400, "a link works once");
    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "link@real.test", "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

#[tokio::test]
async fn two_factor_login_with_totp() {
    let server = TestServer::start().await;
    server.add_user("mfa@real.test").await;
    server
        .set_password("mfa@real.test", "a long passphrase")
        .await;
    let secret = server.enable_totp("mfa@real.test").await;

    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "mfa@real.test", "password": "a long passphrase", "device": "phone"}),
    )
    .await;
    assert_eq!(
        (
            r.status,
            r.json["mfa_enabled"].clone(),
            r.json["api_key"].clone()
        ),
        (200, json!(true), json!(null))
    );
    let mfa_key = r.json["mfa_key"].as_str().expect("mfa_key").to_string();

    let now = chrono_now();
    let code = postern_domain::auth::totp_at(&secret, now / 30).expect("code");
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let r = post(
        &server,
        "/api/auth/mfa",
        json!({"mfa_token": wrong, "mfa_key": mfa_key, "device": "phone"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "Wrong TOTP Token"}))
    );
    let r = post(
        &server,
        "/api/auth/mfa",
        json!({"mfa_token": "123456", "mfa_key": "1.2.forged", "device": "phone"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "Invalid mfa_key"}))
    );
    let r = post(
        &server,
        "/api/auth/mfa",
        json!({"mfa_token": code, "mfa_key": mfa_key, "device": "phone"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let key = r.json["api_key"].as_str().expect("key").to_string();
    assert_eq!(
        call(&server, "GET", "/api/user_info", Some(&key), None)
            .await
            .status,
        200
    );
    // A code works once.
    let r = post(
        &server,
        "/api/auth/mfa",
        json!({"mfa_token": code, "mfa_key": mfa_key, "device": "phone"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "Wrong TOTP Token"}))
    );
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[tokio::test]
async fn password_reset_by_email_revokes_old_keys() {
    let server = TestServer::start().await;
    let old_key = server.add_user("forgot@real.test").await;
    let r = post(
        &server,
        "/api/auth/forgot_password",
        json!({"email": "forgot@real.test"}),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    let r = post(
        &server,
        "/api/auth/forgot_password",
        json!({"email": "unknown@real.test"}),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (200, &json!({"ok": true})),
        "no account enumeration"
    );
    let token = from_email(&server, "forgot@real.test", 1, "token=").await;
    assert_eq!(
        server.sink.received().len(),
        1,
        "nothing is sent for unknown addresses"
    );

    let r = post(
        &server,
        "/api/auth/reset_password",
        json!({"token": token, "password": "brand new passphrase"}),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    let r = post(
        &server,
        "/api/auth/reset_password",
        json!({"token": token, "password": "brand new passphrase"}),
    )
    .await;
    assert_eq!(r.status, 400, "a reset link works once");
    assert_eq!(
        call(&server, "GET", "/api/user_info", Some(&old_key), None)
            .await
            .status,
        401
    );
    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "forgot@real.test", "password": "brand new passphrase"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
}

#[tokio::test]
async fn api_keys_sudo_logout_and_account_deletion() {
    let server = TestServer::start().await;
    let key = server.add_user("keys@real.test").await;
    server
        .add_alias("keys@real.test", Some("mine@alias.test"), &[])
        .await;
    server
        .set_password("keys@real.test", "a long passphrase")
        .await;

    let r = call(
        &server,
        "POST",
        "/api/api_key",
        Some(&key),
        Some(json!({"device": "laptop"})),
    )
    .await;
    assert_eq!((r.status, &r.json), (440, &json!({"error": "Need sudo"})));
    let r = call(
        &server,
        "PATCH",
        "/api/sudo",
        Some(&key),
        Some(json!({"password": "wrong"})),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (403, &json!({"error": "Invalid password"}))
    );
    let r = call(
        &server,
        "PATCH",
        "/api/sudo",
        Some(&key),
        Some(json!({"password": "a long passphrase"})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    let r = call(
        &server,
        "POST",
        "/api/api_key",
        Some(&key),
        Some(json!({"device": "laptop"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let laptop = r.json["api_key"].as_str().expect("key").to_string();

    let r = call(&server, "GET", "/api/api_keys", Some(&laptop), None).await;
    let keys = r.json["api_keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(
        keys.iter()
            .all(|k| k.get("key_hash").is_none() && k.get("api_key").is_none())
    );
    // Use is written at most once a minute per key: the first use is.
    assert!(
        keys[0]["use_count"].as_i64().expect("count") >= 1 && keys[0]["last_used"].is_i64(),
        "{}",
        r.json
    );
    let first_id = keys[0]["id"].as_i64().expect("id");

    let r = call(&server, "GET", "/api/logout", Some(&laptop), None).await;
    assert_eq!(
        (r.status, &r.json),
        (200, &json!({"msg": "User is logged out"}))
    );
    assert_eq!(
        call(&server, "GET", "/api/user_info", Some(&laptop), None)
            .await
            .status,
        401
    );

    let other = server.add_user("other@real.test").await;
    let r = call(
        &server,
        "DELETE",
        &format!("/api/api_keys/{first_id}"),
        Some(&other),
        None,
    )
    .await;
    assert_eq!((r.status, &r.json), (403, &json!({"error": "Forbidden"})));

    let r = call(&server, "DELETE", "/api/user", Some(&key), None).await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    assert_eq!(
        call(&server, "GET", "/api/user_info", Some(&key), None)
            .await
            .status,
        401
    );
    let err = server
        .cli(postern::cli::Command::Alias(
            postern::cli::AliasCommand::Add {
                user_email: "other@real.test".into(),
                address: Some("mine@alias.test".into()),
                mailboxes: vec![],
            },
        ))
        .await
        .expect_err("the deleted account's alias stays retired");
    assert!(err.contains("already taken"), "{err}");
}

/// Limits live in the running server, so this test talks to it over HTTP.
#[tokio::test]
async fn limits_answer_429() {
    let server = TestServer::start_with(&[
        ("limits.login_per_minute", "3"),
        ("limits.alias_per_minute", "2"),
        ("limits.signup_per_minute", "1"),
    ])
    .await;
    let key = server.add_user("busy@real.test").await;
    let json_header = [("Content-Type", "application/json")];
    let login = r#"{"email": "busy@real.test", "password": "nope"}"#;
    for n in 0..3 {
        let r = http(
            server.http(),
            "POST",
            "/api/auth/login",
            &json_header,
            Some(login),
        )
        .await;
        assert_eq!(r.status, 400, "attempt {n}");
    }
    let r = http(
        server.http(),
        "POST",
        "/api/auth/login",
        &json_header,
        Some(login),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (429, &json!({"error": "Rate limit exceeded"}))
    );
    let auth = [("Authentication", key.as_str())];
    for _ in 0..2 {
        let r = http(server.http(), "POST", "/api/alias/random/new", &auth, None).await;
        assert_eq!(r.status, 201);
    }
    let r = http(server.http(), "POST", "/api/alias/random/new", &auth, None).await;
    assert_eq!(
        (r.status, &r.json),
        (429, &json!({"error": "Rate limit exceeded"}))
    );
    let signup =
        |email: &str| format!(r#"{{"email": "{email}", "password": "a long passphrase"}}"#);
    let r = http(
        server.http(),
        "POST",
        "/api/auth/register",
        &json_header,
        Some(&signup("a@real.test")),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = http(
        server.http(),
        "POST",
        "/api/auth/register",
        &json_header,
        Some(&signup("b@real.test")),
    )
    .await;
    assert_eq!(r.status, 429);
}

#[tokio::test]
async fn browser_sessions_use_cookies_with_csrf() {
    let server = TestServer::start().await;
    server.add_user("web@real.test").await;
    server
        .add_alias("web@real.test", Some("web@alias.test"), &[])
        .await;
    server
        .set_password("web@real.test", "a long passphrase")
        .await;

    let r = http(
        server.http(),
        "POST",
        "/api/auth/login",
        &[("Content-Type", "application/json")],
        Some(r#"{"email": "web@real.test", "password": "a long passphrase", "device": "web"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let set_cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .expect("name=value")
        .to_string();

    // The cookie counts only when the client opts in, as SimpleLogin's extension does.
    let r = http(
        server.http(),
        "GET",
        "/api/user_info",
        &[("Cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    let with_cookie = [("Cookie", cookie.as_str()), ("X-Sl-Allowcookies", "1")];
    let r = http(server.http(), "GET", "/api/user_info", &with_cookie, None).await;
    assert_eq!(
        (r.status, r.json["email"].clone()),
        (200, json!("web@real.test"))
    );

    // Writes need the session's CSRF token.
    let r = http(
        server.http(),
        "POST",
        "/api/alias/random/new",
        &with_cookie,
        None,
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (403, &json!({"error": "CSRF token missing or invalid"}))
    );
    let r = http(server.http(), "GET", "/api/csrf", &with_cookie, None).await;
    let csrf = r.json["csrf_token"].as_str().expect("csrf").to_string();
    let bad = [
        ("Cookie", cookie.as_str()),
        ("X-Sl-Allowcookies", "1"),
        ("X-CSRF-Token", "wrong"),
    ];
    assert_eq!(
        http(server.http(), "POST", "/api/alias/random/new", &bad, None)
            .await
            .status,
        403
    );
    let good = [
        ("Cookie", cookie.as_str()),
        ("X-Sl-Allowcookies", "1"),
        ("X-CSRF-Token", csrf.as_str()),
        ("Content-Type", "application/json"),
    ];
    let r = http(server.http(), "POST", "/api/alias/random/new", &good, None).await;
    assert_eq!(r.status, 201, "{}", r.json);
    // A login with the password just now counts as sudo: the browser extension gets its
    // key this way.
    let r = http(
        server.http(),
        "POST",
        "/api/api_key",
        &good,
        Some(r#"{"device": "extension"}"#),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.json);
    let key = r.json["api_key"].as_str().expect("key").to_string();
    assert_eq!(
        call(&server, "GET", "/api/user_info", Some(&key), None)
            .await
            .status,
        200
    );

    let r = http(server.http(), "GET", "/api/logout", &with_cookie, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0"))
    );
    assert_eq!(
        http(server.http(), "GET", "/api/user_info", &with_cookie, None)
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn an_admin_quota_limits_aliases() {
    let server = TestServer::start().await;
    let key = server.add_user("q@real.test").await;
    let quota = |limit: &str| {
        postern::cli::Command::User(postern::cli::UserCommand::Quota {
            email: "q@real.test".into(),
            limit: limit.into(),
        })
    };
    let err = server.cli(quota("lots")).await.expect_err("not a number");
    assert!(err.contains("not a number of aliases"), "{err}");
    server.cli(quota("1")).await.expect("quota");
    let me = call(&server, "GET", "/api/user_info", Some(&key), None).await;
    assert_eq!(
        (
            me.json["is_premium"].clone(),
            me.json["max_alias_free_plan"].clone()
        ),
        (json!(false), json!(1))
    );
    assert_eq!(
        call(&server, "POST", "/api/alias/random/new", Some(&key), None)
            .await
            .status,
        201
    );
    let r = call(&server, "POST", "/api/alias/random/new", Some(&key), None).await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "the alias quota of 1 is reached"}))
    );
    let r = call(&server, "GET", "/api/v5/alias/options", Some(&key), None).await;
    assert_eq!(r.json["can_create"], json!(false));
    server.cli(quota("none")).await.expect("no quota");
    assert_eq!(
        call(&server, "POST", "/api/alias/random/new", Some(&key), None)
            .await
            .status,
        201
    );
}

#[tokio::test]
async fn a_cookie_token_opens_a_browser_session_once() {
    let server = TestServer::start().await;
    let key = server.add_user("app@real.test").await;
    let r = call(&server, "GET", "/api/user/cookie_token", Some(&key), None).await;
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
    let me = http(
        server.http(),
        "GET",
        "/api/user_info",
        &[("Cookie", &cookie), ("X-Sl-Allowcookies", "1")],
        None,
    )
    .await;
    assert_eq!(me.json["email"], json!("app@real.test"));
    let again = http(
        server.http(),
        "GET",
        &format!("/auth/api_to_cookie?token={token}"),
        &[],
        None,
    )
    .await;
    assert_eq!(again.status, 400);
    let r = call(
        &server,
        "POST",
        "/api/notifications/1/read",
        Some(&key),
        None,
    )
    .await;
    assert_eq!((r.status, &r.json), (403, &json!({"error": "Forbidden"})));
    let r = call(
        &server,
        "DELETE",
        "/api/setting/unlink_proton_account",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "The account cannot be unlinked"}))
    );
}

#[tokio::test]
async fn two_factor_is_turned_on_and_off_through_the_api() {
    let server = TestServer::start().await;
    let key = server.add_user("totp@real.test").await;
    server
        .set_password("totp@real.test", "a long passphrase")
        .await;
    let r = call(&server, "POST", "/api/mfa/setup", Some(&key), None).await;
    assert_eq!((r.status, &r.json), (440, &json!({"error": "Need sudo"})));
    call(
        &server,
        "PATCH",
        "/api/sudo",
        Some(&key),
        Some(json!({"password": "a long passphrase"})),
    )
    .await;
    let r = call(&server, "POST", "/api/mfa/setup", Some(&key), None).await;
    let secret = r.json["secret"].as_str().expect("secret").to_string();
    assert!(
        r.json["otpauth_uri"]
            .as_str()
            .expect("uri")
            .starts_with("otpauth://totp/Postern:totp%40real.test?secret=")
    );
    let r = call(
        &server,
        "POST",
        "/api/mfa/enable",
        Some(&key),
        Some(json!({"secret": secret, "code": "000000x"})),
    )
    .await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "Wrong TOTP Token"}))
    );
    let code = postern_domain::auth::totp_at(&secret, chrono_now() / 30).expect("code");
    let r = call(
        &server,
        "POST",
        "/api/mfa/enable",
        Some(&key),
        Some(json!({"secret": secret, "code": code})),
    )
    .await;
    assert_eq!((r.status, &r.json), (200, &json!({"ok": true})));
    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "totp@real.test", "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(r.json["mfa_enabled"], json!(true));
    let r = call(&server, "DELETE", "/api/mfa", Some(&key), None).await;
    assert_eq!(r.status, 200);
    let r = post(
        &server,
        "/api/auth/login",
        json!({"email": "totp@real.test", "password": "a long passphrase"}),
    )
    .await;
    assert_eq!(r.json["mfa_enabled"], json!(false));
    let r = post(&server, "/api/auth/google", json!({"google_token": "x"})).await;
    assert_eq!(
        (r.status, &r.json),
        (400, &json!({"error": "invalid login mechanism"}))
    );
}
