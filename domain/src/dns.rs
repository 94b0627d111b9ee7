//! The DNS resolver every check and delivery uses: the name servers of `dns.nameservers`, or
//! the system's. One caching resolver per process, shared by SPF, DKIM, DMARC, ARC and MX.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::{MX, MessageAuthenticator, RecordSet, ResolverCache, Txt};
use postern_config::DnsSettings;

use crate::{DomainError, Result};

fn config(settings: &DnsSettings) -> Result<(ResolverConfig, ResolverOpts)> {
    let (config, mut options) = if settings.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map_err(|e| DomainError::Invalid(format!("reading the system's resolv.conf: {e}")))?
    } else {
        let servers = settings
            .nameservers
            .iter()
            .map(|addr| {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
            })
            .collect();
        (
            ResolverConfig::from_name_servers(servers),
            ResolverOpts::default(),
        )
    };
    options.timeout = settings.timeout;
    options.attempts = 2;
    Ok((config, options))
}

/// The checker of SPF, DKIM, DMARC and ARC.
pub fn authenticator(settings: &DnsSettings) -> Result<Arc<MessageAuthenticator>> {
    let (config, options) = config(settings)?;
    MessageAuthenticator::new(config, options)
        .map(Arc::new)
        .map_err(|e| DomainError::Invalid(format!("DNS resolver: {e}")))
}

/// A plain resolver with the same configuration (MX lookups for direct delivery).
pub fn resolver(settings: &DnsSettings) -> Result<TokioResolver> {
    let (config, options) = config(settings)?;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| DomainError::Invalid(format!("DNS resolver: {e}")))
}

/// The TXT records at `name` (each record's strings joined), asked afresh of `resolver`;
/// none when the name has none or the question fails.
pub async fn txt_records(resolver: &TokioResolver, name: &str) -> Vec<String> {
    let Ok(answer) = resolver
        .txt_lookup(format!("{}.", name.trim_end_matches('.')))
        .await
    else {
        return Vec::new();
    };
    answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            hickory_resolver::proto::rr::RData::TXT(t) => Some(
                t.txt_data
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
        .collect()
}

/// Entries per cache; past it, expired ones go, and if none had, all do (memory stays bounded).
const CACHE_CAPACITY: usize = 20_000;

/// A bounded cache of parsed DNS answers for the sender checks, each kept until its TTL ends:
/// a DKIM key is parsed once per TTL, not once per message.
pub struct DnsCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K, V> Default for DnsCache<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq, V: Clone> ResolverCache<K, V> for DnsCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(name)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(v, _)| v.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CACHE_CAPACITY {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (value, valid_until));
    }
}

/// The caches the sender checks share (one set per process).
#[derive(Default)]
pub struct AuthCaches {
    pub txt: DnsCache<Box<str>, Txt>,
    pub mx: DnsCache<Box<str>, RecordSet<MX>>,
    pub ipv4: DnsCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: DnsCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: DnsCache<IpAddr, RecordSet<Box<str>>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_last_until_their_ttl_and_the_cache_stays_bounded() {
        let cache: DnsCache<Box<str>, u32> = DnsCache::default();
        let later = Instant::now() + std::time::Duration::from_secs(60);
        cache.insert("a".into(), 1, later);
        cache.insert("gone".into(), 2, Instant::now());
        assert_eq!(cache.get("a"), Some(1));
        assert_eq!(cache.get("gone"), None);
        for i in 0..CACHE_CAPACITY + 10 {
            cache.insert(format!("k{i}").into(), 0, later);
        }
        let len = cache.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
        assert!(len <= CACHE_CAPACITY, "{len}");
    }
}
