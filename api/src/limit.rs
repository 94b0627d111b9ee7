//! Request limits kept in memory (per instance): a sliding window estimated from two fixed
//! windows, with bounded memory and O(1) expiry. Limits that must hold across instances
//! (sign-in attempts) are counted in the database instead ([`postern_domain::auth`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::AppState;
use crate::error::ApiError;

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);

/// Keys tracked per window. Past it, new keys share one bucket: under a flood of distinct
/// clients the limiter gets stricter for newcomers rather than forgetting everyone's counts.
const CAPACITY: usize = 50_000;
const OVERFLOW: &str = "\u{0}overflow";

pub struct RateLimiter {
    minute: Mutex<Windows>,
    hour: Mutex<Windows>,
    capacity: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

/// The counts of the current window and the one before it. Rotating drops the older map
/// whole, so expiry costs nothing per key.
struct Windows {
    started: Instant,
    current: HashMap<String, u32>,
    previous: HashMap<String, u32>,
}

impl Windows {
    fn new(now: Instant) -> Self {
        Self {
            started: now,
            current: HashMap::new(),
            previous: HashMap::new(),
        }
    }
}

impl RateLimiter {
    pub fn with_capacity(capacity: usize) -> Self {
        let now = Instant::now();
        Self {
            minute: Mutex::new(Windows::new(now)),
            hour: Mutex::new(Windows::new(now)),
            capacity,
        }
    }

    /// Counts one hit on `key`; `Err(429)` once more than `limit` fall within `period`
    /// (a minute or an hour) of each other.
    pub fn hit(&self, key: &str, limit: u32, period: Duration) -> Result<(), ApiError> {
        if self.allow(key, limit, period, Instant::now()) {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Rate limit exceeded",
            ))
        }
    }

    fn allow(&self, key: &str, limit: u32, period: Duration, now: Instant) -> bool {
        let windows = if period >= HOUR {
            &self.hour
        } else {
            &self.minute
        };
        let mut w = windows.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.saturating_duration_since(w.started);
        let mut expired = Vec::new();
        if elapsed >= period {
            let older = std::mem::take(&mut w.current);
            if elapsed >= period * 2 {
                expired.push(older);
                expired.push(std::mem::take(&mut w.previous));
            } else {
                expired.push(std::mem::replace(&mut w.previous, older));
            }
            w.started = now;
        }
        let into_window = now.saturating_duration_since(w.started).as_secs_f64();
        let previous_weight = 1.0 - (into_window / period.as_secs_f64()).min(1.0);
        let key = if w.current.contains_key(key) || w.current.len() < self.capacity {
            key
        } else {
            OVERFLOW
        };
        let before = f64::from(w.previous.get(key).copied().unwrap_or(0)) * previous_weight;
        let count = w.current.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        let allowed = before + f64::from(*count) <= f64::from(limit);
        // Freeing an expired window's keys happens after the lock is released.
        drop(w);
        drop(expired);
        allowed
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        let w = self.minute.lock().unwrap_or_else(PoisonError::into_inner);
        w.current.len() + w.previous.len()
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy
/// (`http.trusted_proxies`), the nearest address in `X-Forwarded-For` that is not one.
/// IPv6 clients are keyed by their /64, which one subscriber usually holds whole.
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let Some(peer) = peer else {
            return Ok(ClientIp("local".to_string()));
        };
        let trusted = &state.ctx.settings().http.trusted_proxies;
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        Ok(ClientIp(client_key(client_address(
            peer, &forwarded, trusted,
        ))))
    }
}

/// Walks `X-Forwarded-For` from the right while the hop that added an entry is trusted.
fn client_address(peer: IpAddr, forwarded: &[&str], trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&unmap(*ip)));
    let mut client = unmap(peer);
    if !is_trusted(&client) {
        return client;
    }
    let hops = forwarded
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = unmap(ip);
        if !is_trusted(&client) {
            break;
        }
    }
    client
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn client_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_slide_and_expire() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.allow("k", 3, MINUTE, t0));
        }
        assert!(!limiter.allow("k", 3, MINUTE, t0));
        // Just after the window turns, the previous window still weighs almost fully.
        assert!(!limiter.allow("k", 3, MINUTE, t0 + MINUTE + Duration::from_secs(1)));
        // Two periods later everything is forgotten, and the memory with it.
        assert!(limiter.allow("k", 3, MINUTE, t0 + MINUTE * 4));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::with_capacity(100);
        let t0 = Instant::now();
        for i in 0..10_000 {
            limiter.allow(&format!("client-{i}"), 1_000_000, MINUTE, t0);
        }
        assert!(limiter.tracked() <= 101);
        // Newcomers share the overflow bucket; known keys keep their own counts.
        assert!(limiter.allow("client-0", 2, MINUTE, t0));
        assert!(!limiter.allow("client-0", 2, MINUTE, t0));
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let proxies: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.1.1.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.9".parse().expect("ip");
        // A client behind the proxy is the rightmost untrusted hop, not what it claims.
        assert_eq!(
            client_address(peer, &["203.0.113.5, 192.0.2.1, 10.2.2.2"], &proxies),
            "192.0.2.1".parse::<IpAddr>().expect("ip")
        );
        // A direct client cannot pretend to be someone else.
        assert_eq!(client_address(stranger, &["192.0.2.1"], &proxies), stranger);
        // Off by default.
        assert_eq!(client_address(peer, &["192.0.2.1"], &[]), peer);
        assert_eq!(
            client_key("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            "2001:db8:1:2::/64"
        );
    }
}
