//! Small in-memory memories that spare a NATS round trip per stage.
//!
//! - [`Archives`]: a worker keeps the archives it fetched last. An archive's id is the hash of
//!   its bytes and every fetched archive was checked against it, so a remembered one is
//!   exactly what the object store would return: the stages of a run that share a workspace
//!   (every read-only stage) fetch it once per worker.
//! - [`Recently`]: facts the server learnt a moment ago (an archive is stored, a worker
//!   advertises a need), taken as still true for a few seconds.
//!
//! Both are bounded: a memory never grows with the number of runs.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use labhit_protocol::ids::ArchiveId;

/// The archives a worker fetched last, up to a total size (oldest forgotten first).
#[derive(Debug)]
pub(crate) struct Archives {
    budget: usize,
    held: Mutex<VecDeque<(ArchiveId, Arc<Vec<u8>>)>>,
}

impl Archives {
    /// Holds up to `budget` bytes of archives.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            held: Mutex::new(VecDeque::new()),
        }
    }

    /// The bytes of archive `id`, if held (it becomes the newest).
    pub(crate) fn get(&self, id: ArchiveId) -> Option<Arc<Vec<u8>>> {
        let mut held = self.held.lock().ok()?;
        let at = held.iter().position(|(held_id, _)| *held_id == id)?;
        let entry = held.remove(at)?;
        let bytes = Arc::clone(&entry.1);
        held.push_back(entry);
        Some(bytes)
    }

    /// Remembers `bytes`, which the caller checked hash to `id`. An archive larger than the
    /// whole budget is not held.
    pub(crate) fn insert(&self, id: ArchiveId, bytes: Arc<Vec<u8>>) {
        if bytes.len() > self.budget {
            return;
        }
        let Ok(mut held) = self.held.lock() else {
            return;
        };
        held.retain(|(held_id, _)| *held_id != id);
        held.push_back((id, bytes));
        let mut total: usize = held.iter().map(|(_, b)| b.len()).sum();
        while total > self.budget {
            match held.pop_front() {
                Some((_, gone)) => total -= gone.len(),
                None => break,
            }
        }
    }
}

/// Keys seen a moment ago: [`Recently::contains`] is true for `fresh` after
/// [`Recently::saw`]. At most `capacity` keys are held (the oldest forgotten first).
#[derive(Debug, Clone)]
pub(crate) struct Recently<K> {
    fresh: Duration,
    capacity: usize,
    seen: Arc<Mutex<BTreeMap<K, Instant>>>,
}

impl<K: Ord + Clone> Recently<K> {
    pub(crate) fn new(fresh: Duration, capacity: usize) -> Self {
        Self {
            fresh,
            capacity,
            seen: Arc::default(),
        }
    }

    /// Whether `key` was seen less than `fresh` ago.
    pub(crate) fn contains(&self, key: &K) -> bool {
        self.seen
            .lock()
            .is_ok_and(|seen| seen.get(key).is_some_and(|at| at.elapsed() < self.fresh))
    }

    /// Notes that `key` was seen now.
    pub(crate) fn saw(&self, key: K) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        seen.retain(|_, at| at.elapsed() < self.fresh);
        if seen.len() >= self.capacity
            && let Some(oldest) = seen
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(key, _)| key.clone())
        {
            seen.remove(&oldest);
        }
        seen.insert(key, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ArchiveId {
        ArchiveId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    #[test]
    fn archives_forget_the_least_recently_used_beyond_the_budget() {
        let archives = Archives::new(10);
        archives.insert(id(1), Arc::new(vec![1; 4]));
        archives.insert(id(2), Arc::new(vec![2; 4]));
        // 1 becomes the newest; 3 pushes the total to 12: 2 goes.
        assert_eq!(archives.get(id(1)).as_deref(), Some(&vec![1; 4]));
        archives.insert(id(3), Arc::new(vec![3; 4]));
        assert!(archives.get(id(2)).is_none());
        assert!(archives.get(id(1)).is_some() && archives.get(id(3)).is_some());
        // Larger than the whole budget: not held, nothing evicted.
        archives.insert(id(4), Arc::new(vec![4; 11]));
        assert!(archives.get(id(4)).is_none());
        assert!(archives.get(id(1)).is_some() && archives.get(id(3)).is_some());
    }

    #[test]
    fn recently_holds_a_key_while_fresh_and_at_most_capacity_keys() {
        let recently = Recently::new(Duration::from_secs(60), 2);
        recently.saw(1);
        recently.saw(2);
        assert!(recently.contains(&1) && recently.contains(&2) && !recently.contains(&3));
        recently.saw(3);
        assert!(!recently.contains(&1) && recently.contains(&3));

        let stale = Recently::new(Duration::ZERO, 2);
        stale.saw(1);
        assert!(!stale.contains(&1));
    }
}
