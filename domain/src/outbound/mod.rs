//! The one outbound transport: a smarthost relay or direct delivery to the recipient's MX
//! (under its MTA-STS policy, see [`crate::mtasts`]).

mod smtp;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use postern_config::{RelayTls, Settings};
use rustls::pki_types::ServerName;

use smtp::{Dialer, Pool, Security, Tls};

/// Warm connections kept to the relay, at most: one per delivery that can run at once.
const RELAY_IDLE: usize = crate::context::CONCURRENT_DELIVERIES;

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
    Relay(Arc<Pool>),
    Direct {
        pools: Arc<DirectPools>,
        resolver: Arc<TokioResolver>,
        hostname: String,
        timeout: Duration,
        port: u16,
        mta_sts: Arc<crate::mtasts::MtaSts>,
        /// Verifies against the built-in roots and `outbound.ca_file`'s: for MTA-STS `enforce`.
        verified: tokio_rustls::TlsConnector,
        /// Takes any certificate: opportunistic TLS, which only guards against a passive eye.
        unverified: tokio_rustls::TlsConnector,
    },
    /// Unit tests only: keeps what would have been sent.
    Capture(Arc<Mutex<Vec<Sent>>>),
}

impl Outbound {
    pub fn from_settings(settings: &Settings) -> Result<Self, SendError> {
        let hostname = settings.mail.hostname.clone();
        let timeout = settings.outbound.connect_timeout;
        let roots = Arc::new(roots(settings)?);
        match &settings.outbound.relay {
            Some(relay) => {
                let tls = || -> Result<Tls, SendError> {
                    let connector = if relay.verify_certificate {
                        connector(Verify::Against(Arc::clone(&roots)))?
                    } else {
                        connector(Verify::Nothing)?
                    };
                    Ok(Tls {
                        connector,
                        name: server_name(&relay.host)?,
                    })
                };
                let security = match relay.tls {
                    RelayTls::None => Security::None,
                    RelayTls::Opportunistic => Security::Opportunistic(tls()?),
                    RelayTls::Required => Security::Required(tls()?),
                };
                let dialer = Dialer {
                    hello: hostname,
                    timeout,
                    security,
                    credentials: relay.credentials.clone(),
                };
                Ok(Outbound::Relay(Arc::new(Pool::new(
                    relay.host.clone(),
                    relay.port,
                    dialer,
                    RELAY_IDLE,
                ))))
            }
            None => {
                let resolver = Arc::new(
                    crate::dns::resolver(&settings.dns)
                        .map_err(|e| SendError::Temporary(e.to_string()))?,
                );
                let mta_sts = crate::mtasts::MtaSts::new(
                    Arc::clone(&resolver),
                    (*roots).clone(),
                    settings.outbound.mta_sts_port,
                    timeout,
                )
                .map_err(SendError::Permanent)?;
                Ok(Outbound::Direct {
                    pools: Arc::default(),
                    resolver,
                    hostname,
                    timeout,
                    port: settings.outbound.mx_port,
                    mta_sts: Arc::new(mta_sts),
                    verified: connector(Verify::Against(roots))?,
                    unverified: connector(Verify::Nothing)?,
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
        check_address("sender", mail_from)?;
        check_address("recipient", rcpt)?;
        match self {
            Outbound::Relay(pool) => pool.send(mail_from, rcpt, body).await,
            Outbound::Direct {
                pools,
                resolver,
                hostname,
                timeout,
                port,
                mta_sts,
                verified,
                unverified,
            } => {
                let direct = Direct {
                    pools,
                    resolver,
                    hostname,
                    timeout: *timeout,
                    port: *port,
                    mta_sts,
                    verified,
                    unverified,
                };
                direct.send(mail_from, rcpt, body).await
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

/// An address we put in an envelope: `local@domain`, with nothing that would end or extend the
/// command it goes into.
fn check_address(role: &str, address: &str) -> Result<(), SendError> {
    let plausible = match address.rsplit_once('@') {
        Some((local, domain)) => !local.is_empty() && !domain.is_empty(),
        None => false,
    };
    let clean = !address
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>');
    if plausible && clean {
        Ok(())
    } else {
        Err(SendError::Permanent(format!("invalid {role} {address:?}")))
    }
}

/// The roots server certificates are verified against: the built-in ones, and
/// `outbound.ca_file`'s.
fn roots(settings: &Settings) -> Result<rustls::RootCertStore, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &settings.outbound.ca_file {
        let bad =
            |e: String| SendError::Permanent(format!("outbound.ca_file {}: {e}", path.display()));
        let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut text.as_slice()) {
            roots
                .add(cert.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(bad("no PEM certificate in it".into()));
        }
    }
    Ok(roots)
}

enum Verify {
    Against(Arc<rustls::RootCertStore>),
    /// Opportunistic TLS to an MX, or a relay configured with `verify=no`.
    Nothing,
}

fn connector(verify: Verify) -> Result<tokio_rustls::TlsConnector, SendError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| SendError::Permanent(format!("TLS setup: {e}")))?;
    let config = match verify {
        Verify::Against(roots) => builder.with_root_certificates(roots),
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    }
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn server_name(host: &str) -> Result<ServerName<'static>, SendError> {
    ServerName::try_from(host.to_string())
        .map_err(|e| SendError::Permanent(format!("{host} is not a server name: {e}")))
}

/// Accepts any certificate, but still checks that the server holds its key: encryption
/// against a passive eye, without a claim about who the server is.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Idle connections kept per address of a mail host when delivering directly.
const DIRECT_IDLE: usize = 4;

/// Mail host addresses whose pools are kept before the idle ones are swept early.
const DIRECT_POOLS: usize = 256;

/// How often the direct pools drop connections idle too long, and the pools left empty.
const DIRECT_SWEEP: Duration = Duration::from_secs(30);

/// One address of a mail host, as direct delivery reaches it: the TLS it requires is part of
/// it, so a connection opened under an opportunistic policy never serves an `enforce` one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Destination {
    ip: std::net::IpAddr,
    port: u16,
    host: String,
    enforce: bool,
}

/// Warm connections for direct delivery, a pool per [`Destination`]: a run of mail to one
/// provider pays for its TCP and TLS handshakes once, not once a message. Connections idle
/// for long are closed, and pools left with none are dropped, on a sweep every
/// [`DIRECT_SWEEP`] (or sooner once [`DIRECT_POOLS`] destinations are held).
#[derive(Default)]
pub struct DirectPools(Mutex<Held>);

#[derive(Default)]
struct Held {
    pools: HashMap<Destination, Arc<Pool>>,
    swept: Option<std::time::Instant>,
}

impl DirectPools {
    fn get(&self, key: Destination, dialer: impl FnOnce() -> Dialer) -> Arc<Pool> {
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let Held { pools, swept } = &mut *held;
        let due = swept.is_none_or(|at| at.elapsed() >= DIRECT_SWEEP);
        if due || pools.len() >= DIRECT_POOLS {
            // A pool in use elsewhere (another reference) stays, idle or not.
            pools.retain(|_, pool| pool.prune() || Arc::strong_count(pool) > 1);
            *swept = Some(std::time::Instant::now());
        }
        if let Some(pool) = pools.get(&key) {
            return Arc::clone(pool);
        }
        let pool = Arc::new(Pool::new(
            key.ip.to_string(),
            key.port,
            dialer(),
            DIRECT_IDLE,
        ));
        if pools.len() < DIRECT_POOLS {
            pools.insert(key, Arc::clone(&pool));
        }
        pool
    }
}

/// Direct delivery to a recipient domain's MX hosts, under its MTA-STS policy.
struct Direct<'a> {
    pools: &'a DirectPools,
    resolver: &'a TokioResolver,
    hostname: &'a str,
    timeout: Duration,
    port: u16,
    mta_sts: &'a crate::mtasts::MtaSts,
    verified: &'a tokio_rustls::TlsConnector,
    unverified: &'a tokio_rustls::TlsConnector,
}

impl Direct<'_> {
    async fn send(&self, mail_from: &str, rcpt: &str, body: &[u8]) -> Result<(), SendError> {
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
            let name = server_name(&host)?;
            let security = if enforce.is_some() {
                Security::Required(Tls {
                    connector: self.verified.clone(),
                    name,
                })
            } else {
                Security::Opportunistic(Tls {
                    connector: self.unverified.clone(),
                    name,
                })
            };
            for ip in ips {
                let key = Destination {
                    ip,
                    port: self.port,
                    host: host.clone(),
                    enforce: enforce.is_some(),
                };
                let pool = self.pools.get(key, || Dialer {
                    hello: self.hostname.to_string(),
                    timeout: self.timeout,
                    security: security.clone(),
                    credentials: None,
                });
                match pool.send(mail_from, rcpt, body).await {
                    Ok(()) => return Ok(()),
                    Err(e @ SendError::Permanent(_)) => return Err(e),
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
