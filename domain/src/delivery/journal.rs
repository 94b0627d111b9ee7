//! The sent journal: one line per delivery the next hop accepted, written the moment it says
//! so, before the status commit that follows.
//!
//! A status commit waits its turn in the group-commit writer, and a process killed in that
//! wait would send the message again after its restart. A `write` to this file survives the
//! kill (the kernel holds it; only a power cut would lose it, and then the database's status
//! is still the truth), so the restart reads it first and marks those deliveries delivered
//! instead of resending them. The window for a duplicate shrinks from a commit's latency to
//! the moment between reading the `250` and one `write`.
//!
//! The file rotates past [`ROTATE_BYTES`]: the old generation is removed once every status
//! commit for its lines has finished.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sea_orm::ConnectionTrait;

use crate::Result;

const ROTATE_BYTES: u64 = 4 * 1024 * 1024;

pub struct Journal {
    path: PathBuf,
    old_path: PathBuf,
    state: Mutex<State>,
}

struct State {
    file: Option<std::fs::File>,
    written: u64,
    /// Held by every line of the current generation until its status is committed.
    current: Arc<()>,
    /// The previous generation, while some of its statuses are still being committed.
    old: Option<Arc<()>>,
}

/// A line in the journal; drop it once the delivery's status is committed.
pub struct Entry(#[allow(dead_code)] Arc<()>);

impl Journal {
    /// The journal of `instance` in `dir`.
    pub fn new(dir: &Path, instance: &str) -> Self {
        let name: String = instance
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("sent-{name}.journal"));
        let old_path = path.with_extension("journal.old");
        Self {
            path,
            old_path,
            state: Mutex::new(State {
                file: None,
                written: 0,
                current: Arc::new(()),
                old: None,
            }),
        }
    }

    /// Records that delivery `id` was accepted by the next hop. A failure to write is logged
    /// and costs only the protection against a resend.
    pub fn record(&self, id: i64) -> Entry {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .old
            .as_ref()
            .is_some_and(|old| Arc::strong_count(old) == 1)
        {
            let _ = std::fs::remove_file(&self.old_path);
            state.old = None;
        }
        if state.written >= ROTATE_BYTES && state.old.is_none() {
            state.file = None;
            if std::fs::rename(&self.path, &self.old_path).is_ok() {
                let drained = std::mem::replace(&mut state.current, Arc::new(()));
                state.old = Some(drained);
            }
            state.written = 0;
        }
        if state.file.is_none() {
            state.file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| tracing::warn!(error = %e, path = %self.path.display(), "sent journal not opened"))
                .ok();
        }
        let line = format!("{id}\n");
        if let Some(file) = state.file.as_mut() {
            match file.write_all(line.as_bytes()) {
                Ok(()) => state.written += line.len() as u64,
                Err(e) => tracing::warn!(error = %e, "sent journal not written"),
            }
        }
        Entry(Arc::clone(&state.current))
    }

    /// At start, before the claims of the last run are released: marks delivered every
    /// delivery the last run recorded as accepted but had not yet committed, then empties the
    /// journal. Returns how many it marked.
    pub async fn replay(&self, db: &impl ConnectionTrait, instance: &str) -> Result<u64> {
        let mut ids: Vec<i64> = Vec::new();
        for path in [&self.old_path, &self.path] {
            if let Ok(text) = std::fs::read_to_string(path) {
                ids.extend(text.lines().filter_map(|l| l.trim().parse::<i64>().ok()));
            }
        }
        let mut marked = 0;
        for chunk in ids.chunks(500) {
            marked += super::queue::mark_delivered_many(db, chunk, Some(instance)).await?;
        }
        for path in [&self.old_path, &self.path] {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(crate::DomainError::Unavailable(format!(
                        "cannot clear the sent journal {}: {e}",
                        path.display()
                    )));
                }
            }
        }
        Ok(marked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_appended_and_a_drained_generation_is_removed() {
        let dir = tempfile::tempdir().expect("dir");
        let j = Journal::new(dir.path(), "abc");
        let held = j.record(7);
        drop(j.record(8));
        let text = std::fs::read_to_string(dir.path().join("sent-abc.journal")).expect("file");
        assert_eq!(text, "7\n8\n");
        // Force a rotation: the old generation stays while line 7 is uncommitted.
        j.state.lock().expect("lock").written = ROTATE_BYTES;
        drop(j.record(9));
        assert!(j.old_path.exists());
        drop(j.record(10));
        assert!(j.old_path.exists(), "line 7's status is not committed yet");
        drop(held);
        drop(j.record(11));
        assert!(!j.old_path.exists());
        let text = std::fs::read_to_string(&j.path).expect("file");
        assert_eq!(text, "9\n10\n11\n");
    }
}
