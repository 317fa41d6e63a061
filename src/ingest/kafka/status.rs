//! The consumer's health, for `/health/ready`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The consumer's health, for `/health/ready`: whether it is connected,
/// and since when each batch that keeps failing has failed.
#[derive(Clone, Default)]
pub struct KafkaStatus {
    state: Arc<AtomicU8>,
    failing: Arc<Failing>,
    /// How long a batch may keep failing before the consumer is `stuck`.
    stuck_after: Duration,
}

/// The batches failing now, by a number of their own, with when each
/// first failed: one per partition worker at most.
#[derive(Default)]
struct Failing {
    next: AtomicU64,
    since: Mutex<HashMap<u64, Instant>>,
}

/// A batch's failing streak, from its first failure until it commits or
/// is given up (dropped).
pub(super) struct Streak {
    status: KafkaStatus,
    id: u64,
}

impl Drop for Streak {
    fn drop(&mut self) {
        let mut since = self
            .status
            .failing
            .since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        since.remove(&self.id);
    }
}

const DISABLED: u8 = 0;
const DOWN: u8 = 1;
const OK: u8 = 2;

impl KafkaStatus {
    /// A status for a service with a consumer: down until it connects.
    /// `stuck_after`: `KAFKA_STUCK_AFTER_SECONDS`.
    pub fn enabled(stuck_after: Duration) -> Self {
        KafkaStatus {
            state: Arc::new(AtomicU8::new(DOWN)),
            failing: Arc::default(),
            stuck_after,
        }
    }

    pub fn set_ok(&self, ok: bool) {
        self.state
            .store(if ok { OK } else { DOWN }, Ordering::Release);
    }

    /// Starts a failing streak for a batch that just failed.
    pub(super) fn failing(&self) -> Streak {
        let id = self.failing.next.fetch_add(1, Ordering::Relaxed);
        let mut since = self.failing.since.lock().unwrap_or_else(|e| e.into_inner());
        since.insert(id, Instant::now());
        Streak {
            status: self.clone(),
            id,
        }
    }

    /// How long the batch failing longest has been failing.
    pub fn failing_for(&self) -> Duration {
        let since = self.failing.since.lock().unwrap_or_else(|e| e.into_inner());
        since
            .values()
            .map(Instant::elapsed)
            .max()
            .unwrap_or_default()
    }

    /// `stuck` once a batch has failed for `KAFKA_STUCK_AFTER_SECONDS`,
    /// else the connection's state.
    pub fn as_str(&self) -> &'static str {
        match self.state.load(Ordering::Acquire) {
            DISABLED => "disabled",
            _ if self.failing_for() >= self.stuck_after => "stuck",
            OK => "ok",
            _ => "down",
        }
    }
}
