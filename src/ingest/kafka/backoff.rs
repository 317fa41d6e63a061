//! The one retry pause of the consumer: exponential, and cut short when the
//! service stops.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from 100 ms to 5 s.
pub(super) struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(100))
    }
}

impl Backoff {
    /// Sleeps for the next delay; true if `stop` was cancelled meanwhile
    /// (or before).
    pub(super) async fn wait_or_stop(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(delay) => stop.is_cancelled(),
            _ = stop.cancelled() => true,
        }
    }
}
