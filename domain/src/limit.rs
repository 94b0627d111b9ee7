//! Rate limits kept in memory (per process): a sliding window estimated from two fixed
//! windows, with bounded memory and O(1) expiry. Used by the API (requests) and the mail
//! path (messages per alias and per user, replies per user, connections per client).
//! Limits that must hold across API instances (sign-in attempts) are counted in the
//! database instead ([`crate::auth`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

pub const MINUTE: Duration = Duration::from_secs(60);
pub const HOUR: Duration = Duration::from_secs(3600);

/// Keys tracked per window. Past it, new keys share one bucket: under a flood of distinct
/// clients the limiter gets stricter for newcomers rather than forgetting everyone's counts.
const CAPACITY: usize = 50_000;
const OVERFLOW: &str = "\u{0}overflow";

/// The key a client's limits count under: its IPv4 address, or the /64 of its IPv6 address
/// (one subscriber usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> String {
    match crate::envelope::unmap(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

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

    /// Counts one hit on `key`; `false` once more than `limit` fall within `period` (a
    /// minute or an hour) of each other.
    pub fn hit(&self, key: &str, limit: u32, period: Duration) -> bool {
        self.allow(key, limit, period, Instant::now())
    }

    /// [`Self::hit`] at a given instant (tests drive time with it).
    pub fn allow(&self, key: &str, limit: u32, period: Duration, now: Instant) -> bool {
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
    fn ipv6_clients_count_per_64() {
        assert_eq!(
            client_key("2001:db8:1:2:3:4:5:6".parse().expect("ip")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            client_key("::ffff:192.0.2.1".parse().expect("ip")),
            "192.0.2.1"
        );
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
}
