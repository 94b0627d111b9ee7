//! API speed: random-alias creation requests per second, `GET /api/v2/aliases` latency for
//! a user with 100,000 aliases (first page and a deep page), and logins per second (argon2id)
//! with the latency of other requests during that login flood, and the web dashboard's latency
//! and weight for that user (first page, a page deep in the list, a search), over real HTTP on
//! loopback.
//!
//!   cargo bench -p postern-tests --bench api [-- ALIASES REQUESTS]
//!
//! With POSTERN_TEST_DATABASE_URL it runs on PostgreSQL (see scripts/with-postgres).

use std::time::{Duration, Instant};

use postern_tests::harness::TestServer;
use postern_tests::http::http;

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let aliases = args.first().copied().unwrap_or(100_000);
    let requests = args.get(1).copied().unwrap_or(300);
    let server = TestServer::start().await;
    let key = server.add_user("bench@real.test").await;
    let db = server.running().ctx.db();
    let user = postern_domain::accounts::require_user(db, "bench@real.test")
        .await
        .expect("user");

    let started = Instant::now();
    let ids = server.seed_aliases("bench@real.test", aliases).await;
    println!("seeded {aliases} aliases in {:.1?}", started.elapsed());

    let auth = [("Authentication", key.as_str())];
    let started = Instant::now();
    for _ in 0..requests {
        let r = http(
            server.http(),
            "POST",
            "/api/alias/random/new?mode=word",
            &auth,
            None,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.json);
    }
    let elapsed = started.elapsed();
    println!(
        "POST /api/alias/random/new: {:.0} req/s ({requests} sequential requests, {elapsed:.2?})",
        requests as f64 / elapsed.as_secs_f64()
    );

    login_flood(&server, &key, requests).await;
    dashboard(&server, user.id, ids[ids.len() / 2], requests).await;

    for (label, path) in [
        ("first page", "/api/v2/aliases?page_id=0".to_string()),
        ("page 2500", "/api/v2/aliases?page_id=2500".to_string()),
    ] {
        let mut times: Vec<Duration> = Vec::with_capacity(requests);
        for _ in 0..requests {
            let t = Instant::now();
            let r = http(server.http(), "GET", &path, &auth, None).await;
            times.push(t.elapsed());
            assert_eq!(r.status, 200);
            assert_eq!(r.json["aliases"].as_array().map(Vec::len), Some(20));
        }
        times.sort();
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "GET /api/v2/aliases ({label}, {} aliases): p50 {:.2?}  p99 {:.2?}",
            aliases + requests,
            p(0.50),
            p(0.99)
        );
    }
}

/// The web UI with `aliases` aliases: `GET /dashboard` first page, a page half-way down (by its
/// cursor, as the "Next page" links carry it), and a search, each `requests` times.
async fn dashboard(server: &TestServer, user_id: i64, middle_id: i64, requests: usize) {
    let (token, _) = postern_domain::auth::create_session(
        server.running().ctx.db(),
        user_id,
        postern_domain::auth::SessionOrigin::Login,
    )
    .await
    .expect("session");
    let cookie = format!("postern_session={token}");
    for (label, path) in [
        ("first page", "/dashboard".to_string()),
        (
            "half-way down",
            format!("/dashboard?q=&filter=all&after=p0-{middle_id}"),
        ),
        ("search", "/dashboard?q=bulk4242&filter=all".to_string()),
    ] {
        let mut times: Vec<Duration> = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let r = http(server.http(), "GET", &path, &[("Cookie", &cookie)], None).await;
            times.push(t.elapsed());
            assert_eq!(r.status, 200, "{path}");
            assert!(r.body.contains("data-alias="), "{path} lists aliases");
            bytes = r.body.len();
        }
        times.sort();
        let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
        println!(
            "GET /dashboard ({label}): p50 {:.2?}  p99 {:.2?}  {:.1} KiB",
            p(0.50),
            p(0.99),
            bytes as f64 / 1024.0
        );
    }
}

/// `logins` logins from 16 concurrent clients, while one more client measures
/// `GET /api/user_info`: password hashing must not stall the rest of the API.
async fn login_flood(server: &TestServer, key: &str, logins: usize) {
    server
        .set_password("bench@real.test", "a long passphrase")
        .await;
    let addr = server.http();
    let started = Instant::now();
    let clients: Vec<_> = (0..16)
        .map(|c| {
            tokio::spawn(async move {
                for n in 0..logins / 16 {
                    let body = format!(
                        r#"{{"email": "bench@real.test", "password": "a long passphrase", "device": "d{c}-{n}"}}"#
                    );
                    let r = http(
                        addr,
                        "POST",
                        "/api/auth/login",
                        &[("Content-Type", "application/json")],
                        Some(&body),
                    )
                    .await;
                    assert_eq!(r.status, 200, "{}", r.body);
                }
            })
        })
        .collect();
    let auth = [("Authentication", key)];
    let mut times = Vec::new();
    while clients.iter().any(|c| !c.is_finished()) {
        let t = Instant::now();
        let r = http(addr, "GET", "/api/user_info", &auth, None).await;
        times.push(t.elapsed());
        assert_eq!(r.status, 200);
    }
    for c in clients {
        c.await.expect("client");
    }
    let elapsed = started.elapsed();
    let done = logins / 16 * 16;
    times.sort();
    let p = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!(
        "POST /api/auth/login: {:.0} logins/s ({done} from 16 clients, {elapsed:.2?}); \
         GET /api/user_info meanwhile: p50 {:.2?}  p99 {:.2?}  ({} requests)",
        done as f64 / elapsed.as_secs_f64(),
        p(0.50),
        p(0.99),
        times.len()
    );
}
