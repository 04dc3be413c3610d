//! How fast the pool may send: one pause for everyone when the server asks
//! us to slow down, and an optional ceiling of calls a second.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Shared by every worker; each waits on it before sending.
#[derive(Debug, Default)]
pub struct Pace {
    paused_until: Mutex<Option<Instant>>,
    ceiling: Option<Ceiling>,
}

#[derive(Debug)]
struct Ceiling {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl Pace {
    /// At most `max_rate` calls a second when set.
    pub fn new(max_rate: Option<f64>) -> Pace {
        let ceiling = max_rate.filter(|r| *r > 0.0).map(|rate| Ceiling {
            interval: Duration::from_secs_f64(1.0 / rate),
            next_slot: Mutex::new(Instant::now()),
        });
        Pace {
            paused_until: Mutex::new(None),
            ceiling,
        }
    }

    /// Holds every worker back for `wait`, as a 429 asks.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("pace lock poisoned");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    /// Returns when this worker may send its next request.
    pub async fn ready(&self) {
        loop {
            let paused = *self.paused_until.lock().expect("pace lock poisoned");
            match paused {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        if let Some(ceiling) = &self.ceiling {
            let slot = {
                let mut next = ceiling.next_slot.lock().expect("pace lock poisoned");
                let slot = (*next).max(Instant::now());
                *next = slot + ceiling.interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back() {
        let pace = Pace::new(None);
        pace.pause(Duration::from_secs(2));
        pace.pause(Duration::from_secs(1));
        let start = Instant::now();
        pace.ready().await;
        assert_eq!(start.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_spaces_calls_evenly() {
        let pace = Pace::new(Some(10.0));
        let start = Instant::now();
        for _ in 0..11 {
            pace.ready().await;
        }
        assert_eq!(start.elapsed().as_millis(), 1000);
    }
}
