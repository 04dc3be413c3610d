//! `--concurrency auto`: finding the pace a server can take.
//!
//! Two quantities adapt as answers come back:
//!
//! - **The window**, how many requests may be in flight. It starts at 8 and
//!   doubles every round trip while answers come back in good time (slow
//!   start), then grows by about one request per round trip. It grows only
//!   while at least half of it is in use, so an idle window does not swell.
//!   When latency (smoothed over about twenty answers) climbs past twice its
//!   baseline, it shrinks by 5%, but latency alone never takes it below 8.
//!   The baseline is the lowest smoothed latency, taken once twenty answers
//!   have been smoothed, so that a few answers far quicker than the rest (an
//!   unknown id refused at once) do not make every ordinary answer look
//!   slow; it drifts up toward a pace that lasts (two thirds of the way in
//!   ten seconds), so that a server which has become slower for good is
//!   taken as it now is. When the server answers 429, 503 or 504 or a
//!   request times out, the window shrinks by a quarter and slow start
//!   ends. Each cut waits a round trip before the next, so one burst of
//!   refusals counts once.
//! - **The rate**, calls a second, only once the server has refused us for
//!   going too fast (429): it is set to 90% of what was accepted over the
//!   last second, then grows by 5% a second while answers are good. A server
//!   that allows N calls a second is thus approached from below and touched
//!   briefly every few seconds, so the run settles near N with few refusals.
//!
//! The window never exceeds the number of workers, and `--max-rate` caps
//! the rate whatever it learns.

use std::time::Duration;

use tokio::time::Instant;

/// How an answer bears on the pace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// A real answer, in good time.
    Answered,
    /// 429: calls a second too high.
    TooFast,
    /// 503, 504, a timeout: the server is struggling.
    Overloaded,
    /// Anything else (a dropped connection, a 500): says nothing about pace.
    Neutral,
}

const FIRST_WINDOW: f64 = 8.0;

/// Answers smoothed before the smoothed latency may serve as a baseline.
const WARM_UP: u32 = 20;

/// How long a lasting change in the server's pace takes to become most of
/// the new baseline (two thirds of the way): slower than our own queue can
/// build up, so that queueing still shows, but soon enough that a server
/// which has simply become slower is taken as it now is.
const BASELINE_DRIFT: Duration = Duration::from_secs(10);

// Known limit: the baseline is learned with 8 requests already in flight.
// A server that queues requests instead of refusing them answers those 8
// more slowly than it works, so the window can grow to several times what
// it serves at once: the same throughput, with longer waits at the server.
// Refusals (503) from a bounded queue still cut the window.
#[derive(Debug)]
pub struct Adaptive {
    window: f64,
    max_window: f64,
    slow_start: bool,
    /// Latency smoothed over the last twenty or so answers, so that one
    /// slow answer does not shrink the window.
    smoothed: Option<Duration>,
    answers: u32,
    /// The lowest smoothed latency once warmed up, drifting up toward a
    /// lasting slower pace: the server's pace with no queue of ours in
    /// front of it.
    baseline: Option<Duration>,
    last_answer: Option<Instant>,
    last_cut: Option<Instant>,
    /// Learned calls a second, once a 429 has been seen.
    rate: Option<f64>,
    rate_grown_at: Instant,
    /// Accepted answers in the current and the previous second.
    second_started: Instant,
    this_second: u32,
    last_second: u32,
}

impl Adaptive {
    pub fn new(max_window: usize) -> Adaptive {
        let now = Instant::now();
        Adaptive {
            window: FIRST_WINDOW.min(max_window as f64),
            max_window: max_window as f64,
            slow_start: true,
            smoothed: None,
            answers: 0,
            baseline: None,
            last_answer: None,
            last_cut: None,
            rate: None,
            rate_grown_at: now,
            second_started: now,
            this_second: 0,
            last_second: 0,
        }
    }

    /// Requests allowed in flight now.
    pub fn window(&self) -> usize {
        self.window.floor().max(1.0) as usize
    }

    /// Calls a second learned from 429s, if any.
    pub fn rate(&self) -> Option<f64> {
        self.rate
    }

    /// Takes one answer into account. `in_flight` counts the requests that
    /// were out, this one included, when it was sent.
    pub fn observe(&mut self, signal: Signal, latency: Duration, in_flight: usize) {
        let now = Instant::now();
        self.count_second(now, signal);
        match signal {
            Signal::Answered => self.answered(now, latency, in_flight),
            Signal::TooFast => {
                self.learn_rate();
                self.cut(now, 0.75);
            }
            Signal::Overloaded => self.cut(now, 0.75),
            Signal::Neutral => {}
        }
    }

    fn answered(&mut self, now: Instant, latency: Duration, in_flight: usize) {
        if self.slowed_down(now, latency) {
            // Latency alone is no proof of overload: it never takes the
            // window below where it started; refusals and timeouts may.
            let floor = FIRST_WINDOW.min(self.max_window);
            if self.window > floor {
                self.slow_start = false;
                self.cut(now, 0.95);
                self.window = self.window.max(floor);
            }
            return;
        }

        // Grow only a window in real use: at least half full when this
        // request went out (answers come back in bursts, so "full when it
        // came back" would hold for one answer a round trip).
        if in_flight * 2 >= self.window() {
            let step = if self.slow_start {
                1.0
            } else {
                1.0 / self.window
            };
            self.window = (self.window + step).min(self.max_window);
            tracing::trace!(window = self.window, "pace: window grown");
        }
        self.grow_rate(now);
    }

    /// Smooths in one answer's latency; true when the smoothed latency has
    /// climbed past twice its baseline.
    fn slowed_down(&mut self, now: Instant, latency: Duration) -> bool {
        let smoothed = self
            .smoothed
            .map_or(latency, |s| s.mul_f64(0.95) + latency.mul_f64(0.05));
        self.smoothed = Some(smoothed);
        let since_last = now.duration_since(self.last_answer.replace(now).unwrap_or(now));
        self.answers = self.answers.saturating_add(1);
        if self.answers < WARM_UP {
            return false;
        }

        let baseline = match self.baseline {
            Some(baseline) if baseline < smoothed => {
                let drift = (since_last.as_secs_f64() / BASELINE_DRIFT.as_secs_f64()).min(1.0);
                baseline + (smoothed - baseline).mul_f64(drift)
            }
            _ => smoothed,
        };
        self.baseline = Some(baseline);
        smoothed > baseline * 2 + Duration::from_millis(5)
    }

    /// Shrinks the window, once per round trip at most.
    fn cut(&mut self, now: Instant, factor: f64) {
        let round_trip = self
            .baseline
            .or(self.smoothed)
            .unwrap_or(Duration::from_millis(100))
            .max(Duration::from_millis(20));
        if self
            .last_cut
            .is_some_and(|at| now.duration_since(at) < round_trip)
        {
            return;
        }
        self.last_cut = Some(now);
        self.slow_start = false;
        self.window = (self.window * factor).max(1.0);
        tracing::debug!(window = self.window, factor, "pace: window cut");
    }

    fn learn_rate(&mut self) {
        let accepted = f64::from(self.last_second.max(self.this_second)).max(1.0);
        let learned = accepted * 0.9;
        self.rate = Some(self.rate.map_or(learned, |r| r.min(learned.max(r * 0.9))));
        self.rate_grown_at = Instant::now();
    }

    /// 5% a second while answers are good.
    fn grow_rate(&mut self, now: Instant) {
        let Some(rate) = self.rate else { return };
        let elapsed = now.duration_since(self.rate_grown_at).as_secs_f64();
        if elapsed >= 0.1 {
            self.rate = Some(rate * (1.0 + 0.05 * elapsed));
            self.rate_grown_at = now;
        }
    }

    fn count_second(&mut self, now: Instant, signal: Signal) {
        if now.duration_since(self.second_started) >= Duration::from_secs(1) {
            self.last_second = self.this_second;
            self.this_second = 0;
            self.second_started = now;
        }
        if signal == Signal::Answered {
            self.this_second += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    #[tokio::test(start_paused = true)]
    async fn slow_start_fills_the_workers_within_a_few_round_trips() {
        let mut pace = Adaptive::new(64);
        for _ in 0..4 {
            // A full window: every request went out with the window full.
            let window = pace.window();
            for _ in 0..window {
                pace.observe(Signal::Answered, RTT, window);
            }
            tokio::time::advance(RTT).await;
        }
        assert_eq!(pace.window(), 64);
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_that_is_not_full_does_not_grow() {
        let mut pace = Adaptive::new(64);
        for _ in 0..100 {
            pace.observe(Signal::Answered, RTT, 0);
        }
        assert_eq!(pace.window(), 8);
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_cut_the_window_once_per_round_trip() {
        let mut pace = Adaptive::new(64);
        pace.window = 40.0;
        pace.slow_start = false;
        pace.observe(Signal::Answered, RTT, 40);
        for _ in 0..10 {
            pace.observe(Signal::Overloaded, RTT, 30);
        }
        assert_eq!(pace.window(), 30);
        tokio::time::advance(RTT).await;
        pace.observe(Signal::Overloaded, RTT, 30);
        assert_eq!(pace.window(), 22);
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_sets_the_rate_below_what_was_accepted_then_it_grows() {
        let mut pace = Adaptive::new(64);
        for _ in 0..300 {
            pace.observe(Signal::Answered, RTT, 0);
        }
        pace.observe(Signal::TooFast, RTT, 0);
        assert_eq!(pace.rate(), Some(270.0));
        tokio::time::advance(Duration::from_secs(1)).await;
        pace.observe(Signal::Answered, RTT, 0);
        let grown = pace.rate().unwrap();
        assert!(grown > 280.0 && grown < 285.0, "{grown}");
    }

    #[tokio::test(start_paused = true)]
    async fn slower_answers_shrink_the_window() {
        let mut pace = Adaptive::new(64);
        pace.window = 20.0;
        pace.slow_start = false;
        for _ in 0..WARM_UP {
            pace.observe(Signal::Answered, RTT, 0);
        }
        pace.observe(Signal::Answered, RTT * 4, 0);
        assert_eq!(pace.window(), 20, "one slow answer is not a trend");
        for _ in 0..30 {
            pace.observe(Signal::Answered, RTT * 4, 0);
        }
        assert_eq!(pace.window(), 19);
    }

    #[tokio::test(start_paused = true)]
    async fn latency_alone_never_takes_the_window_below_where_it_started() {
        let mut pace = Adaptive::new(64);
        pace.window = 20.0;
        pace.slow_start = false;
        for _ in 0..WARM_UP {
            pace.observe(Signal::Answered, RTT, 0);
        }
        let mut lowest = pace.window();
        for _ in 0..3000 {
            pace.observe(Signal::Answered, RTT * 10, 0);
            lowest = lowest.min(pace.window());
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(lowest, 8);
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_stays_slower_becomes_the_new_baseline() {
        // 5 ms answers for a while, then 20 ms for good: the window is cut
        // while the change is new, then grows again at the new pace.
        let mut pace = Adaptive::new(64);
        pace.window = 20.0;
        pace.slow_start = false;
        for _ in 0..300 {
            pace.observe(Signal::Answered, Duration::from_millis(5), 0);
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        let mut lowest = pace.window();
        for _ in 0..3000 {
            let window = pace.window();
            pace.observe(Signal::Answered, Duration::from_millis(20), window);
            lowest = lowest.min(pace.window());
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert!(lowest < 20, "the change was never noticed");
        assert!(pace.window() > 20, "window {}", pace.window());
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_quick_answers_among_slower_ones_do_not_shrink_the_window() {
        // One answer in ten comes back at once (an id the server refuses
        // without work); the rest take the server's usual 20 ms.
        let mut pace = Adaptive::new(64);
        pace.window = 20.0;
        pace.slow_start = false;
        for i in 0..500 {
            let latency = if i % 10 == 0 {
                Duration::from_micros(200)
            } else {
                Duration::from_millis(20)
            };
            pace.observe(Signal::Answered, latency, 0);
            tokio::time::advance(Duration::from_millis(2)).await;
        }
        assert_eq!(pace.window(), 20);
    }
}
