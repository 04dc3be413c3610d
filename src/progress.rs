//! What a person watching the run sees while it works.
//!
//! On a terminal: a bar with rows done, accepted and failed so far, the rate
//! and the time left. Without one (cron, a pipe), or with `NO_COLOR` or
//! `--quiet`: no bar and no escape codes, only a plain line about every ten
//! seconds. Log lines go through [`LogWriter`], which lifts the bar out of
//! the way while they print.

use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::outcome::Status;

static BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Counts by status, kept by the results writer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub accepted: u64,
    pub failed: u64,
    pub invalid: u64,
    pub duplicate: u64,
}

impl Counts {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Accepted => self.accepted += 1,
            Status::Failed => self.failed += 1,
            Status::Invalid => self.invalid += 1,
            Status::Duplicate => self.duplicate += 1,
        }
    }

    pub fn total(&self) -> u64 {
        self.accepted + self.failed + self.invalid + self.duplicate
    }
}

/// Progress of one run, by bar or by plain lines.
pub struct Progress {
    bar: Option<ProgressBar>,
    plain: bool,
    total: u64,
    last_plain: Instant,
}

/// True when escape codes and a live bar are welcome on stderr.
pub fn interactive() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl Progress {
    /// The one place bars are made: hidden unless stderr is a terminal.
    pub fn new(total: u64, quiet: bool) -> Progress {
        if quiet || !interactive() {
            return Progress {
                bar: None,
                plain: !quiet,
                total,
                last_plain: Instant::now(),
            };
        }
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {pos}/{len} rows  {msg}  {per_sec}  {eta} left",
            )
            .expect("the bar template is valid")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        *BAR.lock().expect("bar lock poisoned") = Some(bar.clone());
        Progress {
            bar: Some(bar),
            plain: false,
            total,
            last_plain: Instant::now(),
        }
    }

    /// One more row sent (accepted or failed).
    pub fn advance(&mut self, counts: &Counts) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "{} accepted, {} failed",
                counts.accepted, counts.failed
            ));
            bar.inc(1);
        } else if self.plain && self.last_plain.elapsed() >= PLAIN_EVERY {
            self.last_plain = Instant::now();
            let done = counts.accepted + counts.failed;
            crate::complain(&format!(
                "progress: {done} of {} rows sent, {} accepted, {} failed",
                self.total, counts.accepted, counts.failed
            ));
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        *BAR.lock().expect("bar lock poisoned") = None;
    }
}

/// Stderr for log lines, drawn around a live bar.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = BAR.lock().expect("bar lock poisoned").clone();
        // A closed standard error loses the log line, nothing more.
        let _ = match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf)),
            None => io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
