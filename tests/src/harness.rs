//! The whole service on port 0 with a fresh database, relaying to a [`Sink`].
//!
//! `POSTERN_TEST_DATABASE_URL=postgres://user@127.0.0.1:PORT/postgres` runs every test on its
//! own fresh PostgreSQL database instead of SQLite.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use postern::cli::{AliasCommand, Command, DomainCommand, MailboxCommand, UserCommand};
use postern::{Roles, Running};
use postern_config::Settings;
use sea_orm::{ConnectionTrait, Database};

use crate::sink::Sink;

pub const ALIAS_DOMAIN: &str = "alias.test";
pub const REPLY_DOMAIN: &str = "reply.test";

/// Generous: CI machines are slow and share two cores. Waits end as soon as the event happens.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct TestServer {
    pub settings: Settings,
    pub sink: Sink,
    /// The only name server the service asks: tests add the records they need. The owners'
    /// mailbox domains (`real.test`, `work.test`) publish SPF for loopback, as a mailbox
    /// provider would for its users' mail.
    pub dns: crate::dns::DnsServer,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(&[]).await
    }

    /// Starts with extra `key=value` settings (dotted keys, as in the TOML file).
    pub async fn start_with(extra: &[(&str, &str)]) -> TestServer {
        postern::install_crypto_provider();
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .try_init();
        let sink = Sink::start().await;
        let dns = crate::dns::DnsServer::start().await;
        for domain in ["real.test", "work.test"] {
            dns.txt(domain, "v=spf1 ip4:127.0.0.0/8 -all");
        }
        let nameserver = dns.addr.to_string();
        let dir = tempfile::tempdir().expect("temp dir");
        let data_dir = dir.path().to_string_lossy().into_owned();
        let database_url = fresh_database(dir.path()).await;
        let relay = format!("smtp://{}?tls=none", sink.addr);
        let mut pairs: Vec<(&str, &str)> = vec![
            ("data_dir", &data_dir),
            ("database.url", &database_url),
            ("smtp.listen", "127.0.0.1:0"),
            ("http.listen", "127.0.0.1:0"),
            ("mail.alias_domains", ALIAS_DOMAIN),
            ("mail.reply_domain", REPLY_DOMAIN),
            ("mail.hostname", "mx.alias.test"),
            ("outbound.relay", &relay),
            ("outbound.connect_timeout", "5"),
            ("dns.nameservers", &nameserver),
            ("dns.timeout", "2"),
            ("queue.retry_initial", "1"),
            ("queue.max_retry_interval", "2"),
            ("queue.poll_interval", "1"),
            // Tests that exercise limits set their own.
            ("limits.login_per_minute", "10000"),
            ("limits.signup_per_minute", "10000"),
            ("limits.reset_per_minute", "10000"),
            ("limits.alias_per_minute", "10000"),
            ("limits.alias_per_hour", "10000"),
            // Tests probe unknown recipients on purpose; the tarpit has its own test.
            ("smtp.tarpit_after", "1000"),
        ];
        pairs.extend_from_slice(extra);
        let settings = Settings::from_pairs(pairs).expect("test settings are valid");
        let running = postern::start(settings.clone(), Roles::ALL, true)
            .await
            .expect("service starts");
        TestServer {
            settings,
            sink,
            dns,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("running")
    }

    pub fn smtp(&self) -> SocketAddr {
        self.running().smtp_addr.expect("smtp addr")
    }

    pub fn http(&self) -> SocketAddr {
        self.running().http_addr.expect("http addr")
    }

    /// Stops every role, as a process exit would (the database stays).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Starts again on the same database and data directory (new ports).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.smtp.listen = "127.0.0.1:0".parse().expect("addr");
        settings.http.listen = "127.0.0.1:0".parse().expect("addr");
        self.running = Some(
            postern::start(settings, Roles::ALL, true)
                .await
                .expect("service restarts"),
        );
    }

    /// Publishes in the test DNS every DKIM record `postern domain dns DOMAIN` prints; returns
    /// the printed text.
    pub async fn publish_dkim(&self, domain: &str) -> String {
        let out = self
            .cli(Command::Domain(DomainCommand::Dns {
                domain: domain.into(),
            }))
            .await
            .expect("dns records");
        self.publish_txt_lines(&out);
        out
    }

    /// Adds the `name. IN TXT "…"` lines of `zone` (DKIM records) to the test DNS.
    pub fn publish_txt_lines(&self, zone: &str) {
        for line in zone.lines().filter(|l| l.contains("._domainkey.")) {
            let (name, rest) = line.split_once(". IN TXT ").expect("TXT line");
            let value: String = rest.split('"').skip(1).step_by(2).collect();
            self.dns.txt(name, &value);
        }
    }

    /// Runs an admin CLI command; returns its stdout or the error text.
    pub async fn cli(&self, command: Command) -> Result<String, String> {
        postern::cli::run_admin(&self.settings, &command)
            .await
            .map_err(|e| format!("{e:#}"))
    }

    /// `postern user add EMAIL`: returns the API key (the last line).
    pub async fn add_user(&self, email: &str) -> String {
        let out = self
            .cli(Command::User(UserCommand::Add {
                email: email.into(),
            }))
            .await
            .expect("user add");
        last_line(&out)
    }

    pub async fn add_mailbox(&self, user: &str, mailbox: &str) {
        self.cli(Command::Mailbox(MailboxCommand::Add {
            user_email: user.into(),
            mailbox_email: mailbox.into(),
        }))
        .await
        .expect("mailbox add");
    }

    /// Gives the user `password` (the CLI creates users without one); keys stay valid.
    pub async fn set_password(&self, email: &str, password: &str) {
        let db = self.running().ctx.db();
        let user = postern_domain::accounts::require_user(db, email)
            .await
            .expect("user");
        let hash = postern_domain::auth::hash_password(password).expect("hash");
        let mut active: postern_entity::user::ActiveModel = user.into();
        active.password_hash = sea_orm::Set(Some(hash));
        sea_orm::ActiveModelTrait::update(active, db)
            .await
            .expect("password");
    }

    /// Turns TOTP on for the user as the API's setup and enable steps would; returns the
    /// secret.
    pub async fn enable_totp(&self, email: &str) -> String {
        let db = self.running().ctx.db();
        let user = postern_domain::accounts::require_user(db, email)
            .await
            .expect("user");
        let secret = postern_domain::auth::begin_totp(db, user)
            .await
            .expect("setup");
        let user = postern_domain::accounts::require_user(db, email)
            .await
            .expect("user");
        // A step in the past, so the current code is still fresh for the test.
        let then = chrono::Utc::now().timestamp() - 30;
        let code = postern_domain::auth::totp_at(&secret, then.div_euclid(30)).expect("code");
        assert!(
            postern_domain::auth::confirm_totp(db, &user, &code, then)
                .await
                .expect("enable")
        );
        secret
    }

    /// `postern alias add`: returns the alias address.
    pub async fn add_alias(&self, user: &str, address: Option<&str>, mailboxes: &[&str]) -> String {
        let out = self
            .cli(Command::Alias(AliasCommand::Add {
                user_email: user.into(),
                address: address.map(String::from),
                mailboxes: mailboxes.iter().map(|m| m.to_string()).collect(),
            }))
            .await
            .expect("alias add");
        last_line(&out)
    }
}

impl TestServer {
    /// Adds `count` aliases `bulk{n}@alias.test` (n from 0) to `user`, each forwarding to the
    /// user's default mailbox, in batches straight into the database: how the benchmarks give
    /// a database the size of a large deployment. Returns their ids, in ascending order.
    pub async fn seed_aliases(&self, user: &str, count: usize) -> Vec<i64> {
        use postern_entity::{alias, alias_mailbox};
        use sea_orm::{EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set};
        const BATCH: usize = 1000;
        let db = self.running().ctx.db();
        let user = postern_domain::accounts::require_user(db, user)
            .await
            .expect("user");
        let mailbox_id = user.default_mailbox_id.expect("mailbox");
        let now = chrono::Utc::now();
        for start in (0..count).step_by(BATCH) {
            let rows = (start..count.min(start + BATCH)).map(|n| alias::ActiveModel {
                user_id: Set(user.id),
                email: Set(format!("bulk{n}@{ALIAS_DOMAIN}")),
                enabled: Set(true),
                created_at: Set(now),
                ..Default::default()
            });
            alias::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await
                .expect("insert aliases");
        }
        let ids: Vec<i64> = alias::Entity::find()
            .select_only()
            .column(alias::Column::Id)
            .filter(sea_orm::ColumnTrait::like(&alias::Column::Email, "bulk%"))
            .order_by_asc(alias::Column::Id)
            .into_tuple()
            .all(db)
            .await
            .expect("ids");
        for chunk in ids.chunks(BATCH) {
            let rows = chunk.iter().map(|id| alias_mailbox::ActiveModel {
                alias_id: Set(*id),
                mailbox_id: Set(mailbox_id),
            });
            alias_mailbox::Entity::insert_many(rows)
                .exec_without_returning(db)
                .await
                .expect("insert links");
        }
        ids
    }
}

pub fn last_line(out: &str) -> String {
    out.trim_end()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string()
}

async fn fresh_database(dir: &Path) -> String {
    match std::env::var("POSTERN_TEST_DATABASE_URL") {
        Ok(base) if !base.is_empty() => {
            let name = format!("postern_test_{:016x}", rand::random::<u64>());
            let admin = Database::connect(&base)
                .await
                .expect("connect to test PostgreSQL");
            admin
                .execute_unprepared(&format!("CREATE DATABASE {name}"))
                .await
                .expect("create test database");
            let (prefix, _) = base.rsplit_once('/').expect("database url has a path");
            format!("{prefix}/{name}")
        }
        _ => format!("sqlite://{}?mode=rwc", dir.join("postern.db").display()),
    }
}

/// The activity kinds recorded for `alias`, oldest first.
pub async fn activities(server: &TestServer, alias: &str) -> Vec<String> {
    use postern_entity::{activity, alias as alias_entity};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
    let db = server.running().ctx.db();
    let alias = alias_entity::Entity::find()
        .filter(alias_entity::Column::Email.eq(alias))
        .one(db)
        .await
        .expect("query alias")
        .expect("alias exists");
    activity::Entity::find()
        .filter(activity::Column::AliasId.eq(alias.id))
        .order_by_asc(activity::Column::Id)
        .all(db)
        .await
        .expect("query activities")
        .into_iter()
        .map(|a| a.kind.as_str().to_string())
        .collect()
}

/// Every delivery's `(rcpt, status)`, oldest first.
pub async fn deliveries(server: &TestServer) -> Vec<(String, String)> {
    use postern_entity::delivery;
    use sea_orm::{ActiveEnum, EntityTrait, QueryOrder};
    delivery::Entity::find()
        .order_by_asc(delivery::Column::Id)
        .all(server.running().ctx.db())
        .await
        .expect("query deliveries")
        .into_iter()
        .map(|d| (d.rcpt, d.status.to_value()))
        .collect()
}

/// Polls `condition` (database or sink state, which has no event to wait on) every 25 ms
/// until it holds; panics after [`WAIT`], saying `what` was awaited.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    while tokio::time::Instant::now() < deadline {
        tick.tick().await;
        if condition().await {
            return;
        }
    }
    panic!("{what}: not within {WAIT:?}");
}

/// Waits until no delivery is queued: whatever was accepted so far (forwards, replies,
/// notices) has been attempted to its end. Before saying something was *not* sent.
pub async fn settled(server: &TestServer) {
    let db = server.running().ctx.db();
    wait_until("every delivery attempted", || async {
        postern_domain::delivery::queue::health(db)
            .await
            .is_ok_and(|h| h.queued == 0)
    })
    .await;
}

/// Waits for `n` messages at the sink, then returns the word after `marker` in the last one
/// to `to` (a link's token, a code).
pub async fn word_in_email(server: &TestServer, to: &str, n: usize, marker: &str) -> String {
    server.sink.wait_for(n, WAIT).await;
    let mail = server
        .sink
        .for_rcpt(to)
        .pop()
        .unwrap_or_else(|| panic!("an email to {to}"));
    let text = mail.text();
    let start = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in:\n{text}"))
        + marker.len();
    text[start..]
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The ids of every delivery, oldest first.
pub async fn delivery_ids(server: &TestServer) -> Vec<i64> {
    use postern_entity::delivery;
    use sea_orm::{EntityTrait, QueryOrder};
    delivery::Entity::find()
        .order_by_asc(delivery::Column::Id)
        .all(server.running().ctx.db())
        .await
        .expect("deliveries")
        .iter()
        .map(|d| d.id)
        .collect()
}
