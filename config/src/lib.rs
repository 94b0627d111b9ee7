//! Typed settings: one TOML file plus `POSTERN_<SECTION>__<KEY>` environment overrides.
//!
//! Every invalid setting is collected and reported at once, each with its key, so an operator
//! fixes a configuration in one round instead of one error per restart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// All settings of one Postern process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database: DatabaseSettings,
    pub smtp: SmtpSettings,
    pub http: HttpSettings,
    pub mail: MailSettings,
    pub outbound: OutboundSettings,
    pub queue: QueueSettings,
    pub accounts: AccountSettings,
    pub limits: LimitSettings,
    pub dns: DnsSettings,
    pub retention: RetentionSettings,
    pub notifications: NotificationSettings,
    pub bounces: BounceSettings,
    pub dkim: DkimSettings,
}

/// How long what the service keeps is kept (the worker's retention job prunes the rest).
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Activity rows (the per-alias counters survive: they are rolled up first).
    pub activity: Duration,
    /// Quarantined messages and the refused messages bounces carry back.
    pub quarantine: Duration,
    /// How long a VERP bounce address stays valid: a report to an older one is accepted and
    /// changes nothing. Default: the queue lifetime plus 7 days (remote servers retry too).
    pub bounce_address: Duration,
    /// Deleted aliases are purged after this long; their addresses stay taken forever.
    pub trash: Duration,
    /// Notifications, read or not.
    pub notifications: Duration,
}

/// Mail Postern writes to its users.
#[derive(Debug, Clone)]
pub struct NotificationSettings {
    /// The local part of the sender, on `mail.reply_domain`.
    pub sender: String,
    /// At most this many emails per user and kind a day (in-app ones are not limited).
    pub emails_per_kind_per_day: u32,
}

/// When bounces disable forwarding to a mailbox (SimpleLogin's defaults): more than
/// `per_day` hard bounces in 24 hours, or more than `per_week` in 7 days with more than one
/// of them in the last 24 hours. Only 5.1.x and 5.2.x count.
#[derive(Debug, Clone)]
pub struct BounceSettings {
    pub per_day: u32,
    pub per_week: u32,
}

/// DKIM key rotation and the key that encrypts private keys at rest.
#[derive(Clone)]
pub struct DkimSettings {
    /// How often a domain's keys are replaced.
    pub rotation: Duration,
    /// How long the old key stays published (and verifiable) after the new one signs.
    pub overlap: Duration,
    /// The key-encryption key itself (32 bytes, base64 or hex), best given in the
    /// environment as `POSTERN_DKIM__KEK`.
    pub kek: Option<String>,
    /// A file holding the key-encryption key. Without either, the embedded default creates
    /// `<data_dir>/dkim-kek` on first start.
    pub kek_file: Option<PathBuf>,
    /// Whether forwards are ARC-sealed (RFC 8617), so a mailbox provider that trusts us can
    /// trust the verdict we passed on. Two more RSA signatures per forward.
    pub arc_seal: bool,
}

impl fmt::Debug for DkimSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DkimSettings")
            .field("rotation", &self.rotation)
            .field("overlap", &self.overlap)
            .field("kek", &self.kek.as_ref().map(|_| "***"))
            .field("kek_file", &self.kek_file)
            .field("arc_seal", &self.arc_seal)
            .finish()
    }
}

/// Where DNS questions go (SPF, DKIM, DMARC, ARC, MX).
#[derive(Debug, Clone)]
pub struct DnsSettings {
    /// `ip:port` of each name server; empty (the default): the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// How long one question may take before it counts as a temporary failure.
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Whether anyone may sign up through the API (admins can always add users with the CLI).
    pub registration: bool,
    /// Local parts no user may take on the server's alias domains (lowercase).
    pub reserved_local_parts: Vec<String>,
    /// How long an unverified mailbox, or an account never activated, is kept.
    pub unverified_lifetime: Duration,
}

/// The default `accounts.reserved_local_parts`: role addresses (RFC 2142) and the names
/// certificate authorities and mail providers write to.
pub const RESERVED_LOCAL_PARTS: &[&str] = &[
    "postmaster",
    "abuse",
    "hostmaster",
    "webmaster",
    "admin",
    "administrator",
    "root",
    "noreply",
    "no-reply",
    "mailer-daemon",
    "security",
    "support",
    "info",
    "ssl-admin",
];

/// Request limits, per minute unless named otherwise. Over a limit: `429 Rate limit exceeded`.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// Login and MFA attempts, per account and per client address.
    pub login_per_minute: u32,
    /// Sign-ups per client address.
    pub signup_per_minute: u32,
    /// Password-reset requests per client address.
    pub reset_per_minute: u32,
    /// Alias creations per user.
    pub alias_per_minute: u32,
    pub alias_per_hour: u32,
    /// Addresses of one inbound message (sender first) that get reverse aliases; the rest
    /// are left out of the forward's To/Cc, so no contact is created for them.
    pub contacts_per_message: usize,
    /// Messages accepted per alias, and per user (all their aliases), per minute.
    pub messages_per_alias_per_minute: u32,
    pub messages_per_user_per_minute: u32,
    /// Replies (and new mail sent through reverse aliases) per user per hour.
    pub replies_per_user_per_hour: u32,
    /// Contacts (reverse aliases) a user creates through the API per hour.
    pub contacts_per_user_per_hour: u32,
}

#[derive(Clone)]
pub struct DatabaseSettings {
    /// `sqlite://…?mode=rwc` or `postgres://…`.
    pub url: String,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub listen: SocketAddr,
    pub max_message_size: usize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub command_timeout: Duration,
    pub data_timeout: Duration,
    /// PEM files for STARTTLS; a self-signed pair in `data_dir` is created when unset.
    pub tls_cert: Option<PathBuf>,
    /// Clients exempt from the per-client and per-alias limits (CIDRs): a load balancer's
    /// health check, a benchmark's load generator. Empty by default.
    pub trusted_networks: Vec<ipnet::IpNet>,
    /// Spam filters in front of us (CIDRs) whose verdict headers are believed: SpamAssassin's
    /// `X-Spam-Status`/`X-Spam-Score`, rspamd's `X-Spamd-Result`/`X-Rspamd-Score`. From any
    /// other client those headers mean nothing. Empty by default.
    pub spam_filters: Vec<ipnet::IpNet>,
    /// Concurrent sessions, and new connections per minute, per client (IPv4 address or
    /// IPv6 /64).
    pub max_connections_per_client: usize,
    pub connections_per_minute_per_client: u32,
    /// Commands, bad commands, and seconds one session may use.
    pub max_commands: usize,
    pub max_errors: usize,
    pub max_session_duration: Duration,
    /// Refused recipients after which each further one is answered more slowly (tarpit).
    pub tarpit_after: usize,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    /// The address people reach the web UI and API at, for links in emails.
    pub public_url: String,
    /// Reverse proxies whose `X-Forwarded-For` names the client (CIDRs). Empty (the default):
    /// the client is the socket peer.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    /// Domains whose addresses are aliases; the first one is the default for new aliases.
    pub alias_domains: Vec<String>,
    /// The domain of reverse aliases and VERP bounce addresses.
    pub reply_domain: String,
    /// The EHLO name of the gateway and of outbound connections.
    pub hostname: String,
    /// Where mail to `postmaster@` and `abuse@` our domains goes (RFC 5321 4.5.1), unless an
    /// alias with that address exists. `None` refuses it like any unknown address.
    pub postmaster: Option<String>,
    /// The hosts our domains' MX records may point to (the DNS check's expectation); default
    /// `hostname` alone. List a separate inbound MX or filter here.
    pub mx_hosts: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct OutboundSettings {
    /// A smarthost; `None` delivers directly to each recipient's MX.
    pub relay: Option<RelayUrl>,
    pub connect_timeout: Duration,
    /// Extra trust roots (PEM) beside the built-in ones, for MX hosts under MTA-STS and their
    /// policy servers (a private CA, a test CA).
    pub ca_file: Option<PathBuf>,
    /// The SMTP port of MX hosts (25; other values are for test setups).
    pub mx_port: u16,
    /// The HTTPS port of MTA-STS policy servers (443; other values are for test setups).
    pub mta_sts_port: u16,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The first retry delay; each later one doubles, up to `max_retry_interval`.
    pub retry_initial: Duration,
    pub max_retry_interval: Duration,
    /// How long a message is retried before it is given up as undeliverable.
    pub lifetime: Duration,
    /// How often the worker looks for due deliveries when nothing wakes it.
    pub poll_interval: Duration,
}

/// `smtp://[user:pass@]host:port[?tls=starttls|none|required]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayUrl {
    pub host: String,
    pub port: u16,
    pub tls: RelayTls,
    /// Whether the relay's certificate must verify against the system's roots (the
    /// default); `verify=no` turns it off, for a relay with a private certificate.
    pub verify_certificate: bool,
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayUrl")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|(u, _)| (u, "***")),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayTls {
    /// STARTTLS when offered (the default).
    Opportunistic,
    /// STARTTLS or fail.
    Required,
    /// Plain text, for a relay on loopback.
    None,
}

/// One invalid setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: String,
    pub problem: String,
}

/// Everything wrong with a configuration, reported together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub errors: Vec<SettingError>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.errors.len()
        )?;
        for e in &self.errors {
            writeln!(f, "  {}: {}", e.key, e.problem)?;
        }
        Ok(())
    }
}

const ENV_PREFIX: &str = "POSTERN_";

impl Settings {
    /// Loads `file` (if given) and applies `POSTERN_*` variables from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads settings from an optional TOML file and the given environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut errors = Vec::new();
        let mut table = match file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(SettingError {
                            key: path.display().to_string(),
                            problem: format!("not valid TOML: {}", e.message()),
                        });
                        toml::Table::new()
                    }
                },
                Err(e) => {
                    errors.push(SettingError {
                        key: path.display().to_string(),
                        problem: format!("cannot read the configuration file: {e}"),
                    });
                    toml::Table::new()
                }
            },
            None => toml::Table::new(),
        };
        apply_env(&mut table, env);
        let mut reader = Reader {
            table: &table,
            errors,
            seen: Vec::new(),
        };
        let settings = reader.settings();
        reader.reject_unknown_keys();
        if reader.errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError {
                errors: reader.errors,
            })
        }
    }

    /// Settings for tests and examples: everything default except the given overrides.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        Self::load_from(
            None,
            pairs.into_iter().map(|(k, v)| {
                (
                    format!("{ENV_PREFIX}{}", k.replace('.', "__").to_uppercase()),
                    v.to_string(),
                )
            }),
        )
    }

    pub fn default_alias_domain(&self) -> &str {
        self.mail
            .alias_domains
            .first()
            .map(String::as_str)
            .unwrap_or("localhost")
    }
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (one host).
fn parse_cidr(text: &str) -> Option<ipnet::IpNet> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>().ok().or_else(|| {
        text.parse::<std::net::IpAddr>()
            .ok()
            .map(ipnet::IpNet::from)
    })
}

/// `POSTERN_SMTP__LISTEN=…` sets `smtp.listen`; `POSTERN_DATA_DIR` sets `data_dir`.
fn apply_env(table: &mut toml::Table, env: impl IntoIterator<Item = (String, String)>) {
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let lower = rest.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split("__").collect();
        insert_path(table, &parts, value);
    }
}

fn insert_path(table: &mut toml::Table, path: &[&str], value: String) {
    match path {
        [] => {}
        [last] => {
            table.insert((*last).to_string(), toml::Value::String(value));
        }
        [first, rest @ ..] => {
            let entry = table
                .entry((*first).to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(inner) = entry {
                insert_path(inner, rest, value);
            }
        }
    }
}

struct Reader<'a> {
    table: &'a toml::Table,
    errors: Vec<SettingError>,
    seen: Vec<String>,
}

impl Reader<'_> {
    fn settings(&mut self) -> Settings {
        let data_dir = PathBuf::from(self.string("data_dir").unwrap_or_else(|| "./data".into()));
        let default_db = format!(
            "sqlite://{}?mode=rwc",
            data_dir.join("postern.db").display()
        );
        let database = DatabaseSettings {
            url: self.string("database.url").unwrap_or(default_db),
        };
        if !(database.url.starts_with("sqlite:")
            || database.url.starts_with("postgres://")
            || database.url.starts_with("postgresql://"))
        {
            self.error(
                "database.url",
                "must start with sqlite: or postgres:// (e.g. postgres://user:pass@host/postern)",
            );
        }
        let smtp = SmtpSettings {
            listen: self.socket("smtp.listen", "127.0.0.1:2525"),
            max_message_size: self.positive("smtp.max_message_size", 25 * 1024 * 1024),
            max_recipients: self.positive("smtp.max_recipients", 50),
            max_connections: self.positive("smtp.max_connections", 256),
            command_timeout: self.seconds("smtp.command_timeout", 300),
            data_timeout: self.seconds("smtp.data_timeout", 600),
            tls_cert: self.string("smtp.tls_cert").map(PathBuf::from),
            tls_key: self.string("smtp.tls_key").map(PathBuf::from),
            trusted_networks: self.cidrs("smtp.trusted_networks"),
            spam_filters: self.cidrs("smtp.spam_filters"),
            max_connections_per_client: self.positive("smtp.max_connections_per_client", 20),
            connections_per_minute_per_client: u32::try_from(
                self.positive("smtp.connections_per_minute_per_client", 120),
            )
            .unwrap_or(u32::MAX),
            max_commands: self.positive("smtp.max_commands", 1000),
            max_errors: self.positive("smtp.max_errors", 10),
            max_session_duration: self.seconds("smtp.max_session_duration", 1800),
            tarpit_after: self.positive("smtp.tarpit_after", 3),
        };
        if smtp.tls_cert.is_some() != smtp.tls_key.is_some() {
            self.error(
                "smtp.tls_cert",
                "smtp.tls_cert and smtp.tls_key go together",
            );
        }
        let listen = self.socket("http.listen", "127.0.0.1:8080");
        let public_url = self
            .string("http.public_url")
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            self.error("http.public_url", "must start with http:// or https://");
        }
        let trusted_proxies = self.cidrs("http.trusted_proxies");
        let http = HttpSettings {
            listen,
            public_url,
            trusted_proxies,
        };
        let alias_domains = self.list("mail.alias_domains");
        let alias_domains: Vec<String> = alias_domains
            .into_iter()
            .filter_map(|d| {
                let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
                if is_domain(&d) {
                    Some(d)
                } else {
                    self.error("mail.alias_domains", &format!("`{d}` is not a domain name"));
                    None
                }
            })
            .collect();
        let alias_domains = if alias_domains.is_empty() {
            vec!["localhost".to_string()]
        } else {
            alias_domains
        };
        let reply_domain = self
            .string("mail.reply_domain")
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_else(|| alias_domains[0].clone());
        if !is_domain(&reply_domain) {
            self.error("mail.reply_domain", "is not a domain name");
        }
        let hostname = self
            .string("mail.hostname")
            .unwrap_or_else(|| reply_domain.clone());
        if !is_domain(&hostname) {
            self.error("mail.hostname", "is not a host name");
        }
        let postmaster = self
            .string("mail.postmaster")
            .map(|p| p.trim().to_ascii_lowercase());
        if let Some(p) = &postmaster
            && !p
                .split_once('@')
                .is_some_and(|(l, d)| !l.is_empty() && is_domain(d))
        {
            self.error("mail.postmaster", &format!("`{p}` is not an email address"));
        }
        let mut mx_hosts: Vec<String> = self
            .list("mail.mx_hosts")
            .into_iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        for h in &mx_hosts {
            if !is_domain(h) {
                self.error("mail.mx_hosts", &format!("`{h}` is not a host name"));
            }
        }
        if mx_hosts.is_empty() {
            mx_hosts.push(hostname.to_ascii_lowercase());
        }
        let relay = match self.string("outbound.relay") {
            Some(s) if !s.is_empty() => match parse_relay(&s) {
                Ok(r) => Some(r),
                Err(problem) => {
                    self.error("outbound.relay", &problem);
                    None
                }
            },
            _ => None,
        };
        let port = |r: &mut Self, key: &str, default: usize| {
            let n = r.positive(key, default);
            u16::try_from(n).unwrap_or_else(|_| {
                r.error(key, &format!("`{n}` is not a port"));
                u16::try_from(default).unwrap_or(25)
            })
        };
        let outbound = OutboundSettings {
            relay,
            connect_timeout: self.seconds("outbound.connect_timeout", 30),
            ca_file: self.string("outbound.ca_file").map(PathBuf::from),
            mx_port: port(self, "outbound.mx_port", 25),
            mta_sts_port: port(self, "outbound.mta_sts_port", 443),
        };
        let queue = QueueSettings {
            retry_initial: self.seconds("queue.retry_initial", 60),
            max_retry_interval: self.seconds("queue.max_retry_interval", 4 * 3600),
            lifetime: Duration::from_secs(self.positive("queue.lifetime_days", 5) as u64 * 86_400),
            poll_interval: self.seconds("queue.poll_interval", 15),
        };
        let reserved_local_parts = match self.lookup("accounts.reserved_local_parts") {
            None => RESERVED_LOCAL_PARTS.iter().map(|s| s.to_string()).collect(),
            Some(_) => self
                .list("accounts.reserved_local_parts")
                .into_iter()
                .map(|s| s.trim().to_lowercase())
                .collect(),
        };
        let accounts = AccountSettings {
            registration: self.boolean("accounts.registration", true),
            reserved_local_parts,
            unverified_lifetime: Duration::from_secs(
                self.positive("accounts.unverified_days", 7) as u64 * 86_400,
            ),
        };
        let per = |r: &mut Self, key: &str, default: usize| {
            u32::try_from(r.positive(key, default)).unwrap_or(u32::MAX)
        };
        let limits = LimitSettings {
            login_per_minute: per(self, "limits.login_per_minute", 10),
            signup_per_minute: per(self, "limits.signup_per_minute", 10),
            reset_per_minute: per(self, "limits.reset_per_minute", 2),
            alias_per_minute: per(self, "limits.alias_per_minute", 5),
            alias_per_hour: per(self, "limits.alias_per_hour", 50),
            contacts_per_message: self.positive("limits.contacts_per_message", 100),
            messages_per_alias_per_minute: per(self, "limits.messages_per_alias_per_minute", 60),
            messages_per_user_per_minute: per(self, "limits.messages_per_user_per_minute", 200),
            replies_per_user_per_hour: per(self, "limits.replies_per_user_per_hour", 200),
            contacts_per_user_per_hour: per(self, "limits.contacts_per_user_per_hour", 100),
        };
        let mut nameservers = Vec::new();
        for text in self.list("dns.nameservers") {
            match text.trim().parse::<SocketAddr>() {
                Ok(addr) => nameservers.push(addr),
                Err(_) => match text.trim().parse::<std::net::IpAddr>() {
                    Ok(ip) => nameservers.push(SocketAddr::new(ip, 53)),
                    Err(_) => self.error(
                        "dns.nameservers",
                        &format!("`{text}` is not an address such as 127.0.0.1:53 or [::1]:53"),
                    ),
                },
            }
        }
        let dns = DnsSettings {
            nameservers,
            timeout: self.seconds("dns.timeout", 5),
        };
        let retention = RetentionSettings {
            activity: self.days("retention.activity_days", 30),
            quarantine: self.days("retention.quarantine_days", 7),
            bounce_address: self.days(
                "retention.bounce_address_days",
                usize::try_from(queue.lifetime.as_secs() / 86_400).unwrap_or(5) + 7,
            ),
            trash: self.days("retention.trash_days", 30),
            notifications: self.days("retention.notification_days", 90),
        };
        let notifications = NotificationSettings {
            sender: self
                .string("notifications.sender")
                .unwrap_or_else(|| "noreply".into()),
            emails_per_kind_per_day: per(self, "notifications.emails_per_kind_per_day", 5),
        };
        if notifications.sender.is_empty() || notifications.sender.contains(['@', ' ', '<', '>']) {
            self.error(
                "notifications.sender",
                "must be a local part, such as noreply",
            );
        }
        let bounces = BounceSettings {
            per_day: per(self, "bounces.per_day", 12),
            per_week: per(self, "bounces.per_week", 10),
        };
        let dkim = DkimSettings {
            rotation: self.days("dkim.rotation_days", 182),
            overlap: self.days("dkim.overlap_days", 7),
            kek: self.string("dkim.kek"),
            kek_file: self.string("dkim.kek_file").map(PathBuf::from),
            arc_seal: self.boolean("dkim.arc_seal", true),
        };
        if dkim.kek.is_some() && dkim.kek_file.is_some() {
            self.error("dkim.kek_file", "give dkim.kek or dkim.kek_file, not both");
        }
        Settings {
            retention,
            notifications,
            bounces,
            dkim,
            data_dir,
            database,
            smtp,
            http,
            mail: MailSettings {
                alias_domains,
                reply_domain,
                hostname,
                postmaster,
                mx_hosts,
            },
            outbound,
            queue,
            accounts,
            limits,
            dns,
        }
    }

    fn lookup(&mut self, key: &str) -> Option<&toml::Value> {
        self.seen.push(key.to_string());
        let mut node = self.table;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            let value = node.get(part)?;
            if parts.peek().is_none() {
                return Some(value);
            }
            node = value.as_table()?;
        }
        None
    }

    fn error(&mut self, key: &str, problem: &str) {
        self.errors.push(SettingError {
            key: key.to_string(),
            problem: problem.to_string(),
        });
    }

    fn string(&mut self, key: &str) -> Option<String> {
        match self.lookup(key)? {
            toml::Value::String(s) => Some(s.clone()),
            other => {
                let kind = other.type_str();
                self.error(key, &format!("expected a string, found a {kind}"));
                None
            }
        }
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        match self.lookup(key).cloned() {
            None => Vec::new(),
            Some(toml::Value::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(toml::Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => out.push(s),
                        other => {
                            let kind = other.type_str();
                            self.error(key, &format!("expected a list of strings, found a {kind}"));
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.error(
                    key,
                    &format!("expected a list of strings, found a {}", other.type_str()),
                );
                Vec::new()
            }
        }
    }

    /// A list of CIDRs (a bare address is one host).
    fn cidrs(&mut self, key: &str) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for text in self.list(key) {
            match parse_cidr(&text) {
                Some(net) => nets.push(net),
                None => self.error(
                    key,
                    &format!("`{text}` is not an address or CIDR such as 10.0.0.0/8 or ::1"),
                ),
            }
        }
        nets
    }

    fn integer(&mut self, key: &str) -> Option<i64> {
        match self.lookup(key)?.clone() {
            toml::Value::Integer(i) => Some(i),
            toml::Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Some(i),
                Err(_) => {
                    self.error(key, &format!("expected a whole number, found `{s}`"));
                    None
                }
            },
            other => {
                self.error(
                    key,
                    &format!("expected a whole number, found a {}", other.type_str()),
                );
                None
            }
        }
    }

    fn boolean(&mut self, key: &str, default: bool) -> bool {
        match self.lookup(key).cloned() {
            None => default,
            Some(toml::Value::Boolean(b)) => b,
            Some(toml::Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" | "on" => true,
                "false" | "no" | "0" | "off" => false,
                _ => {
                    self.error(key, &format!("expected true or false, found `{s}`"));
                    default
                }
            },
            Some(other) => {
                self.error(
                    key,
                    &format!("expected true or false, found a {}", other.type_str()),
                );
                default
            }
        }
    }

    fn positive(&mut self, key: &str, default: usize) -> usize {
        match self.integer(key) {
            None => default,
            Some(i) if i > 0 => usize::try_from(i).unwrap_or(default),
            Some(i) => {
                self.error(key, &format!("must be greater than zero, found {i}"));
                default
            }
        }
    }

    fn days(&mut self, key: &str, default: usize) -> Duration {
        Duration::from_secs(self.positive(key, default) as u64 * 86_400)
    }

    fn seconds(&mut self, key: &str, default: u64) -> Duration {
        Duration::from_secs(self.positive(key, default as usize) as u64)
    }

    fn socket(&mut self, key: &str, default: &str) -> SocketAddr {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 0));
        let text = self.string(key).unwrap_or_else(|| default.to_string());
        match text.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                self.error(
                    key,
                    &format!("`{text}` is not an address:port such as 127.0.0.1:2525 or [::]:25"),
                );
                fallback
            }
        }
    }

    /// A typo in a key name should fail loudly rather than be ignored.
    fn reject_unknown_keys(&mut self) {
        let mut known = BTreeMap::new();
        for key in &self.seen {
            known.insert(key.clone(), ());
        }
        let mut unknown = Vec::new();
        collect_keys(self.table, "", &mut |key| {
            if !known.contains_key(key) {
                unknown.push(key.to_string());
            }
        });
        for key in unknown {
            self.error(&key, "unknown setting");
        }
    }
}

fn collect_keys(table: &toml::Table, prefix: &str, f: &mut impl FnMut(&str)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => collect_keys(t, &key, f),
            _ => f(&key),
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits and hyphens (`localhost` allowed).
pub fn is_domain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || !c.is_ascii())
        })
}

fn parse_relay(s: &str) -> Result<RelayUrl, String> {
    let rest = s
        .strip_prefix("smtp://")
        .ok_or_else(|| format!("`{}` must look like smtp://host:port", redact_url(s)))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest.trim_end_matches('/'), None),
    };
    let authority = authority.trim_end_matches('/');
    let (credentials, hostport) = match authority.rsplit_once('@') {
        Some((creds, hp)) => {
            let (user, pass) = creds
                .split_once(':')
                .ok_or("credentials must be user:password")?;
            (Some((user.to_string(), pass.to_string())), hp)
        }
        None => (None, authority),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, p) = v6.split_once(']').ok_or("unclosed [ in host")?;
        (h.to_string(), p.strip_prefix(':').unwrap_or("25"))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (hostport.to_string(), "25"),
        }
    };
    if host.is_empty() {
        return Err("the relay host is missing".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("`{port}` is not a port number"))?;
    let mut tls = RelayTls::Opportunistic;
    let mut verify_certificate = true;
    if let Some(query) = query {
        for pair in query.split('&') {
            match pair {
                "tls=starttls" | "tls=opportunistic" => tls = RelayTls::Opportunistic,
                "tls=required" => tls = RelayTls::Required,
                "tls=none" => tls = RelayTls::None,
                "verify=yes" => verify_certificate = true,
                "verify=no" => verify_certificate = false,
                other => {
                    return Err(format!(
                        "unknown relay option `{other}` (use tls=starttls|required|none, verify=yes|no)"
                    ));
                }
            }
        }
    }
    Ok(RelayUrl {
        host,
        port,
        tls,
        verify_certificate,
        credentials,
    })
}

/// Hides a password in `scheme://user:password@host`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn trusted_proxies_and_reserved_names() {
        let s = Settings::from_pairs([
            ("http.trusted_proxies", "10.0.0.0/8, ::1, 192.0.2.7"),
            ("accounts.reserved_local_parts", "Postmaster,abuse"),
            ("accounts.unverified_days", "3"),
        ])
        .expect("valid");
        let nets: Vec<String> = s
            .http
            .trusted_proxies
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert_eq!(s.accounts.reserved_local_parts, ["postmaster", "abuse"]);
        assert_eq!(
            s.accounts.unverified_lifetime,
            Duration::from_secs(3 * 86_400)
        );
        let defaults = Settings::from_pairs([]).expect("valid");
        assert!(defaults.http.trusted_proxies.is_empty());
        assert!(
            defaults
                .accounts
                .reserved_local_parts
                .iter()
                .any(|r| r == "ssl-admin")
        );
        let err =
            Settings::from_pairs([("http.trusted_proxies", "10.0.0.0/33")]).expect_err("bad cidr");
        assert_eq!(err.errors[0].key, "http.trusted_proxies");
    }

    #[test]
    fn defaults_need_no_file() {
        let s = Settings::load_from(None, env(&[])).expect("defaults are valid");
        assert_eq!(s.smtp.listen.to_string(), "127.0.0.1:2525");
        assert_eq!(s.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.database.url.starts_with("sqlite://./data/postern.db"));
        assert!(s.outbound.relay.is_none());
    }

    #[test]
    fn env_overrides_file_and_lists_are_comma_separated() {
        let dir = std::env::temp_dir().join(format!("postern-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let file = dir.join("postern.toml");
        std::fs::write(
            &file,
            "data_dir = \"/var/lib/postern\"\n[mail]\nalias_domains = [\"a.test\"]\n[smtp]\nmax_recipients = 7\n",
        )
        .expect("write");
        let s = Settings::load_from(
            Some(&file),
            env(&[
                ("POSTERN_MAIL__ALIAS_DOMAINS", "x.test, y.test"),
                ("POSTERN_SMTP__MAX_RECIPIENTS", "9"),
                (
                    "POSTERN_OUTBOUND__RELAY",
                    "smtp://u:secret@127.0.0.1:2626?tls=none",
                ),
                ("UNRELATED", "1"),
            ]),
        )
        .expect("valid");
        assert_eq!(s.mail.alias_domains, vec!["x.test", "y.test"]);
        assert_eq!(s.mail.reply_domain, "x.test");
        assert_eq!(s.smtp.max_recipients, 9);
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/postern"));
        let relay = s.outbound.relay.expect("relay");
        assert_eq!((relay.host.as_str(), relay.port), ("127.0.0.1", 2626));
        assert_eq!(relay.tls, RelayTls::None);
        assert!(!format!("{relay:?}").contains("secret"));
    }

    #[test]
    fn every_error_is_reported_at_once_with_its_key() {
        let err = Settings::load_from(
            None,
            env(&[
                ("POSTERN_SMTP__LISTEN", "not an address"),
                ("POSTERN_SMTP__MAX_MESSAGE_SIZE", "-3"),
                ("POSTERN_HTTP__LISTEN", "localhost"),
                ("POSTERN_MAIL__ALIAS_DOMAINS", "ok.test,bad domain"),
                ("POSTERN_OUTBOUND__RELAY", "http://x"),
                ("POSTERN_DATABASE__URL", "mysql://x"),
                ("POSTERN_SMTP__LISTNE", "typo"),
            ]),
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err.errors.iter().map(|e| e.key.as_str()).collect();
        for key in [
            "smtp.listen",
            "smtp.max_message_size",
            "http.listen",
            "mail.alias_domains",
            "outbound.relay",
            "database.url",
            "smtp.listne",
        ] {
            assert!(keys.contains(&key), "{key} missing from {keys:?}");
        }
        let text = err.to_string();
        assert!(text.contains("smtp.listen: `not an address` is not an address:port"));
    }

    #[test]
    fn relay_urls() {
        let r = parse_relay("smtp://mail.example.net").expect("ok");
        assert_eq!((r.port, r.tls), (25, RelayTls::Opportunistic));
        let r = parse_relay("smtp://[::1]:2525?tls=required").expect("ok");
        assert_eq!(
            (r.host.as_str(), r.port, r.tls),
            ("::1", 2525, RelayTls::Required)
        );
        assert!(parse_relay("smtp://:25").is_err());
        assert!(parse_relay("smtp://h:99999").is_err());
        assert!(parse_relay("smtp://h:25?tls=maybe").is_err());
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
    }
}
