//! Caches for the lookups every message makes (an alias by address, a reverse alias, an
//! alias's contact).
//!
//! Only hits are cached, never "no such address": an alias created in another process must
//! receive mail at once. A change made in this process (API, CLI) invalidates every entry at
//! once through [`invalidate`]; a change made by another process is seen after [`TTL`].

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long an entry is trusted: the delay before a change made by another process is seen.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries per cache; past it the cache starts over (memory stays bounded).
const CAPACITY: usize = 50_000;

static EPOCH: AtomicU64 = AtomicU64::new(0);

/// Forgets every cached entry in this process. Called after any change to aliases,
/// mailboxes, contacts or settings.
pub fn invalidate() {
    EPOCH.fetch_add(1, Ordering::Release);
}

/// A small TTL map of positive answers.
pub struct Cache<K, V> {
    ttl: Duration,
    entries: Mutex<Entries<K, V>>,
}

struct Entries<K, V> {
    map: HashMap<K, Entry<V>>,
    inserts: usize,
}

struct Entry<V> {
    value: Arc<V>,
    at: Instant,
    epoch: u64,
}

/// Every this many inserts, entries past their TTL are dropped: the map holds about what a
/// TTL's worth of traffic looks up, not every address seen until it reaches [`CAPACITY`].
const SWEEP_EVERY: usize = 1024;

impl<K: Eq + Hash, V> Default for Cache<K, V> {
    fn default() -> Self {
        Self::with_ttl(TTL)
    }
}

impl<K: Eq + Hash, V> Cache<K, V> {
    fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(Entries {
                map: HashMap::new(),
                inserts: 0,
            }),
        }
    }

    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.map.get(key)?;
        (entry.epoch == EPOCH.load(Ordering::Acquire) && entry.at.elapsed() < self.ttl)
            .then(|| Arc::clone(&entry.value))
    }

    pub fn insert(&self, key: K, value: Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let epoch = EPOCH.load(Ordering::Acquire);
        entries.inserts = entries.inserts.wrapping_add(1);
        if entries.inserts.is_multiple_of(SWEEP_EVERY) {
            let ttl = self.ttl;
            entries
                .map
                .retain(|_, e| e.epoch == epoch && e.at.elapsed() < ttl);
        }
        if entries.map.len() >= CAPACITY {
            entries.map.clear();
        }
        entries.map.insert(
            key,
            Entry {
                value,
                at: Instant::now(),
                epoch,
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_until_invalidated() {
        let cache: Cache<String, u32> = Cache::default();
        cache.insert("a".into(), Arc::new(1));
        assert_eq!(cache.get(&"a".into()).as_deref(), Some(&1));
        assert_eq!(cache.get(&"b".into()), None);
        invalidate();
        assert_eq!(cache.get(&"a".into()), None);
    }

    #[test]
    fn expired_entries_are_swept_not_kept_until_capacity() {
        // A TTL of zero: every entry has expired by the time the next insert looks.
        let cache: Cache<usize, u32> = Cache::with_ttl(Duration::ZERO);
        for i in 0..SWEEP_EVERY - 1 {
            cache.insert(i, Arc::new(1));
        }
        assert_eq!(
            cache.len(),
            SWEEP_EVERY - 1,
            "no sweep before the count comes round"
        );
        cache.insert(SWEEP_EVERY, Arc::new(1));
        assert_eq!(cache.len(), 1, "the sweep dropped every expired entry");
    }
}
