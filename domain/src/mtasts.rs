//! MTA-STS (RFC 8461) for direct delivery: a recipient domain that publishes a policy in
//! `enforce` mode gets its mail only over TLS, with a certificate valid for an MX host its
//! policy lists, and never in clear text. `testing` and `none` policies, and domains without
//! one, get opportunistic STARTTLS.
//!
//! The policy is found through the `_mta-sts` TXT record (its `id` says when it changed) and
//! fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt` with a verified
//! certificate, no redirects, at most 64 KiB. It is cached for its `max_age`; when a fetch
//! fails, a cached policy still applies (an attacker who blocks the fetch gains nothing).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The most a policy (and its response headers) may weigh.
const MAX_RESPONSE: usize = 64 * 1024 + 8 * 1024;
/// The longest a policy is kept, whatever it says (RFC 8461 3.2).
const MAX_AGE: u64 = 31_557_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// MX patterns: a host name, or `*.` and a domain (one label matches the star).
    pub mx: Vec<String>,
    pub max_age: u64,
}

impl Policy {
    /// Parses a policy file (`version: STSv1`, `mode`, `mx` lines, `max_age`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut version = None;
        let mut mode = None;
        let mut mx = Vec::new();
        let mut max_age = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode `{other}`")),
                    })
                }
                "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
                "max_age" => {
                    max_age = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| format!("max_age `{value}` is not a number"))?,
                    )
                }
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("not an STSv1 policy".into());
        }
        let mode = mode.ok_or("no mode")?;
        if mode != Mode::None && mx.is_empty() {
            return Err("no mx patterns".into());
        }
        Ok(Self {
            mode,
            mx,
            max_age: max_age.ok_or("no max_age")?.min(MAX_AGE),
        })
    }

    /// Whether MX host `host` is one the policy names.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx
            .iter()
            .any(|pattern| match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => *pattern == host,
            })
    }
}

struct Cached {
    id: String,
    /// `None`: the last fetch failed (remembered briefly, so a policy host that never
    /// answers does not cost a timeout on every attempt).
    policy: Option<Policy>,
    until: Instant,
}

/// How long a failed fetch is remembered.
const FAILED_FOR: Duration = Duration::from_secs(300);
/// Domains whose policies are cached at most.
const CACHE_MAX: usize = 10_000;

/// Looks up, fetches and caches policies.
pub struct MtaSts {
    resolver: Arc<TokioResolver>,
    tls: tokio_rustls::TlsConnector,
    port: u16,
    timeout: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl MtaSts {
    pub fn new(
        resolver: Arc<TokioResolver>,
        roots: rustls::RootCertStore,
        port: u16,
        timeout: Duration,
    ) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            resolver,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            port,
            timeout,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The policy `domain` publishes, if any.
    pub async fn policy(&self, domain: &str) -> Option<Policy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            cache
                .get(&domain)
                .filter(|c| c.until > Instant::now())
                .map(|c| (c.id.clone(), c.policy.clone()))
        };
        let Some(id) = self.record_id(&domain).await else {
            // No record (or no answer): a policy still in its max_age holds.
            return cached.and_then(|(_, p)| p);
        };
        if let Some((cached_id, policy)) = &cached
            && *cached_id == id
        {
            return policy.clone();
        }
        let fetched = self.fetch(&domain).await;
        if let Err(e) = &fetched {
            tracing::info!(%domain, error = %e, "MTA-STS policy fetch failed");
        }
        // A failed fetch keeps a policy still in its max_age (an attacker who blocks the
        // fetch gains nothing), and is itself remembered for a few minutes.
        let (kept, until) = match (fetched.ok(), cached.and_then(|(_, p)| p)) {
            (Some(p), _) => {
                let until = Instant::now() + Duration::from_secs(p.max_age);
                (Some(p), until)
            }
            (None, Some(old)) => (Some(old), Instant::now() + FAILED_FOR),
            (None, None) => (None, Instant::now() + FAILED_FOR),
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.until > Instant::now());
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            domain,
            Cached {
                id,
                policy: kept.clone(),
                until,
            },
        );
        kept
    }

    /// The `id` of the `_mta-sts.<domain>` record.
    async fn record_id(&self, domain: &str) -> Option<String> {
        let records: Vec<String> =
            crate::dns::txt_records(&self.resolver, &format!("_mta-sts.{domain}"))
                .await
                .into_iter()
                .filter(|t| t.starts_with("v=STSv1"))
                .collect();
        // Exactly one record, or none counts (RFC 8461 3.1).
        let [record] = records.as_slice() else {
            return None;
        };
        record.split(';').find_map(|tag| {
            tag.trim()
                .strip_prefix("id=")
                .map(|id| id.trim().to_string())
                .filter(|id| !id.is_empty())
        })
    }

    async fn fetch(&self, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        tokio::time::timeout(self.timeout, self.get(&host))
            .await
            .map_err(|_| format!("no answer from {host} in time"))?
            .and_then(|body| Policy::parse(&body))
    }

    /// `GET /.well-known/mta-sts.txt` over verified TLS; the body of a 200.
    async fn get(&self, host: &str) -> Result<String, String> {
        let ips = self
            .resolver
            .lookup_ip(format!("{host}."))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let ip = ips
            .iter()
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let tcp = tokio::net::TcpStream::connect(SocketAddr::new(ip, self.port))
            .await
            .map_err(|e| format!("{host}: {e}"))?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let mut tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{host}: TLS: {e}"))?;
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Postern\r\n\
             Connection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&chunk[..n]);
                    if response.len() > MAX_RESPONSE {
                        return Err(format!("{host}: the policy is too large"));
                    }
                }
                // Servers that close without close_notify: what arrived is the response.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("{host}: {e}")),
            }
        }
        body_of(&response).map_err(|e| format!("{host}: {e}"))
    }
}

/// The body of an HTTP/1.1 `200` response (plain or chunked); anything else, redirects
/// included, is an error.
fn body_of(response: &[u8]) -> Result<String, String> {
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete response")?;
    let head = String::from_utf8_lossy(&response[..end]);
    let body = &response[end + 4..];
    let mut lines = head.lines();
    let status = lines.next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("answered `{status}`"));
    }
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    String::from_utf8(body).map_err(|_| "the policy is not UTF-8".to_string())
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("a truncated chunk")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("a truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).ok_or("a truncated chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_name_their_hosts() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n",
        )
        .expect("policy");
        assert_eq!(p.mode, Mode::Enforce);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("a.b.example.net"), "a star is one label");
        assert!(!p.allows("example.net"));
        assert!(!p.allows("evil.com"));
        assert!(Policy::parse("version: STSv1\nmode: enforce\nmax_age: 5\n").is_err());
        assert!(Policy::parse("mode: enforce\nmx: a\nmax_age: 5\n").is_err());
        assert!(Policy::parse("version: STSv1\nmode: strict\nmx: a\nmax_age: 5\n").is_err());
        let long = Policy::parse("version: STSv1\nmode: testing\nmx: a\nmax_age: 99999999999\n")
            .expect("policy");
        assert_eq!(long.max_age, MAX_AGE);
    }

    #[test]
    fn responses_are_read_plain_or_chunked_and_only_when_200() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\r\n";
        assert_eq!(body_of(plain).expect("body"), "version: STSv1\r\n");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        assert_eq!(body_of(chunked).expect("body"), "hello world");
        let moved = b"HTTP/1.1 301 Moved\r\nLocation: https://evil/\r\n\r\n";
        assert!(body_of(moved).is_err());
        assert!(body_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(body_of(b"garbage").is_err());
    }
}
