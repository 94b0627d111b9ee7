//! The DNS resolver every check and delivery uses: the name servers of `dns.nameservers`, or
//! the system's. One caching resolver per process, shared by SPF, DKIM, DMARC, ARC and MX.

use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::MessageAuthenticator;
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
