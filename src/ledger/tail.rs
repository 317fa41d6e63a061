//! The tail of the audit log that this process committed, held in memory
//! for the stock-change relay of the feed, so that it
//! publishes what the ledger has just written without reading it back.
//!
//! It is a copy of committed rows and nothing else. A batch's entries
//! enter it only once PostgreSQL has acknowledged the batch's commit, with
//! the `seq` numbers its write took and the values it bound, so an entry
//! here is the row in the log, byte for byte.
//!
//! What it does not hold, it says nothing of: the entries of other
//! instances, of batches committed before the relay opened it or while it
//! was full, of a batch whose commit went unanswered, and the numbers of
//! aborted writes (a sequence never takes a number back). Every `seq` it
//! holds is accounted for, applied or not; any other one is a hole, and
//! the relay reads holes from the log. So the tail may lose anything, a
//! crash all of it, and the feed loses nothing: the change record stays
//! derived from the ledger's committed state.

use super::change::LoggedChange;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The most numbers the tail holds. Past it, batches are left out (the
/// relay reads them from the log), so a relay that stalls, or falls
/// behind, costs this much memory and no more. Two of the relay's rounds.
const CAPACITY: usize = 10_000;

/// What a batch committed: every number its write took, in order, and its
/// applied entries (the changes), in `seq` order.
#[derive(Debug, Default)]
pub struct Logged {
    pub taken: Vec<i64>,
    pub changes: Vec<LoggedChange>,
}

/// The changes the tail held right after a position.
#[derive(Debug, Default)]
pub struct Run {
    /// In `seq` order.
    pub changes: Vec<LoggedChange>,
    /// Every number up to it and after the position was in the tail:
    /// these changes are all the changes there. Equal to the position
    /// when the next number is a hole.
    pub through: i64,
}

/// Shared by the ledger, which appends, and the relay, which takes.
#[derive(Clone, Default)]
pub struct LogTail(Arc<Inner>);

#[derive(Default)]
struct Inner {
    /// Set while a relay of this process publishes: only then is a tail
    /// worth building.
    open: AtomicBool,
    /// `None` for a number whose entry is not a change (a rejection).
    held: Mutex<BTreeMap<i64, Option<LoggedChange>>>,
}

impl LogTail {
    /// Whether the ledger should hand its batches over.
    pub fn is_open(&self) -> bool {
        self.0.open.load(Ordering::Relaxed)
    }

    /// Starts keeping batches, until the guard drops.
    pub fn open(&self) -> Opened {
        self.held().clear();
        self.0.open.store(true, Ordering::Relaxed);
        Opened(self.clone())
    }

    /// Adds a committed batch, unless the tail is closed or full.
    pub fn append(&self, logged: Logged) {
        if !self.is_open() || logged.taken.is_empty() {
            return;
        }
        let mut held = self.held();
        if held.len() + logged.taken.len() > CAPACITY {
            return;
        }
        for &seq in &logged.taken {
            held.insert(seq, None);
        }
        for change in logged.changes {
            held.insert(change.change.seq, Some(change));
        }
    }

    /// Forgets everything at or before `after`, and takes the changes of
    /// the unbroken run of numbers after it, up to `horizon` and at most
    /// `limit` changes.
    pub fn take(&self, after: i64, horizon: i64, limit: usize) -> Run {
        let mut held = self.held();
        let later = held.split_off(&(after + 1));
        *held = later;
        let mut run = Run {
            changes: Vec::new(),
            through: after,
        };
        while run.changes.len() < limit && run.through < horizon {
            let Some(entry) = held.first_entry() else {
                break;
            };
            if *entry.key() != run.through + 1 {
                break;
            }
            run.through += 1;
            if let Some(change) = entry.remove() {
                run.changes.push(change);
            }
        }
        run
    }

    /// The first number after `after` the tail holds: a hole after `after`
    /// ends right before it.
    pub fn next_held(&self, after: i64) -> Option<i64> {
        self.held().range(after + 1..).next().map(|(&seq, _)| seq)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, Option<LoggedChange>>> {
        // A panic while holding the lock leaves a map that is still whole.
        self.0.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Closes the tail, and drops what it holds, when the relay stops leading.
pub struct Opened(LogTail);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.0.open.store(false, Ordering::Relaxed);
        self.0.held().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventKind;
    use crate::ledger::change::Change;
    use chrono::Utc;
    use uuid::Uuid;

    fn change(seq: i64) -> LoggedChange {
        LoggedChange {
            change: Change {
                seq,
                warehouse_id: Uuid::nil(),
                product_id: Uuid::nil(),
                delta: 1,
                quantity: seq,
                movement_id: Uuid::nil(),
                event: EventKind::Arrival,
                message_id: format!("m{seq}"),
                changed_at: Utc::now(),
            },
            opens_pair: false,
        }
    }

    /// A batch that took `taken` and applied the entries of `applied`.
    fn batch(taken: &[i64], applied: &[i64]) -> Logged {
        Logged {
            taken: taken.to_vec(),
            changes: applied.iter().map(|&s| change(s)).collect(),
        }
    }

    fn seqs(run: &Run) -> Vec<i64> {
        run.changes.iter().map(|c| c.change.seq).collect()
    }

    #[test]
    fn a_closed_tail_keeps_nothing() {
        let tail = LogTail::default();
        tail.append(batch(&[1, 2], &[1, 2]));
        let run = tail.take(0, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![], 0));
        assert_eq!(tail.next_held(0), None);
    }

    #[test]
    fn a_run_stops_at_the_first_hole_and_the_hole_ends_at_the_next_held_number() {
        let tail = LogTail::default();
        let _open = tail.open();
        // 3 was taken by a write that aborted, or by another instance.
        tail.append(batch(&[4, 5], &[5]));
        tail.append(batch(&[1, 2], &[1, 2]));
        let run = tail.take(0, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![1, 2], 2));
        let run = tail.take(2, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![], 2));
        assert_eq!(tail.next_held(2), Some(4));
        // The relay read 3 from the log.
        let run = tail.take(3, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![5], 5));
    }

    #[test]
    fn a_run_covers_rejections_and_stops_at_the_horizon_and_the_limit() {
        let tail = LogTail::default();
        let _open = tail.open();
        tail.append(batch(&[1, 2, 3, 4, 5, 6], &[1, 3, 4, 5, 6]));
        let run = tail.take(0, 4, 100);
        assert_eq!((seqs(&run), run.through), (vec![1, 3, 4], 4));
        let run = tail.take(4, 10, 1);
        assert_eq!((seqs(&run), run.through), (vec![5], 5));
        let run = tail.take(5, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![6], 6));
    }

    #[test]
    fn what_is_at_or_before_the_position_is_forgotten() {
        let tail = LogTail::default();
        let _open = tail.open();
        tail.append(batch(&[1, 2, 3], &[1, 2, 3]));
        // The relay read up to 2 from the log meanwhile.
        let run = tail.take(2, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![3], 3));
        assert_eq!(tail.next_held(0), None);
    }

    #[test]
    fn a_full_tail_leaves_whole_batches_out() {
        let tail = LogTail::default();
        let _open = tail.open();
        let all: Vec<i64> = (1..=CAPACITY as i64).collect();
        tail.append(batch(&all[..CAPACITY - 1], &[]));
        let last = CAPACITY as i64;
        tail.append(batch(&[last, last + 1], &[last, last + 1]));
        let run = tail.take(0, i64::MAX, usize::MAX);
        assert_eq!(run.through, last - 1);
        assert!(run.changes.is_empty());
        assert_eq!(tail.next_held(last - 1), None);
    }

    #[test]
    fn closing_the_tail_drops_what_it_held() {
        let tail = LogTail::default();
        let open = tail.open();
        tail.append(batch(&[1], &[1]));
        drop(open);
        assert!(!tail.is_open());
        let _open = tail.open();
        let run = tail.take(0, 10, 100);
        assert_eq!((seqs(&run), run.through), (vec![], 0));
    }
}
