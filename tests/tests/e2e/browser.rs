//! The web UI in a real browser (Debian's chromium, headless, over chromedriver): what a person
//! does, step by step, checked against the mail that really flows and the database.

use postern_tests::browser::Browser;
use postern_tests::client;
use postern_tests::harness::{TestServer, settled, wait_until, word_in_email};

use crate::message;

const PERSON: &str = "person@real.test";
const PASSWORD: &str = "a long passphrase";

async fn log_in(b: &Browser, base: &str, email: &str, password: &str) {
    b.goto(&format!("{base}/login")).await;
    b.fill("#email", email).await;
    b.fill("#password", password).await;
    b.follow("form[action='/login'] button[type=submit]").await;
    let url = b.url().await;
    assert!(url.ends_with("/dashboard"), "after login: {url}");
}

/// The address in `#new-alias` after a creation.
async fn new_alias(b: &Browser) -> String {
    b.find("#new-alias").await.text().await.expect("text")
}

/// The dashboard card of `alias`.
fn card(alias: &str) -> String {
    format!("li[data-alias='{alias}']")
}

#[tokio::test]
async fn a_person_signs_up_creates_aliases_and_manages_their_mail_in_a_browser() {
    let server = TestServer::start().await;
    let base = format!("http://{}", server.http());
    let b = Browser::start(1280, 900).await;

    // 1. Sign up, then confirm from the emailed link.
    b.goto(&format!("{base}/signup")).await;
    b.fill("#email", PERSON).await;
    b.fill("#password", PASSWORD).await;
    b.follow("form[action='/signup'] button[type=submit]").await;
    assert!(b.text().await.contains("Check your email"));
    let token = word_in_email(&server, PERSON, 1, "token=").await;
    b.goto(&format!("{base}/auth/activate?token={token}")).await;
    b.follow("button[type=submit]").await;
    b.screenshot("01-confirmed").await;

    // 2. Log in: the dashboard, empty.
    log_in(&b, &base, PERSON, PASSWORD).await;
    assert!(b.text().await.contains("No aliases yet"));

    // 3. A random alias in one click, shown ready to copy.
    b.follow("#create-random").await;
    let random = new_alias(&b).await;
    assert!(random.ends_with("@alias.test"), "{random}");
    let copy = b.find("#created [data-copy]").await;
    assert_eq!(
        copy.attr("data-copy").await.expect("attr"),
        Some(random.clone())
    );

    // 4. A custom alias: a prefix and a signed suffix, to the default mailbox.
    b.fill("#prefix", "shop").await;
    b.follow("form[action='/aliases/custom'] button[type=submit]")
        .await;
    let shop = new_alias(&b).await;
    assert!(
        shop.starts_with("shop.") && shop.ends_with("@alias.test"),
        "{shop}"
    );
    b.screenshot("02-dashboard").await;

    // 5. Mail to it is forwarded, and the dashboard counts it.
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&shop],
        &message("bob@ext.test", &shop, "hello", "hi"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let got = server.sink.wait_for(2, postern_tests::harness::WAIT).await;
    assert!(got.iter().any(
        |m| m.rcpts == [PERSON.to_string()] && m.header("Subject").as_deref() == Some("hello")
    ));
    b.goto(&format!("{base}/dashboard")).await;
    let counters = b.find(&format!("{} .counters", card(&shop))).await;
    assert!(counters.text().await.expect("text").contains("1 forwarded"));

    // 6. The alias page: the activity and the contact.
    b.follow(&format!("{} a.address", card(&shop))).await;
    let page = b.text().await;
    assert!(page.contains("Forwarded"), "{page}");
    assert!(page.contains("bob@ext.test"), "{page}");
    b.screenshot("03-alias").await;

    // 7. Block Bob: his next message is not forwarded, and it shows.
    b.follow("form[action^='/contacts/'] button[type=submit]")
        .await;
    assert!(b.text().await.contains("Unblock"));
    assert_not_forwarded(&server, &shop, "again").await;
    b.goto(&b.url().await).await;
    assert!(b.text().await.contains("1 blocked"));

    // 8. Send a new email from the alias: the reverse alias to write to.
    b.fill("#contact", "Carol <carol@ext.test>").await;
    b.follow("form[action$='/contacts'] button[type=submit]")
        .await;
    let reverse = b.find("#reverse-alias").await.text().await.expect("text");
    assert!(reverse.contains('@'), "{reverse}");
    let db = server.running().ctx.db();
    let contact = postern_domain::accounts::find_contact_by_reverse_alias(db, &reverse)
        .await
        .expect("query")
        .expect("the reverse alias shown is a contact's");
    assert_eq!(contact.email, "carol@ext.test");

    // 9. Search and filter on the dashboard.
    b.goto(&format!("{base}/dashboard")).await;
    b.fill("#q", "shop").await;
    b.follow("form[role=search] button[type=submit]").await;
    let cards = b
        .client
        .find_all(fantoccini::Locator::Css("li[data-alias]"))
        .await
        .expect("cards");
    assert_eq!(cards.len(), 1);

    // 10. Disable it, note it, and see both.
    b.follow(&format!("{} form[action$='/toggle'] button", card(&shop)))
        .await;
    wait_until("the alias disabled", || async {
        !alias(&server, &shop).await.enabled
    })
    .await;
    b.click(&format!("{} summary", card(&shop))).await;
    b.fill(&format!("{} input[name=note]", card(&shop)), "for the shop")
        .await;
    b.follow(&format!("{} form[action$='/edit'] button", card(&shop)))
        .await;
    wait_until("the note saved", || async {
        alias(&server, &shop).await.note.as_deref() == Some("for the shop")
    })
    .await;
    let text = b.find(&card(&shop)).await.text().await.expect("text");
    assert!(
        text.contains("Disabled") && text.contains("for the shop"),
        "{text}"
    );

    // 11. An API key, shown once, that works.
    b.goto(&format!("{base}/settings/keys")).await;
    b.fill("#name", "laptop").await;
    b.follow("form[action='/settings/keys'] button[type=submit]")
        .await;
    let key = b.find("#api-key").await.text().await.expect("text");
    let me = postern_tests::http::call(&server, "GET", "/api/user_info", Some(&key), None).await;
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.json["email"], PERSON);
    b.goto(&format!("{base}/settings/keys")).await;
    assert!(!b.text().await.contains(&key), "the key is shown once");

    // 12. Delete the random alias, confirmed: gone, and its mail no longer forwarded.
    b.goto(&format!("{base}/dashboard")).await;
    b.follow(&format!("{} a[href$='/delete']", card(&random)))
        .await;
    assert!(b.text().await.contains("never be used again"));
    b.follow("form[action$='/delete'] button[type=submit]")
        .await;
    assert!(b.url().await.ends_with("/dashboard"));
    assert!(!b.text().await.contains(&random));
    assert_not_forwarded(&server, &random, "late").await;
    assert!(alias(&server, &random).await.deleted_at.is_some());

    // 13. Log out: the dashboard asks for a login again.
    b.follow("form.logout button").await;
    b.goto(&format!("{base}/dashboard")).await;
    assert!(b.url().await.contains("/login"));
    b.close().await;
}

/// Bob writes to `alias` with `subject`: whether accepted or refused, nothing is forwarded.
async fn assert_not_forwarded(server: &TestServer, alias: &str, subject: &str) {
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[alias],
        &message("bob@ext.test", alias, subject, "x"),
    )
    .await;
    assert!(
        reply.starts_with("250") || reply.starts_with("550"),
        "{reply}"
    );
    settled(server).await;
    assert!(
        !server
            .sink
            .received()
            .iter()
            .any(|m| m.header("Subject").as_deref() == Some(subject)),
        "{subject} to {alias} was forwarded"
    );
}

async fn alias(server: &TestServer, address: &str) -> postern_entity::alias::Model {
    postern_domain::accounts::find_alias(server.running().ctx.db(), address)
        .await
        .expect("query")
        .expect("alias")
}

/// Every page at 360 px: no horizontal scrolling, every field labelled, text contrast of at
/// least 4.5:1, and a visible focus ring when tabbing.
#[tokio::test]
async fn every_page_fits_a_phone_and_passes_the_accessibility_checks() {
    let server = TestServer::start().await;
    server.add_user(PERSON).await;
    server.set_password(PERSON, PASSWORD).await;
    let alias = server.add_alias(PERSON, Some("shop@alias.test"), &[]).await;
    let reply = client::send(
        server.smtp(),
        "bob@ext.test",
        &[&alias],
        &message("bob@ext.test", &alias, "hello", "hi"),
    )
    .await;
    assert!(reply.starts_with("250"), "{reply}");
    let id = alias_row_id(&server, &alias).await;
    wait_until("the forward recorded", || async {
        postern_tests::harness::activities(&server, &alias)
            .await
            .iter()
            .any(|a| a == "forward")
    })
    .await;
    let base = format!("http://{}", server.http());
    let b = Browser::start(360, 740).await;
    for path in ["/login", "/signup", "/forgot"] {
        check_page(&b, &base, path).await;
    }
    log_in(&b, &base, PERSON, PASSWORD).await;
    let alias_page = format!("/aliases/{id}");
    for path in [
        "/dashboard",
        alias_page.as_str(),
        "/mailboxes",
        "/quarantine",
        "/notifications",
        "/settings",
        "/settings/keys",
        "/settings/mfa",
    ] {
        check_page(&b, &base, path).await;
    }
    b.close().await;
}

async fn alias_row_id(server: &TestServer, address: &str) -> i64 {
    alias(server, address).await.id
}

async fn check_page(b: &Browser, base: &str, path: &str) {
    b.goto(&format!("{base}{path}")).await;
    let name = path.trim_matches('/').replace('/', "-");
    b.screenshot(&format!("phone-{name}")).await;
    assert!(!b.overflows().await, "{path} scrolls sideways at 360 px");
    let unlabelled = b
        .eval(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]\
             .filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))\
             .map(e => e.outerHTML);",
        )
        .await;
    assert_eq!(
        unlabelled,
        serde_json::json!([]),
        "{path}: fields without a label"
    );
    let low = b.eval(CONTRAST).await;
    assert_eq!(low, serde_json::json!([]), "{path}: text below 4.5:1");
    // Tab once: the focused element shows an outline.
    b.find("body")
        .await
        .send_keys("\u{E004}")
        .await
        .expect("tab");
    let outline = b
        .eval(
            "const e = document.activeElement; const s = getComputedStyle(e);\
             return e === document.body ? 'body' : s.outlineStyle + ' ' + s.outlineWidth;",
        )
        .await;
    let outline = outline.as_str().unwrap_or_default().to_string();
    assert!(
        outline != "body" && !outline.starts_with("none") && !outline.ends_with(" 0px"),
        "{path}: focus is not visible ({outline})"
    );
}

/// Every visible element with its own text, whose colour against the first opaque background
/// behind it is below 4.5:1 (WCAG AA), as `tag: ratio`.
const CONTRAST: &str = r#"
const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = e => {
  for (; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const low = [];
for (const e of document.querySelectorAll('body *')) {
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || !e.offsetParent && getComputedStyle(e).position !== 'fixed') continue;
  const fg = rgb(getComputedStyle(e).color).slice(0, 3);
  const [a, b] = [lum(fg), lum(background(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(e.tagName + ': ' + ratio.toFixed(2));
}
return low;
"#;
