//! Admission per client: concurrent sessions and new connections per minute, counted per
//! IPv4 address or IPv6 /64, checked before a session task is spent on the connection.
//! Clients in `trusted_networks` are exempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use postern_domain::limit::{MINUTE, RateLimiter, client_key};

use crate::config::GatewayConfig;
use crate::reply::Reply;

pub(crate) struct Admission {
    config: Arc<GatewayConfig>,
    /// Open sessions per client key; an entry goes when its last session ends, so the map
    /// never holds more than `max_connections` keys.
    open: Mutex<HashMap<String, usize>>,
    rate: RateLimiter,
}

/// A session's place in its client's count, given back when dropped.
pub(crate) struct Ticket {
    admission: Arc<Admission>,
    key: Option<String>,
}

impl Admission {
    pub(crate) fn new(config: Arc<GatewayConfig>) -> Arc<Self> {
        Arc::new(Self {
            config,
            open: Mutex::new(HashMap::new()),
            rate: RateLimiter::default(),
        })
    }

    /// A ticket for a new connection from `ip`, or the `421` to send it away with.
    pub(crate) fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Reply> {
        if self.config.is_trusted(ip) {
            return Ok(Ticket {
                admission: Arc::clone(self),
                key: None,
            });
        }
        let key = client_key(ip);
        if !self
            .rate
            .hit(&key, self.config.connections_per_minute_per_client, MINUTE)
        {
            return Err(Reply::too_many_connections_per_minute());
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(key.clone()).or_insert(0);
        if *count >= self.config.max_connections_per_client.max(1) {
            return Err(Reply::too_many_connections_from_client());
        }
        *count += 1;
        Ok(Ticket {
            admission: Arc::clone(self),
            key: Some(key),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(per_client: usize, per_minute: u32) -> Arc<Admission> {
        Admission::new(Arc::new(GatewayConfig {
            max_connections_per_client: per_client,
            connections_per_minute_per_client: per_minute,
            trusted_networks: vec!["192.0.2.0/24".parse().expect("cidr")],
            ..GatewayConfig::default()
        }))
    }

    #[test]
    fn sessions_per_client_are_capped_and_given_back() {
        let a = admission(2, 1000);
        let ip: IpAddr = "198.51.100.1".parse().expect("ip");
        let first = a.admit(ip).expect("1");
        let _second = a.admit(ip).expect("2");
        assert!(a.admit(ip).is_err(), "a third at once is refused");
        // The same /64 is one client; another address is not.
        let v6: IpAddr = "2001:db8::1".parse().expect("ip");
        let _v6a = a.admit(v6).expect("v6 1");
        let _v6b = a.admit("2001:db8::2".parse().expect("ip")).expect("v6 2");
        assert!(a.admit("2001:db8::3".parse().expect("ip")).is_err());
        assert!(a.admit("2001:db8:0:1::3".parse().expect("ip")).is_ok());
        drop(first);
        assert!(a.admit(ip).is_ok(), "a slot comes back when a session ends");
        // Trusted clients are not counted.
        let trusted: IpAddr = "192.0.2.9".parse().expect("ip");
        let held: Vec<Ticket> = (0..10)
            .map(|_| a.admit(trusted).expect("trusted"))
            .collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn new_connections_per_minute_are_capped() {
        let a = admission(100, 3);
        let ip: IpAddr = "198.51.100.2".parse().expect("ip");
        for _ in 0..3 {
            drop(a.admit(ip).expect("within the rate"));
        }
        assert!(a.admit(ip).is_err());
        assert!(a.admit("198.51.100.3".parse().expect("ip")).is_ok());
    }
}
