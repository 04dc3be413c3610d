//! A fixed set of workers delivering events under one login, on one thread
//! or a few (see [`run`]).
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
use crate::jlp::{Answer, Client, Event, LoginError};
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

/// Runs `workers` workers, spread over `lanes` threads, until the queue is
/// empty or the pool is stopped; `now` stops them at once, leaving the rows
/// in hand unrecorded.
///
/// Each lane is a single-threaded runtime with a client of its own, so a
/// row's request, its connection and its answer stay on one thread; the
/// lanes share only the queue (a batch at a time), the login, the pace and
/// the results writer. The first lane is the caller's.
pub async fn run(
    pool: Arc<Pool>,
    lanes: Lanes,
    queue: mpsc::Receiver<Vec<Job>>,
    outcomes: mpsc::Sender<Outcome>,
    now: CancellationToken,
) {
    let queue = Arc::new(Queue::new(queue));
    let mut shares = lanes.shares().into_iter();
    let first = shares.next().unwrap_or(0);
    let others: Vec<_> = shares
        .map(|workers| {
            let lane = Lane {
                pool: pool.clone(),
                client: Arc::new(pool.session.client().sibling()),
                queue: queue.clone(),
                outcomes: outcomes.clone(),
            };
            let now = now.clone();
            std::thread::Builder::new()
                .name("jlp-rts-lane".into())
                .spawn(move || lane.run_on_own_runtime(workers, &now))
        })
        .collect();

    let lane = Lane {
        client: Arc::new(pool.session.client().sibling()),
        pool,
        queue,
        outcomes,
    };
    lane.run(first, &now).await;
    for thread in others {
        match thread {
            Ok(thread) => {
                let joined = tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .expect("waiting for a worker thread failed");
                if let Err(panic) = joined {
                    std::panic::resume_unwind(panic);
                }
            }
            Err(error) => warn!(%error, "could not start a worker thread"),
        }
    }
}

/// How many workers, on how many threads.
#[derive(Debug, Clone, Copy)]
pub struct Lanes {
    pub workers: usize,
    pub lanes: usize,
}

impl Lanes {
    /// `threads` lanes when given; otherwise a thread per 16 workers, no
    /// more than the machine's cores: below that, one thread keeps up with
    /// the network.
    pub fn new(workers: usize, threads: Option<usize>) -> Lanes {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let lanes = threads.unwrap_or((workers / 16).clamp(1, cores.min(4)));
        Lanes {
            workers,
            lanes: lanes.clamp(1, workers.max(1)),
        }
    }

    /// Workers per lane, as even as can be.
    fn shares(self) -> Vec<usize> {
        (0..self.lanes)
            .map(|i| self.workers / self.lanes + usize::from(i < self.workers % self.lanes))
            .collect()
    }
}

/// What one lane's workers share.
struct Lane {
    pool: Arc<Pool>,
    client: Arc<Client>,
    queue: Arc<Queue>,
    outcomes: mpsc::Sender<Outcome>,
}

impl Lane {
    fn run_on_own_runtime(self, workers: usize, now: &CancellationToken) {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(self.run(workers, now)),
            Err(error) => warn!(%error, "could not start a worker thread's runtime"),
        }
    }

    async fn run(self, workers: usize, now: &CancellationToken) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers {
            let (pool, client, queue, outcomes) = (
                self.pool.clone(),
                self.client.clone(),
                self.queue.clone(),
                self.outcomes.clone(),
            );
            set.spawn(async move { work(&pool, &client, &queue, &outcomes).await });
        }
        drop(self.outcomes);

        tokio::select! {
            () = async { while set.join_next().await.is_some() {} } => return,
            () = now.cancelled() => {}
        }
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

/// Rows arrive in batches; every worker, whatever its lane, takes them one
/// at a time, so no lane sits idle while another holds rows. One worker at
/// a time fetches the next batch; the others wait to be told it is there.
struct Queue {
    batches: tokio::sync::Mutex<mpsc::Receiver<Vec<Job>>>,
    batch: Mutex<std::vec::IntoIter<Job>>,
    refilled: tokio::sync::Notify,
    drained: std::sync::atomic::AtomicBool,
}

impl Queue {
    fn new(batches: mpsc::Receiver<Vec<Job>>) -> Queue {
        Queue {
            batches: tokio::sync::Mutex::new(batches),
            batch: Mutex::new(Vec::new().into_iter()),
            refilled: tokio::sync::Notify::new(),
            drained: std::sync::atomic::AtomicBool::new(false),
        }
    }

    async fn next(&self) -> Option<Job> {
        loop {
            let refilled = self.refilled.notified();
            if let Some(job) = self.take() {
                return Some(job);
            }
            if self.drained.load(Ordering::Acquire) {
                return None;
            }
            let Ok(mut batches) = self.batches.try_lock() else {
                refilled.await;
                continue;
            };
            // Another thread may have fetched a batch between the look
            // above and taking the lock: only an empty batch is replaced.
            if let Some(job) = self.take() {
                return Some(job);
            }
            match batches.recv().await {
                Some(batch) => *self.batch.lock().expect("queue lock poisoned") = batch.into_iter(),
                None => self.drained.store(true, Ordering::Release),
            }
            self.refilled.notify_waiters();
        }
    }

    fn take(&self) -> Option<Job> {
        self.batch.lock().expect("queue lock poisoned").next()
    }
}

async fn work(pool: &Pool, client: &Client, queue: &Queue, outcomes: &mpsc::Sender<Outcome>) {
    loop {
        // A job at hand is taken without waiting on the stop signal: that
        // wait is only set up when the queue makes this worker wait.
        if pool.stop.is_cancelled() {
            return;
        }
        let job = tokio::select! {
            biased;
            job = queue.next() => match job {
                Some(job) => job,
                None => return,
            },
            () = pool.stop.cancelled() => return,
        };
        let Some(outcome) = deliver(pool, client, job).await else {
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
async fn deliver(pool: &Pool, client: &Client, job: Job) -> Option<Outcome> {
    let mut backoff = pool.policy.delays();
    let mut tries = Tries::default();
    loop {
        // A stop while waiting for our turn (a 429 pause, the rate) leaves
        // the row for `--resume`.
        if pool.stop.is_cancelled() {
            return None;
        }
        let ticket = tokio::select! {
            biased;
            ticket = pool.pace.ready() => ticket,
            () = pool.stop.cancelled() => return None,
        };
        tries.requests += 1;
        let (token, generation) = pool.session.token();
        let answer = client.send_event(&token, &job.event).await;
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
                    pool.pace.pause(pool.policy.wait(Some(asked), None));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn job(row: u64) -> Job {
        Job {
            row,
            fields: Vec::new(),
            event: Event {
                id: row.to_string(),
                idempotency_key: String::new(),
                fields: Vec::new(),
            },
        }
    }

    /// Rows taken by 4 threads of 16 workers from a queue fed 64 at a time.
    fn rows_taken(batches: u64) -> Vec<u64> {
        let (feed, rows) = mpsc::channel(4);
        let queue = Arc::new(Queue::new(rows));
        let feeder = std::thread::spawn(move || {
            for batch in 0..batches {
                let jobs = (0..64).map(|i| job(batch * 64 + i)).collect();
                feed.blocking_send(jobs).unwrap();
            }
        });
        let lanes: Vec<_> = (0..4)
            .map(|_| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    runtime.block_on(async {
                        let mut set = tokio::task::JoinSet::new();
                        for _ in 0..16 {
                            let queue = queue.clone();
                            set.spawn(async move {
                                let mut taken = Vec::new();
                                while let Some(job) = queue.next().await {
                                    taken.push(job.row);
                                    tokio::task::yield_now().await;
                                }
                                taken
                            });
                        }
                        let mut taken = Vec::new();
                        while let Some(rows) = set.join_next().await {
                            taken.extend(rows.unwrap());
                        }
                        taken
                    })
                })
            })
            .collect();
        feeder.join().unwrap();
        let mut taken: Vec<u64> = lanes
            .into_iter()
            .flat_map(|lane| lane.join().unwrap())
            .collect();
        taken.sort_unstable();
        taken
    }

    #[test]
    fn every_row_is_taken_once_by_workers_on_several_threads() {
        for _ in 0..100 {
            assert_eq!(rows_taken(100), (0..6400).collect::<Vec<_>>());
        }
    }

    #[test]
    fn workers_are_spread_evenly_over_the_threads() {
        assert_eq!(Lanes::new(64, Some(2)).shares(), vec![32, 32]);
        assert_eq!(Lanes::new(5, Some(2)).shares(), vec![3, 2]);
        assert_eq!(Lanes::new(3, Some(8)).shares(), vec![1, 1, 1]);
        assert_eq!(Lanes::new(8, None).shares(), vec![8]);
    }
}
