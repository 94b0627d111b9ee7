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
    entries: Mutex<HashMap<K, Entry<V>>>,
}

struct Entry<V> {
    value: Arc<V>,
    at: Instant,
    epoch: u64,
}

impl<K: Eq + Hash, V> Default for Cache<K, V> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V> Cache<K, V> {
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(key)?;
        (entry.epoch == EPOCH.load(Ordering::Acquire) && entry.at.elapsed() < TTL)
            .then(|| Arc::clone(&entry.value))
    }

    pub fn insert(&self, key: K, value: Arc<V>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            key,
            Entry {
                value,
                at: Instant::now(),
                epoch: EPOCH.load(Ordering::Acquire),
            },
        );
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
}
