//! When to try a row again, and how long to wait first.
//!
//! Transient failures (no connection, a timeout, 408, 429 and the 5xx a busy
//! server gives) are retried with exponential backoff and full jitter, up to
//! `--max-attempts` in all and `--max-delay` between two tries. A server's
//! `Retry-After` wins over the backoff when it asks for longer. Other
//! answers are final.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The waits between one row's attempts, jittered.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }

    /// The wait before the next attempt: the backoff's, or the server's
    /// word when it asks for longer (never beyond the maximum delay). A
    /// `Retry-After: 0`, or a date already past, does not cut the backoff
    /// short: a busy server would be asked again at once.
    pub fn wait(&self, server_said: Option<Duration>, backoff: Option<Duration>) -> Duration {
        match server_said {
            Some(wait) => wait
                .min(self.max_delay)
                .max(backoff.unwrap_or(self.first_delay)),
            None => backoff.unwrap_or(self.max_delay),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 8,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 7);
        assert!(
            delays.iter().all(|d| *d <= Duration::from_secs(2)),
            "{delays:?}"
        );
        assert!(delays[0] >= Duration::from_millis(100), "{delays:?}");
    }

    #[test]
    fn the_server_wait_wins_but_is_capped() {
        let policy = RetryPolicy::default();
        let backoff = Some(Duration::from_millis(300));
        assert_eq!(
            policy.wait(Some(Duration::from_secs(2)), backoff),
            Duration::from_secs(2)
        );
        assert_eq!(
            policy.wait(Some(Duration::from_secs(900)), backoff),
            policy.max_delay
        );
        assert_eq!(policy.wait(None, backoff), Duration::from_millis(300));
    }

    #[test]
    fn a_server_asking_for_no_wait_still_gets_the_backoff() {
        let policy = RetryPolicy::default();
        let backoff = Some(Duration::from_millis(300));
        assert_eq!(
            policy.wait(Some(Duration::ZERO), backoff),
            Duration::from_millis(300)
        );
        assert_eq!(policy.wait(Some(Duration::ZERO), None), policy.first_delay);
        assert_eq!(
            policy.wait(Some(Duration::from_secs(1)), None),
            Duration::from_secs(1)
        );
    }
}
