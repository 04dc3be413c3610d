//! How fast the pool may send: one pause for everyone when the server asks
//! us to slow down, an optional ceiling of calls a second, and with
//! `--concurrency auto` the window and rate that [`Adaptive`] learns.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::adaptive::{Adaptive, Signal};

/// Shared by every worker; each waits on it before sending.
#[derive(Debug)]
pub struct Pace {
    paused_until: Mutex<Option<Instant>>,
    /// `--max-rate`, as the time between two calls.
    ceiling: Option<Duration>,
    next_slot: Mutex<Instant>,
    adaptive: Option<Mutex<Learning>>,
    window_freed: Notify,
}

#[derive(Debug)]
struct Learning {
    adaptive: Adaptive,
    in_flight: usize,
}

/// One request's place in the pace; hand it back with [`Pace::finished`].
#[derive(Debug)]
pub struct Ticket {
    sent: Instant,
    /// Requests in flight, this one included, when it was let through.
    in_flight: usize,
}

impl Pace {
    /// At most `max_rate` calls a second when set; `adaptive` names the
    /// most requests in flight the learning may allow.
    pub fn new(max_rate: Option<f64>, adaptive: Option<usize>) -> Pace {
        let learning = adaptive.map(|max| {
            Mutex::new(Learning {
                adaptive: Adaptive::new(max),
                in_flight: 0,
            })
        });
        Pace {
            paused_until: Mutex::new(None),
            ceiling: max_rate
                .filter(|r| *r > 0.0)
                .map(|r| Duration::from_secs_f64(1.0 / r)),
            next_slot: Mutex::new(Instant::now()),
            adaptive: learning,
            window_freed: Notify::new(),
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
    pub async fn ready(&self) -> Ticket {
        let in_flight = self.wait_for_window().await;
        self.wait_out_pause().await;
        if let Some(interval) = self.interval() {
            let slot = {
                let mut next = self.next_slot.lock().expect("pace lock poisoned");
                let slot = (*next).max(Instant::now());
                *next = slot + interval;
                slot
            };
            tokio::time::sleep_until(slot).await;
        }
        Ticket {
            sent: Instant::now(),
            in_flight,
        }
    }

    /// The answer to a request sent with `ticket`, for the learning.
    pub fn finished(&self, ticket: Ticket, signal: Signal) {
        let Some(learning) = &self.adaptive else {
            return;
        };
        let mut learning = learning.lock().expect("pace lock poisoned");
        learning.in_flight = learning.in_flight.saturating_sub(1);
        learning
            .adaptive
            .observe(signal, ticket.sent.elapsed(), ticket.in_flight);
        let room = learning
            .adaptive
            .window()
            .saturating_sub(learning.in_flight);
        drop(learning);
        // Wake as many waiting workers as there are free places, not all.
        for _ in 0..room {
            self.window_freed.notify_one();
        }
    }

    /// Takes a place in the learned window; returns how many requests are
    /// then in flight.
    async fn wait_for_window(&self) -> usize {
        let Some(learning) = &self.adaptive else {
            return 0;
        };
        loop {
            let freed = self.window_freed.notified();
            {
                let mut learning = learning.lock().expect("pace lock poisoned");
                if learning.in_flight < learning.adaptive.window() {
                    learning.in_flight += 1;
                    return learning.in_flight;
                }
            }
            freed.await;
        }
    }

    async fn wait_out_pause(&self) {
        loop {
            let paused = *self.paused_until.lock().expect("pace lock poisoned");
            match paused {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
    }

    /// Time between two calls: the slower of `--max-rate` and the learned
    /// rate.
    fn interval(&self) -> Option<Duration> {
        let learned = self.adaptive.as_ref().and_then(|learning| {
            let rate = learning
                .lock()
                .expect("pace lock poisoned")
                .adaptive
                .rate()?;
            Some(Duration::from_secs_f64(1.0 / rate.max(1.0)))
        });
        match (self.ceiling, learned) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back() {
        let pace = Pace::new(None, None);
        pace.pause(Duration::from_secs(2));
        pace.pause(Duration::from_secs(1));
        let start = Instant::now();
        pace.ready().await;
        assert_eq!(start.elapsed().as_secs(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ceiling_spaces_calls_evenly() {
        let pace = Pace::new(Some(10.0), None);
        let start = Instant::now();
        for _ in 0..11 {
            pace.ready().await;
        }
        assert_eq!(start.elapsed().as_millis(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn the_learned_window_limits_requests_in_flight() {
        let pace = std::sync::Arc::new(Pace::new(None, Some(64)));
        let mut tickets = Vec::new();
        for _ in 0..8 {
            tickets.push(pace.ready().await);
        }
        let waiting = tokio::spawn({
            let pace = pace.clone();
            async move { pace.ready().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(
            !waiting.is_finished(),
            "a ninth request must wait for the window"
        );
        pace.finished(tickets.pop().unwrap(), Signal::Answered);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}
