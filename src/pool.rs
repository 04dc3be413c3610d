//! A fixed set of workers delivering events through one client and one
//! login.
//!
//! Workers take rows from a bounded queue, send each row's event (retrying
//! as [`RetryPolicy`] says), and hand every outcome to the results writer.
//! A stop signal makes them finish the row in hand and take no more; a
//! breaker stops the run when the API keeps failing whatever we do.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::adaptive::Signal;
use crate::jlp::{Answer, Event, LoginError};
use crate::login::Session;
use crate::outcome::{Outcome, Status};
use crate::pace::Pace;
use crate::retry::RetryPolicy;

/// 429 answers one row may get before it is given up.
const MAX_SLOW_DOWNS: u32 = 30;

/// One row to deliver.
#[derive(Debug)]
pub struct Job {
    pub row: u64,
    pub fields: Vec<String>,
    pub event: Event,
}

/// Why the pool stopped before the queue ran dry.
#[derive(Debug, Clone)]
pub enum Halt {
    /// Renewing the login was refused.
    Login(LoginError),
    /// Row after row failed however often it was tried.
    ApiDown(String),
}

/// What the workers share.
pub struct Pool {
    pub session: Arc<Session>,
    pub policy: RetryPolicy,
    pub pace: Arc<Pace>,
    /// Finish the row in hand, take no more.
    pub stop: CancellationToken,
    /// Rows in a row that ended in failure after every retry; reset by any
    /// real answer.
    failing: AtomicU32,
    failing_limit: u32,
    halt: Mutex<Option<Halt>>,
}

impl Pool {
    pub fn new(
        session: Arc<Session>,
        policy: RetryPolicy,
        pace: Arc<Pace>,
        workers: usize,
        stop: CancellationToken,
    ) -> Pool {
        Pool {
            session,
            policy,
            pace,
            stop,
            failing: AtomicU32::new(0),
            failing_limit: workers.max(3) as u32,
            halt: Mutex::new(None),
        }
    }

    /// Why the pool halted, if it did.
    pub fn halted(&self) -> Option<Halt> {
        self.halt.lock().expect("halt lock poisoned").clone()
    }

    /// The API gave a real answer: it is up, and the token works.
    fn answered(&self) {
        self.failing.store(0, Ordering::Relaxed);
        self.session.token_works();
    }

    fn halt(&self, why: Halt) {
        let mut halt = self.halt.lock().expect("halt lock poisoned");
        if halt.is_none() {
            warn!(reason = %why, "stopping the run");
            *halt = Some(why);
        }
        self.stop.cancel();
    }
}

impl std::fmt::Display for Halt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Halt::Login(error) => write!(f, "renewing the login failed: {error}"),
            Halt::ApiDown(why) => f.write_str(why),
        }
    }
}

/// Runs `workers` workers until the queue is empty or the pool is stopped.
pub async fn run(
    pool: Arc<Pool>,
    workers: usize,
    queue: mpsc::Receiver<Vec<Job>>,
    outcomes: mpsc::Sender<Outcome>,
) -> tokio::task::JoinSet<()> {
    let queue = Arc::new(tokio::sync::Mutex::new(Queue {
        batches: queue,
        batch: Vec::new().into_iter(),
    }));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (pool, queue, outcomes) = (pool.clone(), queue.clone(), outcomes.clone());
        set.spawn(async move { work(&pool, &queue, &outcomes).await });
    }
    set
}

/// Rows arrive in batches; workers take them one at a time.
struct Queue {
    batches: mpsc::Receiver<Vec<Job>>,
    batch: std::vec::IntoIter<Job>,
}

impl Queue {
    async fn next(&mut self) -> Option<Job> {
        loop {
            if let Some(job) = self.batch.next() {
                return Some(job);
            }
            self.batch = self.batches.recv().await?.into_iter();
        }
    }
}

async fn work(pool: &Pool, queue: &tokio::sync::Mutex<Queue>, outcomes: &mpsc::Sender<Outcome>) {
    loop {
        let job = tokio::select! {
            biased;
            () = pool.stop.cancelled() => return,
            job = async { queue.lock().await.next().await } => match job {
                Some(job) => job,
                None => return,
            },
        };
        let Some(outcome) = deliver(pool, job).await else {
            return;
        };
        if outcomes.send(outcome).await.is_err() {
            return;
        }
    }
}

/// Sends one row's event until it is accepted, refused for good, or out of
/// attempts. `None` when the run stopped before the row had an answer
/// worth recording: it stays unrecorded, for `--resume`.
async fn deliver(pool: &Pool, job: Job) -> Option<Outcome> {
    let mut backoff = pool.policy.delays();
    let mut tries = Tries::default();
    loop {
        // A stop while waiting for our turn (a 429 pause, the rate) leaves
        // the row for `--resume`.
        let ticket = tokio::select! {
            biased;
            () = pool.stop.cancelled() => return None,
            ticket = pool.pace.ready() => ticket,
        };
        tries.requests += 1;
        let (token, generation) = pool.session.token();
        let answer = pool.session.client().send_event(&token, &job.event).await;
        pool.pace.finished(ticket, signal(&answer));
        trace!(row = job.row, requests = tries.requests, ?answer, "answer");

        let retry_after = match &answer {
            Answer::Accepted { .. } | Answer::Rejected { .. } => {
                pool.answered();
                return Some(finished(job, &answer, tries.requests, ""));
            }
            Answer::Unauthorized { .. } => {
                if let Err(error) = pool.session.renew(generation).await {
                    pool.halt(Halt::Login(error));
                    return None;
                }
                tries.renewals += 1;
                if tries.renewals > pool.policy.max_attempts {
                    return Some(finished(job, &answer, tries.requests, ""));
                }
                continue;
            }
            Answer::Transient {
                status,
                retry_after,
                ..
            } => {
                if *status == Some(429) {
                    let asked = retry_after.unwrap_or(Duration::from_secs(1));
                    pool.pace.pause(asked.min(pool.policy.max_delay));
                    tries.slow_downs += 1;
                } else {
                    tries.failures += 1;
                }
                if tries.out_of_budget(&pool.policy) {
                    return Some(gave_up(pool, job, &answer, tries.requests));
                }
                debug!(
                    row = job.row,
                    requests = tries.requests,
                    ?status,
                    "will try again"
                );
                *retry_after
            }
        };

        let wait = pool.policy.wait(retry_after, backoff.next());
        tokio::select! {
            () = pool.stop.cancelled() => return None,
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// What an answer says about the pace the server can take.
fn signal(answer: &Answer) -> Signal {
    match answer {
        Answer::Accepted { .. } | Answer::Rejected { .. } | Answer::Unauthorized { .. } => {
            Signal::Answered
        }
        Answer::Transient {
            status: Some(429), ..
        } => Signal::TooFast,
        Answer::Transient {
            status: Some(503 | 504),
            ..
        } => Signal::Overloaded,
        Answer::Transient { message, .. } if message.starts_with("timed out") => Signal::Overloaded,
        Answer::Transient { .. } => Signal::Neutral,
    }
}

/// Requests made for one row, and the answers that count against its
/// budgets: failures against `--max-attempts`; a 429 or an expired token is
/// the server setting the pace, not a fault of the row, so each has a
/// budget of its own.
#[derive(Default)]
struct Tries {
    requests: u32,
    failures: u32,
    slow_downs: u32,
    renewals: u32,
}

impl Tries {
    fn out_of_budget(&self, policy: &RetryPolicy) -> bool {
        self.failures >= policy.max_attempts || self.slow_downs >= MAX_SLOW_DOWNS
    }
}

/// A row out of attempts; enough of them in a row trips the breaker.
fn gave_up(pool: &Pool, job: Job, answer: &Answer, requests: u32) -> Outcome {
    let failing = pool.failing.fetch_add(1, Ordering::Relaxed) + 1;
    let prefix = format!("gave up after {requests} attempts: ");
    let outcome = finished(job, answer, requests, &prefix);
    if failing >= pool.failing_limit {
        pool.halt(Halt::ApiDown(format!(
            "{failing} rows in a row failed after every retry; the last: {}",
            outcome.message
        )));
    }
    outcome
}

/// The answer's message, or its HTTP status when it gave none.
fn explained(answer: &Answer) -> String {
    match (answer, answer.message(), answer.http_status()) {
        (Answer::Accepted { .. }, _, _) => String::new(),
        (_, "", Some(status)) => format!("HTTP {status} with no message"),
        (_, message, _) => message.to_string(),
    }
}

/// The outcome an answer gives a row; `prefix` goes before its message.
fn finished(job: Job, answer: &Answer, requests: u32, prefix: &str) -> Outcome {
    let status = match answer {
        Answer::Accepted { .. } => Status::Accepted,
        _ => Status::Failed,
    };
    Outcome {
        row: job.row,
        fields: job.fields,
        status,
        http_status: answer.http_status(),
        error_code: answer.code().to_string(),
        message: format!("{prefix}{}", explained(answer)),
        attempts: requests,
        at: SystemTime::now(),
    }
}
