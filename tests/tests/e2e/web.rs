//! The web UI over real HTTP: security headers, CSRF, per-user isolation, paging and page
//! weight. The browser scenario is in `browser.rs`.

use postern_domain::auth::{self, SessionOrigin};
use postern_tests::harness::TestServer;
use postern_tests::http::{Reply, http};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A logged-in browser session of `email`: (cookie header value, CSRF token).
async fn session(server: &TestServer, email: &str) -> (String, String) {
    let db = server.running().ctx.db();
    let user = postern_domain::accounts::require_user(db, email)
        .await
        .expect("user");
    let (token, csrf) = auth::create_session(db, user.id, SessionOrigin::Login)
        .await
        .expect("session");
    (format!("postern_session={token}"), csrf)
}

async fn get(server: &TestServer, cookie: &str, path: &str) -> Reply {
    http(server.http(), "GET", path, &[("Cookie", cookie)], None).await
}

async fn post(server: &TestServer, cookie: &str, path: &str, body: &str) -> Reply {
    http(
        server.http(),
        "POST",
        path,
        &[("Cookie", cookie), FORM],
        Some(body),
    )
    .await
}

async fn alias_id(server: &TestServer, address: &str) -> i64 {
    postern_domain::accounts::find_alias(server.running().ctx.db(), address)
        .await
        .expect("query")
        .expect("alias")
        .id
}

async fn enabled(server: &TestServer, address: &str) -> bool {
    postern_domain::accounts::find_alias(server.running().ctx.db(), address)
        .await
        .expect("query")
        .expect("alias")
        .enabled
}

#[tokio::test]
async fn pages_forbid_inline_scripts_and_framing_and_are_not_cached() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    let (cookie, _) = session(&server, "me@real.test").await;
    let pages = [
        ("/login", ""),
        ("/signup", ""),
        ("/forgot", ""),
        ("/dashboard", cookie.as_str()),
        ("/settings", cookie.as_str()),
    ];
    for (path, cookie) in pages {
        let r = get(&server, cookie, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let csp = r.header("content-security-policy").unwrap_or_default();
        let scripts = csp
            .split(';')
            .map(str::trim)
            .find(|d| d.starts_with("script-src"))
            .unwrap_or_default();
        assert_eq!(scripts, "script-src 'self'", "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert!(!r.body.contains("<script>"), "{path}: no inline script");
        assert!(!r.body.contains(" style="), "{path}: no inline style");
        // Nothing is loaded from another host.
        for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(!r.body.contains(attr), "{path} loads {attr}");
        }
    }
    let css = get(&server, "", "/assets/app.css").await;
    assert_eq!(css.status, 200);
    assert!(
        css.header("content-type")
            .unwrap_or_default()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn a_logged_out_visitor_is_sent_to_the_login_page() {
    let server = TestServer::start().await;
    let r = get(&server, "", "/").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let r = get(&server, "", "/aliases/1?page=2").await;
    assert_eq!(r.status, 303);
    assert_eq!(
        r.header("location"),
        Some("/login?next=/aliases/1%3Fpage%3D2")
    );
    // A stale or forged cookie is no session.
    let r = get(&server, "postern_session=forged", "/dashboard").await;
    assert_eq!(r.status, 303);
}

#[tokio::test]
async fn logging_in_sets_a_strict_cookie_and_a_login_form_needs_its_token() {
    let server = TestServer::start_with(&[("http.public_url", "https://mail.example.test")]).await;
    server.add_user("me@real.test").await;
    server
        .set_password("me@real.test", "a long passphrase")
        .await;
    // The form's token comes with its own cookie.
    let page = get(&server, "", "/login").await;
    let form_cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("form cookie")
        .to_string();
    let token = form_cookie
        .split_once('=')
        .expect("name=value")
        .1
        .to_string();
    assert!(page.body.contains(&token));
    // Without the cookie (a cross-site post cannot send it), the form is refused.
    let body = format!("csrf={token}&email=me%40real.test&password=a+long+passphrase");
    let refused = post(&server, "", "/login", &body).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.header("set-cookie").is_none());
    // Wrong password: the page says so, with 400.
    let wrong = post(
        &server,
        &form_cookie,
        "/login",
        &format!("csrf={token}&email=me%40real.test&password=wrong+password"),
    )
    .await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("Email or password incorrect"));
    let ok = post(&server, &form_cookie, "/login", &body).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/dashboard"));
    let cookie = ok.header("set-cookie").expect("session cookie");
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{cookie} lacks {attribute}");
    }
}

#[tokio::test]
async fn a_form_without_the_sessions_token_changes_nothing() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let id = alias_id(&server, &alias).await;
    let (cookie, csrf) = session(&server, "me@real.test").await;
    let path = format!("/aliases/{id}/toggle");
    for body in ["", "csrf=", "csrf=0000", &format!("csrf={}x", csrf)] {
        let r = post(&server, &cookie, &path, body).await;
        assert!(r.status == 403 || r.status == 422, "{body}: {}", r.status);
        assert!(enabled(&server, &alias).await, "{body} changed the alias");
    }
    let r = post(&server, &cookie, &path, &format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert!(!enabled(&server, &alias).await);
}

#[tokio::test]
async fn one_person_never_sees_or_changes_anothers_aliases() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    server.add_user("other@work.test").await;
    let mine = server
        .add_alias("me@real.test", Some("mine@alias.test"), &[])
        .await;
    let id = alias_id(&server, &mine).await;
    let (cookie, csrf) = session(&server, "other@work.test").await;
    let page = get(&server, &cookie, &format!("/aliases/{id}")).await;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains(&mine));
    // Not an id at all: the same page.
    let page = get(&server, &cookie, "/aliases/abc").await;
    assert_eq!(page.status, 404);
    assert!(page.body.contains("does not exist"), "{}", page.body);
    let dashboard = get(&server, &cookie, "/dashboard?q=mine").await;
    assert!(!dashboard.body.contains(&mine));
    for action in ["toggle", "pin", "delete"] {
        let r = post(
            &server,
            &cookie,
            &format!("/aliases/{id}/{action}"),
            &format!("csrf={csrf}"),
        )
        .await;
        assert_eq!(r.status, 404, "{action}");
    }
    let r = post(
        &server,
        &cookie,
        &format!("/aliases/{id}/contacts"),
        &format!("csrf={csrf}&contact=x%40ext.test"),
    )
    .await;
    assert_eq!(r.status, 404);
    assert!(enabled(&server, &mine).await);
    assert!(
        postern_domain::accounts::find_alias(server.running().ctx.db(), &mine)
            .await
            .expect("query")
            .is_some_and(|a| !a.pinned && a.deleted_at.is_none())
    );
}

#[tokio::test]
async fn the_dashboard_pages_through_every_alias_once_and_searches() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    for i in 0..45 {
        server
            .add_alias("me@real.test", Some(&format!("a{i:02}@alias.test")), &[])
            .await;
    }
    let (cookie, csrf) = session(&server, "me@real.test").await;
    // Pin one from the middle: it comes first, and only once.
    let pinned = alias_id(&server, "a20@alias.test").await;
    post(
        &server,
        &cookie,
        &format!("/aliases/{pinned}/pin"),
        &format!("csrf={csrf}"),
    )
    .await;
    let mut seen: Vec<String> = Vec::new();
    let mut path = "/dashboard".to_string();
    let mut pages = 0;
    // Bounded: a next link that went nowhere new would otherwise loop.
    while pages < 10 {
        let r = get(&server, &cookie, &path).await;
        assert_eq!(r.status, 200);
        assert!(r.body.len() < 100 * 1024, "{} bytes", r.body.len());
        let on_page: Vec<String> = r
            .body
            .match_indices("data-alias=\"")
            .map(|(i, m)| {
                let rest = &r.body[i + m.len()..];
                rest[..rest.find('"').unwrap_or(0)].to_string()
            })
            .collect();
        assert!(on_page.len() <= 20);
        seen.extend(on_page);
        pages += 1;
        match r
            .body
            .split("rel=\"next\"")
            .next()
            .and_then(|b| b.rsplit("href=\"").next())
        {
            Some(href) if r.body.contains("rel=\"next\"") => {
                path = href[..href.find('"').unwrap_or(0)]
                    .replace("&#38;", "&")
                    .replace("&amp;", "&");
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 45);
    assert_eq!(seen[0], "a20@alias.test");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 45, "no alias twice");
    let found = get(&server, &cookie, "/dashboard?q=A07").await;
    assert!(found.body.contains("data-alias=\"a07@alias.test\""));
    assert_eq!(found.body.matches("data-alias=").count(), 1);
    let pinned_only = get(&server, &cookie, "/dashboard?filter=pinned").await;
    assert_eq!(pinned_only.body.matches("data-alias=").count(), 1);
}

/// The form token of a page shown before login: (cookie, token).
async fn form_token(server: &TestServer, path: &str) -> (String, String) {
    let page = get(server, "", path).await;
    assert_eq!(page.status, 200, "{path}: {}", page.body);
    let cookie = page
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("form cookie")
        .to_string();
    let token = cookie.split_once('=').expect("name=value").1.to_string();
    (cookie, token)
}

/// The value of the hidden field `name` in a page.
fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {body}"))
        + marker.len();
    body[start..][..body[start..].find('"').unwrap_or(0)].to_string()
}

fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn a_login_with_two_factor_asks_for_the_code_and_a_wrong_one_fails() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    server
        .set_password("me@real.test", "a long passphrase")
        .await;
    let secret = server.enable_totp("me@real.test").await;
    let (cookie, token) = form_token(&server, "/login").await;
    let step = post(
        &server,
        &cookie,
        "/login",
        &format!("csrf={token}&email=me%40real.test&password=a+long+passphrase"),
    )
    .await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(
        step.header("set-cookie").is_none(),
        "no session before the code"
    );
    let mfa_key = hidden(&step.body, "mfa_key");
    let code_form = |code: &str| {
        format!(
            "csrf={token}&mfa_key={}&code={code}&next=%2Fsettings",
            form_escape(&mfa_key)
        )
    };
    let wrong = post(&server, &cookie, "/login/code", &code_form("000000")).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.header("set-cookie").is_none());
    let now = chrono::Utc::now().timestamp();
    let code = postern_domain::auth::totp_at(&secret, now.div_euclid(30)).expect("code");
    let ok = post(&server, &cookie, "/login/code", &code_form(&code)).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.header("location"), Some("/settings"));
    assert!(
        ok.header("set-cookie")
            .is_some_and(|c| c.starts_with("postern_session="))
    );
}

#[tokio::test]
async fn a_forgotten_password_is_reset_from_the_emailed_link_once() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    server
        .set_password("me@real.test", "a long passphrase")
        .await;
    let (cookie, token) = form_token(&server, "/forgot").await;
    let sent = post(
        &server,
        &cookie,
        "/forgot",
        &format!("csrf={token}&email=me%40real.test"),
    )
    .await;
    assert_eq!(sent.status, 200);
    // The same answer for an address with no account.
    let unknown = post(
        &server,
        &cookie,
        "/forgot",
        &format!("csrf={token}&email=nobody%40real.test"),
    )
    .await;
    assert_eq!(unknown.status, 200);
    assert_eq!(sent.body, unknown.body);
    let link = postern_tests::harness::word_in_email(&server, "me@real.test", 1, "token=").await;
    let page = get(
        &server,
        &cookie,
        &format!("/auth/reset_password?token={link}"),
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(hidden(&page.body, "token"), link);
    let body = format!("csrf={token}&token={link}&password=a+new+long+passphrase");
    let done = post(&server, &cookie, "/auth/reset_password", &body).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Password changed"));
    let again = post(&server, &cookie, "/auth/reset_password", &body).await;
    assert_eq!(again.status, 400, "a link works once");
    let (cookie, token) = form_token(&server, "/login").await;
    let login = post(
        &server,
        &cookie,
        "/login",
        &format!("csrf={token}&email=me%40real.test&password=a+new+long+passphrase"),
    )
    .await;
    assert_eq!(login.status, 303, "{}", login.body);
}

#[tokio::test]
async fn an_alias_is_moved_between_mailboxes_and_never_left_without_one() {
    let server = TestServer::start().await;
    server.add_user("me@real.test").await;
    server.add_mailbox("me@real.test", "work@work.test").await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let id = alias_id(&server, &alias).await;
    let db = server.running().ctx.db();
    let boxes = postern_domain::accounts::user_mailboxes(db, {
        postern_domain::accounts::require_user(db, "me@real.test")
            .await
            .expect("user")
            .id
    })
    .await
    .expect("mailboxes");
    let work = boxes
        .iter()
        .find(|m| m.email == "work@work.test")
        .expect("work");
    let (cookie, csrf) = session(&server, "me@real.test").await;
    let path = format!("/aliases/{id}/mailboxes");
    let moved = post(
        &server,
        &cookie,
        &path,
        &format!("csrf={csrf}&mailbox={}", work.id),
    )
    .await;
    assert_eq!(moved.status, 303, "{}", moved.body);
    let linked = postern_domain::listing::alias_mailboxes(db, &[id])
        .await
        .expect("links")
        .remove(&id)
        .unwrap_or_default();
    assert_eq!(
        linked.iter().map(|m| m.email.as_str()).collect::<Vec<_>>(),
        ["work@work.test"]
    );
    let none = post(&server, &cookie, &path, &format!("csrf={csrf}")).await;
    assert_eq!(none.status, 400, "{}", none.body);
    assert!(none.body.contains("role=\"alert\""));
}

#[tokio::test]
async fn what_people_type_is_shown_as_text_and_never_redirects_elsewhere() {
    let server = TestServer::start().await;
    let key = server.add_user("me@real.test").await;
    server
        .set_password("me@real.test", "a long passphrase")
        .await;
    let alias = server
        .add_alias("me@real.test", Some("shop@alias.test"), &[])
        .await;
    let id = alias_id(&server, &alias).await;
    let evil = "<img src=x onerror=alert(1)>\"'";
    let r = postern_tests::http::call(
        &server,
        "PATCH",
        &format!("/api/aliases/{id}"),
        Some(&key),
        Some(serde_json::json!({"note": evil, "name": evil})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let (cookie, _) = session(&server, "me@real.test").await;
    for path in ["/dashboard".to_string(), format!("/aliases/{id}")] {
        let page = get(&server, &cookie, &path).await;
        assert!(!page.body.contains("<img src=x"), "{path} renders markup");
        assert!(page.body.contains("&#60;img src=x") || page.body.contains("&lt;img src=x"));
    }
    // A login's `next` stays on this site.
    for next in [
        "//evil.test/",
        "/\\evil.test",
        "/\t/evil.test",
        "/\r\n/evil.test",
        "https://evil.test/",
        "javascript:alert(1)",
    ] {
        let (form_cookie, token) = form_token(&server, "/login").await;
        let r = post(
            &server,
            &form_cookie,
            "/login",
            &format!(
                "csrf={token}&email=me%40real.test&password=a+long+passphrase&next={}",
                form_escape(next)
            ),
        )
        .await;
        assert_eq!(r.status, 303);
        assert_eq!(r.header("location"), Some("/dashboard"), "next={next}");
    }
    // A logged-in visitor to the login page is sent on at once: the same rule.
    let r = get(&server, &cookie, "/login?next=/%09/evil.test").await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/dashboard"));
}

#[tokio::test]
async fn the_alias_page_charts_todays_forwards() {
    let (server, alias) = crate::server_with_alias().await;
    let reply = postern_tests::client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &crate::message("bob@ext.test", &alias, "hello", "hi"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    postern_tests::harness::wait_until("the forward recorded", || async {
        postern_tests::harness::activities(&server, &alias)
            .await
            .iter()
            .any(|a| a == "forward")
    })
    .await;
    let id = alias_id(&server, &alias).await;
    let (cookie, _) = session(&server, "me@real.test").await;
    let page = get(&server, &cookie, &format!("/aliases/{id}")).await;
    let today = chrono::Utc::now().date_naive();
    assert!(
        page.body
            .contains(&format!("{today}: 1 forwarded, 0 blocked, 0 replied")),
        "{}",
        page.body
    );
    assert!(page.body.contains("1 messages in the last 30 days"));
}

#[tokio::test]
async fn the_spam_threshold_is_offered_only_where_a_filter_is_listed_and_is_checked() {
    let plain = TestServer::start().await;
    plain.add_user("me@real.test").await;
    let (cookie, _) = session(&plain, "me@real.test").await;
    let page = get(&plain, &cookie, "/settings").await;
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("spam_threshold"), "no filter, no field");

    let server = TestServer::start_with(&[("smtp.spam_filters", "10.0.0.6/32")]).await;
    server.add_user("me@real.test").await;
    let (cookie, csrf) = session(&server, "me@real.test").await;
    let page = get(&server, &cookie, "/settings").await;
    assert!(
        page.body.contains("name=\"spam_threshold\""),
        "{}",
        page.body
    );
    let threshold = || async {
        postern_domain::accounts::require_user(server.running().ctx.db(), "me@real.test")
            .await
            .expect("user")
            .spam_threshold
    };
    let saved = post(
        &server,
        &cookie,
        "/settings",
        &format!("csrf={csrf}&spam_threshold=6.5"),
    )
    .await;
    assert_eq!(
        saved.header("location"),
        Some("/settings?saved=1"),
        "{}",
        saved.body
    );
    assert_eq!(threshold().await, Some(65));
    for typed in ["lots", "0", "250"] {
        let refused = post(
            &server,
            &cookie,
            "/settings",
            &format!("csrf={csrf}&spam_threshold={typed}"),
        )
        .await;
        assert_eq!(refused.status, 400, "{typed}: {}", refused.body);
        assert!(
            refused.body.contains("Invalid spam_threshold"),
            "{}",
            refused.body
        );
        assert_eq!(threshold().await, Some(65), "{typed} changed nothing");
    }
    post(
        &server,
        &cookie,
        "/settings",
        &format!("csrf={csrf}&spam_threshold="),
    )
    .await;
    assert_eq!(threshold().await, None, "empty turns it off");
}
