//! The one outbound transport: a smarthost relay or direct delivery to the recipient's MX
//! (under its MTA-STS policy, see [`crate::mtasts`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use postern_config::{RelayTls, Settings};

/// Why a send failed, and whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("temporary failure: {0}")]
    Temporary(String),
    #[error("permanent failure: {0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, SendError::Permanent(_))
    }
}

/// A message as handed to the next hop, kept by the capturing transport of unit tests.
#[derive(Debug, Clone)]
pub struct Sent {
    pub mail_from: String,
    pub rcpt: String,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub enum Outbound {
    Relay(AsyncSmtpTransport<Tokio1Executor>),
    Direct {
        resolver: Arc<TokioResolver>,
        hostname: String,
        timeout: Duration,
        port: u16,
        mta_sts: Arc<crate::mtasts::MtaSts>,
        /// `outbound.ca_file`'s certificates (PEM), trusted beside the built-in roots.
        extra_roots: Arc<Vec<Vec<u8>>>,
    },
    /// Unit tests only: keeps what would have been sent.
    Capture(Arc<Mutex<Vec<Sent>>>),
}

impl Outbound {
    pub fn from_settings(settings: &Settings) -> Result<Self, SendError> {
        let hostname = settings.mail.hostname.clone();
        let timeout = settings.outbound.connect_timeout;
        match &settings.outbound.relay {
            Some(relay) => {
                let verify = relay.verify_certificate;
                let tls = match relay.tls {
                    RelayTls::None => Tls::None,
                    RelayTls::Opportunistic => Tls::Opportunistic(tls_params(&relay.host, verify)?),
                    RelayTls::Required => Tls::Required(tls_params(&relay.host, verify)?),
                };
                let mut builder =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host)
                        .port(relay.port)
                        .hello_name(ClientId::Domain(hostname))
                        .timeout(Some(timeout))
                        .tls(tls);
                if let Some((user, pass)) = &relay.credentials {
                    builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
                }
                Ok(Outbound::Relay(builder.build()))
            }
            None => {
                let resolver = Arc::new(
                    crate::dns::resolver(&settings.dns)
                        .map_err(|e| SendError::Temporary(e.to_string()))?,
                );
                let extra_roots = match &settings.outbound.ca_file {
                    Some(path) => read_pem_certificates(path)?,
                    None => Vec::new(),
                };
                let mut roots = rustls::RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for pem in &extra_roots {
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
                        roots
                            .add(cert)
                            .map_err(|e| SendError::Permanent(format!("outbound.ca_file: {e}")))?;
                    }
                }
                let mta_sts = crate::mtasts::MtaSts::new(
                    Arc::clone(&resolver),
                    roots,
                    settings.outbound.mta_sts_port,
                    timeout,
                )
                .map_err(SendError::Permanent)?;
                Ok(Outbound::Direct {
                    resolver,
                    hostname,
                    timeout,
                    port: settings.outbound.mx_port,
                    mta_sts: Arc::new(mta_sts),
                    extra_roots: Arc::new(extra_roots),
                })
            }
        }
    }

    pub fn capture() -> (Self, Arc<Mutex<Vec<Sent>>>) {
        let sent = Arc::new(Mutex::new(Vec::new()));
        (Outbound::Capture(sent.clone()), sent)
    }

    /// Sends `body` as is, with our own envelope.
    pub async fn send(&self, mail_from: &str, rcpt: &str, body: &[u8]) -> Result<(), SendError> {
        let envelope = envelope(mail_from, rcpt)?;
        // lettre ends DATA with CRLF.CRLF itself; without this a final CRLF would be doubled.
        let wire = body.strip_suffix(b"\r\n").unwrap_or(body);
        match self {
            Outbound::Relay(transport) => transport
                .send_raw(&envelope, wire)
                .await
                .map(|_| ())
                .map_err(classify),
            Outbound::Direct {
                resolver,
                hostname,
                timeout,
                port,
                mta_sts,
                extra_roots,
            } => {
                let direct = Direct {
                    resolver,
                    hostname,
                    timeout: *timeout,
                    port: *port,
                    mta_sts,
                    extra_roots,
                };
                direct.send(&envelope, rcpt, wire).await
            }
            Outbound::Capture(sent) => {
                let mut sent = sent
                    .lock()
                    .map_err(|_| SendError::Temporary("capture poisoned".into()))?;
                sent.push(Sent {
                    mail_from: mail_from.to_string(),
                    rcpt: rcpt.to_string(),
                    body: body.to_vec(),
                });
                Ok(())
            }
        }
    }
}

/// TLS to the relay: its certificate verified against the system's roots unless `verify` is
/// off (`?verify=no`).
fn tls_params(host: &str, verify: bool) -> Result<TlsParameters, SendError> {
    TlsParameters::builder(host.to_string())
        .dangerous_accept_invalid_certs(!verify)
        .dangerous_accept_invalid_hostnames(!verify)
        .build()
        .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))
}

fn envelope(mail_from: &str, rcpt: &str) -> Result<Envelope, SendError> {
    let from = mail_from
        .parse::<Address>()
        .map_err(|e| SendError::Permanent(format!("invalid sender {mail_from}: {e}")))?;
    let to = rcpt
        .parse::<Address>()
        .map_err(|e| SendError::Permanent(format!("invalid recipient {rcpt}: {e}")))?;
    Envelope::new(Some(from), vec![to]).map_err(|e| SendError::Permanent(e.to_string()))
}

/// 5xx answers are permanent; everything else (4xx, network, TLS, timeouts) is retried.
fn classify(e: lettre::transport::smtp::Error) -> SendError {
    if e.is_permanent() {
        SendError::Permanent(e.to_string())
    } else {
        SendError::Temporary(e.to_string())
    }
}

/// Each certificate of a PEM file, as its own PEM block.
fn read_pem_certificates(path: &std::path::Path) -> Result<Vec<Vec<u8>>, SendError> {
    let text = std::fs::read(path)
        .map_err(|e| SendError::Permanent(format!("outbound.ca_file {}: {e}", path.display())))?;
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut text.as_slice())
        .flatten()
        .map(|der| {
            let b64 = data_encoding::BASE64.encode(der.as_ref());
            let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(&String::from_utf8_lossy(line));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
            pem.into_bytes()
        })
        .collect();
    if certs.is_empty() {
        return Err(SendError::Permanent(format!(
            "outbound.ca_file {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// Direct delivery to a recipient domain's MX hosts, under its MTA-STS policy.
struct Direct<'a> {
    resolver: &'a TokioResolver,
    hostname: &'a str,
    timeout: Duration,
    port: u16,
    mta_sts: &'a crate::mtasts::MtaSts,
    extra_roots: &'a [Vec<u8>],
}

impl Direct<'_> {
    async fn send(&self, envelope: &Envelope, rcpt: &str, body: &[u8]) -> Result<(), SendError> {
        let domain = rcpt.rsplit('@').next().unwrap_or_default();
        let mut hosts = self.mx_hosts(domain).await?;
        // An `enforce` policy: only the MX hosts it names, over verified TLS, never in clear.
        let enforce = self
            .mta_sts
            .policy(domain)
            .await
            .filter(|p| p.mode == crate::mtasts::Mode::Enforce);
        if let Some(policy) = &enforce {
            hosts.retain(|(_, host)| policy.allows(host));
            if hosts.is_empty() {
                return Err(SendError::Temporary(format!(
                    "no MX host of {domain} is one its MTA-STS policy names"
                )));
            }
        }
        let mut last = SendError::Temporary(format!("no mail host for {domain}"));
        for (_, host) in hosts {
            let ips = match self.resolver.lookup_ip(format!("{host}.")).await {
                Ok(ips) => ips.iter().collect::<Vec<_>>(),
                Err(e) => {
                    last = SendError::Temporary(format!("{host}: {e}"));
                    continue;
                }
            };
            for ip in ips {
                let tls = if enforce.is_some() {
                    let mut params = TlsParameters::builder(host.clone());
                    for pem in self.extra_roots {
                        let cert = lettre::transport::smtp::client::Certificate::from_pem(pem)
                            .map_err(|e| SendError::Temporary(format!("TLS setup: {e}")))?;
                        params = params.add_root_certificate(cert);
                    }
                    let params = params
                        .build()
                        .map_err(|e| SendError::Temporary(format!("TLS setup: {e}")))?;
                    Tls::Required(params)
                } else {
                    let params = TlsParameters::builder(host.clone())
                        .dangerous_accept_invalid_certs(true)
                        .dangerous_accept_invalid_hostnames(true)
                        .build()
                        .map_err(|e| SendError::Temporary(format!("TLS setup: {e}")))?;
                    Tls::Opportunistic(params)
                };
                let transport =
                    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(ip.to_string())
                        .port(self.port)
                        .hello_name(ClientId::Domain(self.hostname.to_string()))
                        .timeout(Some(self.timeout))
                        .tls(tls)
                        .build();
                match transport.send_raw(envelope, body).await {
                    Ok(_) => return Ok(()),
                    Err(e) if e.is_permanent() => return Err(classify(e)),
                    Err(e) => {
                        let why = if enforce.is_some() {
                            format!("{host} ({ip}), TLS required by MTA-STS: {e}")
                        } else {
                            format!("{host} ({ip}): {e}")
                        };
                        last = SendError::Temporary(why);
                    }
                }
            }
        }
        Err(last)
    }

    /// The domain's MX hosts by preference (the domain itself when it has none).
    async fn mx_hosts(&self, domain: &str) -> Result<Vec<(u16, String)>, SendError> {
        let mut hosts: Vec<(u16, String)> =
            match self.resolver.mx_lookup(format!("{domain}.")).await {
                Ok(mx) => mx
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        hickory_resolver::proto::rr::RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_utf8().trim_end_matches('.').to_string(),
                        )),
                        _ => None,
                    })
                    .collect(),
                Err(e) if e.is_nx_domain() => {
                    return Err(SendError::Permanent(format!(
                        "the domain {domain} does not exist"
                    )));
                }
                Err(e) if e.is_no_records_found() => Vec::new(),
                Err(e) => return Err(SendError::Temporary(format!("MX lookup for {domain}: {e}"))),
            };
        hosts.sort();
        if hosts.is_empty() {
            // RFC 5321 5.1: no MX means the domain itself is the mail host.
            hosts.push((0, domain.to_string()));
        }
        if hosts.len() == 1 && (hosts[0].1.is_empty() || hosts[0].1 == ".") {
            return Err(SendError::Permanent(format!(
                "{domain} accepts no mail (null MX)"
            )));
        }
        Ok(hosts)
    }
}
