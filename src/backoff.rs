//! The one retry pause of the service: exponential between two bounds, and
//! cut short when the service stops. The consumer, its workers, the relay
//! and the first connection to PostgreSQL all wait through it.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Exponential backoff from `first`, doubling up to `most`.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    most: Duration,
    next: Duration,
}

impl Default for Backoff {
    /// 100 ms to 5 s: a broker or database that comes back within a few
    /// seconds is used at once, one that does not is asked rarely.
    fn default() -> Self {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
    }
}

impl Backoff {
    pub fn new(first: Duration, most: Duration) -> Self {
        assert!(first <= most, "a backoff's first pause is its least");
        Backoff {
            first,
            most,
            next: first,
        }
    }

    /// The pause to take now; the one after it is twice as long.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.most);
        delay
    }

    /// Starts again from the first pause, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps for the next delay; true if `stop` was cancelled meanwhile
    /// (or before).
    pub async fn wait_or_stop(&mut self, stop: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            _ = tokio::time::sleep(delay) => stop.is_cancelled(),
            _ = stop.cancelled() => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_most_and_start_again_after_a_reset() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(350));
        let pauses: Vec<_> = (0..4).map(|_| backoff.next_delay()).collect();
        assert_eq!(pauses, [ms(100), ms(200), ms(350), ms(350)]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), ms(100));
    }
}
