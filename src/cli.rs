//! The command line: service roles and the admin commands.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use postern_config::Settings;
use postern_domain::{EmailAddress, accounts, dkim};

#[derive(Debug, Parser)]
#[command(
    name = "postern",
    version,
    about = "Self-hosted email alias forwarding"
)]
pub struct Cli {
    /// TOML configuration file (settings can also come from POSTERN_<SECTION>__<KEY>).
    #[arg(long, global = true, env = "POSTERN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the SMTP gateway, the API and the worker in one process (migrates the database).
    Serve,
    /// Run only the SMTP gateway.
    Smtp,
    /// Run only the HTTP API.
    Api,
    /// Run only the worker (delivery retries, bounces, scheduled jobs); or one job once, or
    /// its status.
    Worker {
        #[command(subcommand)]
        action: Option<WorkerCommand>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage mailboxes.
    #[command(subcommand)]
    Mailbox(MailboxCommand),
    /// Manage aliases.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// Domain tools.
    #[command(subcommand)]
    Domain(DomainCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user whose default (verified) mailbox is EMAIL; prints the API key last.
    Add { email: String },
    /// Limit how many aliases a user may have (`none` removes the limit).
    Quota { email: String, limit: String },
}

#[derive(Debug, Subcommand)]
pub enum MailboxCommand {
    /// Add a verified mailbox to a user.
    Add {
        user_email: String,
        mailbox_email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasCommand {
    /// Create an alias (random on the first alias domain unless --address); prints it last.
    Add {
        user_email: String,
        #[arg(long)]
        address: Option<String>,
        /// A mailbox of the user to forward to (repeatable; default: the default mailbox).
        #[arg(long = "mailbox")]
        mailboxes: Vec<String>,
    },
    /// List a user's aliases, or with --reserved every alias that holds a reserved role
    /// address (taken before the name was reserved).
    List {
        #[arg(required_unless_present = "reserved")]
        user_email: Option<String>,
        /// Aliases on reserved local parts (postmaster, abuse, admin, …) and their owners.
        #[arg(long, conflicts_with = "user_email")]
        reserved: bool,
    },
    /// Stop forwarding an alias (mail is accepted and recorded as blocked).
    Disable { alias: String },
    /// Resume forwarding an alias.
    Enable { alias: String },
}

#[derive(Debug, Subcommand)]
pub enum WorkerCommand {
    /// Run one job once, now, and print what it did (queue, retention, …).
    Run { job: String },
    /// The queue (depth, oldest entry) and every job's last run.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum DomainCommand {
    /// Print the DNS records to publish for DOMAIN, as zone-file lines (with every DKIM key
    /// that signs, is about to, or is retiring).
    Dns { domain: String },
    /// Start a DKIM key rotation now: prints the new records; they sign once seen in DNS.
    RotateDkim { domain: String },
    /// Check DOMAIN's published records now (MX, SPF, DMARC, DKIM) and print the findings.
    Check { domain: String },
}

/// Runs an admin command and returns what it prints on stdout.
pub async fn run_admin(settings: &Settings, command: &Command) -> anyhow::Result<String> {
    crate::install_crypto_provider();
    let db = crate::open_database(settings, true).await?;
    let out = match command {
        Command::User(UserCommand::Add { email }) => {
            let email = parse(email)?;
            let created = accounts::create_user(&db, &email).await?;
            format!(
                "created user {} with mailbox {}\nAPI key (shown once):\n{}\n",
                created.user.email, created.mailbox.email, created.api_key
            )
        }
        Command::User(UserCommand::Quota { email, limit }) => {
            let quota = match limit.trim() {
                "none" | "unlimited" => None,
                n => Some(n.parse::<i32>().ok().filter(|n| *n >= 0).with_context(|| {
                    format!("`{n}` is not a number of aliases; give a whole number or `none`")
                })?),
            };
            let user = accounts::require_user(&db, email).await?;
            accounts::set_alias_quota(&db, user, quota).await?;
            match quota {
                Some(n) => format!(
                    "{email} may have at most {n} aliases
"
                ),
                None => format!(
                    "{email} may have any number of aliases
"
                ),
            }
        }
        Command::Mailbox(MailboxCommand::Add {
            user_email,
            mailbox_email,
        }) => {
            let user = accounts::require_user(&db, user_email).await?;
            let mailbox =
                accounts::add_mailbox(&db, settings, &user, &parse(mailbox_email)?).await?;
            format!("added mailbox {} to {}\n", mailbox.email, user.email)
        }
        Command::Alias(AliasCommand::Add {
            user_email,
            address,
            mailboxes,
        }) => {
            let user = accounts::require_user(&db, user_email).await?;
            let address = match address.as_deref() {
                Some(a) => accounts::NewAliasAddress::Exact(parse(a)?),
                None => accounts::NewAliasAddress::RandomWords(None),
            };
            let mailboxes = mailboxes
                .iter()
                .map(|m| parse(m))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let alias =
                accounts::create_alias(&db, settings, &user, address, &mailboxes, None).await?;
            format!("{}\n", alias.email)
        }
        Command::Alias(AliasCommand::List { reserved: true, .. }) => {
            let mut out = String::new();
            for alias in accounts::reserved_aliases(&db, settings).await? {
                let owner = accounts::find_user_by_id(&db, alias.user_id)
                    .await?
                    .map(|u| u.email)
                    .unwrap_or_default();
                let note = if matches!(alias.email.split('@').next(), Some("postmaster" | "abuse"))
                {
                    "goes to mail.postmaster"
                } else {
                    "still forwards"
                };
                out.push_str(&format!("{}\t{owner}\t{note}\n", alias.email));
            }
            out
        }
        Command::Alias(AliasCommand::List { user_email, .. }) => {
            let user_email = user_email
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("give a user's email, or --reserved"))?;
            let user = accounts::require_user(&db, user_email).await?;
            let mut out = String::new();
            for alias in accounts::list_aliases(&db, user.id).await? {
                let mailboxes: Vec<String> = accounts::alias_mailboxes(&db, alias.id)
                    .await?
                    .into_iter()
                    .map(|m| m.email)
                    .collect();
                out.push_str(&format!(
                    "{}\t{}\t{}\n",
                    alias.email,
                    if alias.enabled { "enabled" } else { "disabled" },
                    mailboxes.join(",")
                ));
            }
            out
        }
        Command::Alias(AliasCommand::Disable { alias }) => {
            let alias = accounts::set_alias_enabled(&db, alias, false).await?;
            format!("disabled {}\n", alias.email)
        }
        Command::Alias(AliasCommand::Enable { alias }) => {
            let alias = accounts::set_alias_enabled(&db, alias, true).await?;
            format!("enabled {}\n", alias.email)
        }
        Command::Domain(command) => {
            let (DomainCommand::Dns { domain }
            | DomainCommand::RotateDkim { domain }
            | DomainCommand::Check { domain }) = command;
            let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if !accounts::is_our_domain(settings, &domain) {
                bail!(
                    "{domain} is not one of this server's domains (mail.alias_domains: {}; mail.reply_domain: {})",
                    settings.mail.alias_domains.join(", "),
                    settings.mail.reply_domain
                );
            }
            drop(db);
            // Starting a context makes sure the domain has its keys, sealed.
            let ctx = crate::context(settings).await?;
            let db = ctx.db();
            match command {
                DomainCommand::Dns { .. } => {
                    let mut out =
                        zone_records(settings, &domain, &dkim::dns_records(db, &domain).await?);
                    for (selector, state) in dkim::key_states(db, &domain).await? {
                        if state != "active" {
                            out.push_str(&format!("; DKIM selector {selector}: {state}\n"));
                        }
                    }
                    out
                }
                DomainCommand::RotateDkim { .. } => {
                    match dkim::rotate(db, ctx.kek(), &domain).await? {
                        Some(records) => {
                            let mut out = format!(
                                "new DKIM keys for {domain}: publish these records; the worker \
                                 starts signing with them once it sees them in DNS, and keeps \
                                 the old ones published for {} more days\n",
                                settings.dkim.overlap.as_secs() / 86_400
                            );
                            for (name, value) in records {
                                out.push_str(&format!("{name}. IN TXT {}\n", quote_txt(&value)));
                            }
                            out
                        }
                        None => bail!(
                            "a rotation of {domain} is already waiting for its records in DNS \
                             (postern domain dns {domain} shows them)"
                        ),
                    }
                }
                DomainCommand::Check { .. } => postern_domain::dnscheck::check(&ctx, &domain)
                    .await?
                    .to_string(),
            }
        }
        Command::Worker {
            action: Some(action),
        } => {
            drop(db);
            let ctx = crate::context(settings).await?;
            match action {
                WorkerCommand::Run { job } => {
                    let job = postern_worker::Job::parse(job)?;
                    match job.run_leased(&ctx).await? {
                        Some(done) => format!("{}: {done}\n", job.name()),
                        None => bail!(
                            "{} is running in another worker right now; try again when it ends",
                            job.name()
                        ),
                    }
                }
                WorkerCommand::Status => postern_worker::status(&ctx).await?,
            }
        }
        Command::Serve
        | Command::Smtp
        | Command::Api
        | Command::Worker { action: None }
        | Command::Migrate => {
            bail!("not an admin command")
        }
    };
    Ok(out)
}

fn parse(address: &str) -> anyhow::Result<EmailAddress> {
    EmailAddress::parse(address).with_context(|| "check the address and try again".to_string())
}

/// MX, SPF, DMARC and DKIM records as zone-file lines. TXT values longer than 255 octets are
/// split into several quoted strings, as DNS requires.
fn zone_records(settings: &Settings, domain: &str, dkim: &[(String, String)]) -> String {
    let host = &settings.mail.hostname;
    let mut out = String::new();
    out.push_str(&format!("{domain}. IN MX 10 {host}.\n"));
    out.push_str(&format!("{domain}. IN TXT \"v=spf1 mx a:{host} ~all\"\n"));
    out.push_str(&format!(
        "_dmarc.{domain}. IN TXT \"v=DMARC1; p=quarantine; adkim=r; aspf=r\"\n"
    ));
    for (name, value) in dkim {
        out.push_str(&format!("{name}. IN TXT {}\n", quote_txt(value)));
    }
    out
}

fn quote_txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_txt_values_are_split() {
        let v = "p=".to_string() + &"A".repeat(400);
        let q = super::quote_txt(&v);
        assert_eq!(q.matches('"').count(), 4);
        assert_eq!(q.replace("\" \"", "").trim_matches('"'), v);
    }
}
