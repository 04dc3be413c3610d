//! The main job: read the export, log in, deliver every row's event, record
//! every outcome, summarise.
//!
//! Three stages run side by side: a reader thread streams rows into a bounded
//! queue, the worker pool delivers them, and a writer task records each
//! outcome as it arrives. A first SIGINT or SIGTERM stops the reader and lets
//! the rows in flight finish; a second one stops at once. Either way the
//! results hold exactly the outcomes that were known.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::export::{Export, Row, Verdict};
use crate::jlp::{Client, Event};
use crate::lock;
use crate::login::Session;
use crate::outcome::{Outcome, Status};
use crate::pace::Pace;
use crate::pool::{self, Halt, Job, Pool};
use crate::progress::{Counts, Progress};
use crate::results::{self, Prior, Priors, ResultsFile};
use crate::settings::{Concurrency, Connection, SubmitSettings};
use crate::summary::{Ending, Summary};
use crate::Failure;

/// Rows handed from the reader to the workers at a time: one hand-over a
/// batch, not one a row.
const JOB_BATCH: usize = 64;

/// Longest an outcome may wait in the OS's buffers before being synced.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// How long rows in flight may take to finish after a first stop signal.
const GRACE: Duration = Duration::from_secs(10);

/// What the validation pass found, before anything is sent.
#[derive(Debug, Default)]
struct Plan {
    records: u64,
    blank: u64,
    /// Rows that get an outcome in this run.
    pending: u64,
    /// Of those, rows to send.
    to_send: u64,
    /// Rows an earlier run finished.
    already_done: u64,
    /// Invalid rows an earlier run recorded (they count for the exit code).
    prior_invalid: u64,
}

pub async fn submit(settings: SubmitSettings, quiet: bool) -> Result<Summary, Failure> {
    let started = Instant::now();
    let export = Export::open(&settings.file, &settings.read).map_err(Failure::usage)?;
    describe(&export);
    let field_columns = field_columns(&export, &settings.fields)?;

    let _lock = lock::acquire(&settings.results).map_err(|e| match e {
        lock::LockError::Held { .. } => Failure::Locked(e.into()),
        lock::LockError::Io { .. } => Failure::usage(e),
    })?;
    let priors = prior_run(&settings, &export)?;
    let plan = plan(&export, priors.as_ref().map(|p| &p.0))?;

    // Log in before touching the results, so a refused login leaves
    // nothing behind to `--resume`.
    let Some(connection) = settings.connection.clone() else {
        let results = open_results(&settings, &export, priors.as_ref().map(|p| p.1))?;
        let priors = Arc::new(priors.map(|p| p.0).unwrap_or_default());
        return dry_run(&settings, export, plan, results, priors, started, quiet);
    };
    let (base_url, _sandbox) = crate::sandbox::reach(&connection.target).await?;
    let session = log_in(&connection, &base_url, &settings).await?;
    let results = open_results(&settings, &export, priors.as_ref().map(|p| p.1))?;
    let priors = Arc::new(priors.map(|p| p.0).unwrap_or_default());

    let run = Run {
        settings: &settings,
        export,
        plan,
        priors,
        field_columns,
        started,
        quiet,
    };
    run.deliver(session, results).await
}

async fn log_in(
    connection: &Connection,
    base_url: &str,
    settings: &SubmitSettings,
) -> Result<Arc<Session>, Failure> {
    let client = Client::new(base_url, &connection.client).map_err(Failure::Usage)?;
    let (session, _account) = Session::start(
        client,
        connection.username.clone(),
        connection.password.clone(),
        settings.refresh_path.clone(),
    )
    .await
    .map_err(Failure::login)?;
    Ok(session)
}

/// Logs what was detected about the file.
fn describe(export: &Export) {
    match &export.format {
        crate::export::Format::Text {
            encoding,
            encoding_reason,
            delimiter,
            ..
        } => info!(
            encoding = encoding.name(),
            why = encoding_reason,
            delimiter = %char::from(*delimiter).escape_default(),
            id_column = export.id_header(),
            "reading the export"
        ),
        crate::export::Format::Workbook { sheet } => {
            info!(sheet = %sheet, id_column = export.id_header(), "reading the workbook")
        }
    }
    if let crate::export::Format::Text { encoding, .. } = &export.format {
        if *encoding == encoding_rs::WINDOWS_1252 {
            warn!("the file is not valid UTF-8; reading it as Windows-1252 (use --encoding to choose another)");
        }
    }
}

/// `--field NAME=COLUMN` mappings as column positions.
fn field_columns(
    export: &Export,
    fields: &[(String, String)],
) -> Result<Vec<(String, usize)>, Failure> {
    fields
        .iter()
        .map(|(name, column)| {
            let wanted = crate::export::normalise_header(column);
            export
                .headers
                .iter()
                .position(|h| crate::export::normalise_header(h) == wanted)
                .map(|i| (name.clone(), i))
                .ok_or_else(|| {
                    Failure::usage(anyhow::anyhow!(
                        "`--field {name}={column}`: the export has no column `{column}`; its columns are {}",
                        export.headers.iter().map(|h| format!("`{h}`")).collect::<Vec<_>>().join(", ")
                    ))
                })
        })
        .collect()
}

/// What an earlier run recorded, when there is a results file.
fn prior_run(settings: &SubmitSettings, export: &Export) -> Result<Option<(Priors, u64)>, Failure> {
    if !settings.results.exists() {
        return Ok(None);
    }
    if !settings.resume {
        return Err(Failure::usage(anyhow::anyhow!(
            "the results file `{}` already exists; pass `--resume` to continue that run, \
             or `--results PATH` to write somewhere else",
            settings.results.display()
        )));
    }
    results::read_priors(&settings.results, &export.headers)
        .map(Some)
        .map_err(Failure::usage)
}

/// What is to be done. A first run takes it from the pass that opened the
/// export; a resumed run reads every row again, to set it against the
/// results of the earlier run.
fn plan(export: &Export, priors: Option<&Priors>) -> Result<Plan, Failure> {
    let Some(priors) = priors else {
        let census = export.census;
        return Ok(Plan {
            records: census.records,
            blank: census.blank,
            pending: census.records - census.blank,
            to_send: census.to_send,
            ..Plan::default()
        });
    };
    let mut plan = Plan::default();
    for row in export.rows().map_err(Failure::usage)? {
        let row = row.map_err(Failure::usage)?;
        plan.records += 1;
        if row.verdict == Verdict::Blank {
            plan.blank += 1;
            continue;
        }
        if let Some(prior) = priors.get(&row.number) {
            if prior.status == Status::Accepted && !same_row(prior, &row) {
                return Err(Failure::usage(anyhow::anyhow!(
                    "the results file was made from a different input: record {} (line {}) \
                     was accepted with other values; choose another `--results` path, or move \
                     the old file away",
                    row.number,
                    row.line
                )));
            }
            if settled(prior, &row) {
                plan.already_done += 1;
                plan.prior_invalid += u64::from(prior.status == Status::Invalid);
                continue;
            }
        }
        plan.pending += 1;
        plan.to_send += u64::from(matches!(row.verdict, Verdict::Send(_)));
    }
    if let Some(extra) = priors.keys().find(|row| **row > plan.records) {
        return Err(Failure::usage(anyhow::anyhow!(
            "the results file was made from a different input: it records row {extra}, \
             but the export has {} records",
            plan.records
        )));
    }
    Ok(plan)
}

fn open_results(
    settings: &SubmitSettings,
    export: &Export,
    good_end: Option<u64>,
) -> Result<ResultsFile, Failure> {
    match good_end {
        Some(end) => ResultsFile::append(&settings.results, end),
        None => ResultsFile::create(&settings.results, &export.headers),
    }
    .map_err(Failure::usage)
}

fn dry_run(
    settings: &SubmitSettings,
    export: Export,
    plan: Plan,
    mut results: ResultsFile,
    priors: Arc<Priors>,
    started: Instant,
    quiet: bool,
) -> Result<Summary, Failure> {
    let mut counts = Counts::default();
    for row in export.rows().map_err(Failure::usage)? {
        let mut row = row.map_err(Failure::usage)?;
        if done_before(&priors, &row) {
            continue;
        }
        if let Some(outcome) = unsent_outcome(&mut row) {
            counts.add(outcome.status);
            results
                .record(&outcome)
                .map_err(|e| Failure::Other(e.into()))?;
        }
    }
    results.finish(true).map_err(Failure::Other)?;
    let not_attempted = plan.pending - counts.total();
    let run = Run {
        settings,
        export,
        plan,
        priors,
        field_columns: Vec::new(),
        started,
        quiet,
    };
    Ok(run.summarise(Ending::DryRun, None, counts, not_attempted, 0))
}

fn done_before(priors: &Priors, row: &Row) -> bool {
    priors
        .get(&row.number)
        .is_some_and(|prior| settled(prior, row))
}

/// An earlier run's outcome stands: the row was accepted, or was found
/// invalid or a duplicate and has not been corrected since. Failed rows
/// and corrected rows are taken up again.
fn settled(prior: &Prior, row: &Row) -> bool {
    match prior.status {
        Status::Accepted => true,
        Status::Invalid | Status::Duplicate => same_row(prior, row),
        Status::Failed => false,
    }
}

fn same_row(prior: &Prior, row: &Row) -> bool {
    prior.fields_hash == results::fields_hash(&row.fields)
}

/// The outcome of a row that is not sent, if it is one; the row's fields
/// move into it.
fn unsent_outcome(row: &mut Row) -> Option<Outcome> {
    let (status, message) = match &row.verdict {
        Verdict::Invalid(reason) => (Status::Invalid, reason.clone()),
        Verdict::Duplicate { first } => (
            Status::Duplicate,
            format!("the same id as row {first}; not sent again"),
        ),
        Verdict::Send(_) | Verdict::Blank => return None,
    };
    let fields = std::mem::take(&mut row.fields);
    Some(Outcome::unsent(row.number, fields, status, message))
}

/// One run's state, from the first request to the summary.
struct Run<'a> {
    settings: &'a SubmitSettings,
    export: Export,
    plan: Plan,
    priors: Arc<Priors>,
    field_columns: Vec<(String, usize)>,
    started: Instant,
    quiet: bool,
}

impl Run<'_> {
    async fn deliver(
        self,
        session: Arc<Session>,
        results: ResultsFile,
    ) -> Result<Summary, Failure> {
        let (workers, adaptive) = match self.settings.concurrency {
            Concurrency::Fixed(n) => (n, None),
            Concurrency::Auto(n) => (n, Some(n)),
        };
        let stop = CancellationToken::new();
        let signals = Signals::watch(stop.clone());
        let pace = Arc::new(Pace::new(self.settings.max_rate, adaptive));
        let pool = Arc::new(Pool::new(
            session.clone(),
            self.settings.retry,
            pace,
            workers,
            stop.clone(),
        ));

        // Stage one: the writer.
        let (outcome_tx, outcome_rx) = mpsc::channel::<Outcome>(1024);
        let progress = Progress::new(self.plan.to_send, self.quiet);
        let writer = tokio::spawn(write_outcomes(results, outcome_rx, progress));

        // Stage two: the reader.
        let (job_tx, job_rx) = mpsc::channel::<Vec<Job>>(4);
        let reader = {
            let (export, priors, outcomes, stop) = (
                self.export.clone(),
                self.priors.clone(),
                outcome_tx.clone(),
                stop.clone(),
            );
            let fields = self.field_columns.clone();
            std::thread::spawn(move || feed(&export, &priors, &fields, &job_tx, &outcomes, &stop))
        };

        // Stage three: the workers, until done or told to stop.
        let lanes = pool::Lanes::new(workers, self.settings.threads);
        info!(
            workers,
            threads = lanes.lanes,
            rows = self.plan.to_send,
            "sending"
        );
        pool::run(pool.clone(), lanes, job_rx, outcome_tx, signals.now.clone()).await;

        // The reader may still be handing over an outcome: wait off this thread.
        let fed = tokio::task::spawn_blocking(move || reader.join())
            .await
            .expect("waiting for the reader failed")
            .expect("the reader thread panicked");
        let (results, counts, write_error) = writer.await.expect("the writer task panicked");
        let read_error = fed.err().map(|error| {
            warn!(%error, "reading the export failed midway");
            format!("reading the export failed midway: {error}")
        });

        let (ending, reason) = match (signals.received(), pool.halted()) {
            (Some(Ending::Interrupted), _) => (Ending::Interrupted, None),
            (Some(_), _) => (Ending::Terminated, None),
            (None, Some(Halt::Login(e))) if e.is_transient() => {
                (Ending::ApiDown, Some(e.to_string()))
            }
            (None, Some(Halt::Login(e))) => (Ending::LoginRefused, Some(e.to_string())),
            (None, Some(Halt::ApiDown(why))) => (Ending::ApiDown, Some(why)),
            (None, None) => (Ending::Finished, None),
        };
        let reason = match write_error {
            Some(e) => Some(format!("writing the results failed: {e}")),
            None => reason.or(read_error),
        };
        info!(
            ?ending,
            accepted = counts.accepted,
            failed = counts.failed,
            "sending over"
        );
        results
            .finish(ending == Ending::Finished)
            .map_err(Failure::Other)?;
        info!("results file complete");

        let not_attempted = self.plan.pending.saturating_sub(counts.total());
        // A run that ran its course yet left rows without an outcome must
        // not pass for a complete one.
        let reason = match reason {
            None if ending == Ending::Finished && not_attempted > 0 => Some(format!(
                "{not_attempted} rows were left without an outcome; run again with `--resume` \
                 to send them"
            )),
            reason => reason,
        };
        Ok(self.summarise(ending, reason, counts, not_attempted, session.logins()))
    }

    fn summarise(
        &self,
        ending: Ending,
        reason: Option<String>,
        counts: Counts,
        not_attempted: u64,
        logins: u64,
    ) -> Summary {
        // A finished run with nothing failed or invalid, now or before,
        // has no rows to list: skip reading the results again.
        let none_failed = ending == Ending::Finished
            && counts.failed + counts.invalid + self.plan.prior_invalid == 0;
        let failed_rows = if none_failed {
            let _ = std::fs::remove_file(crate::settings::failed_rows_path(&self.settings.results));
            None
        } else {
            write_failed_rows(&self.settings.results, &self.export.headers)
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let sent = counts.accepted + counts.failed;
        let exit_code = match ending {
            Ending::Interrupted => 130,
            Ending::Terminated => 143,
            Ending::LoginRefused => 3,
            Ending::ApiDown => 4,
            _ if reason.is_some() => 4,
            _ if counts.failed + counts.invalid + self.plan.prior_invalid > 0 => 1,
            _ => 0,
        };
        Summary {
            file: self.settings.file.clone(),
            results: self.settings.results.clone(),
            failed_rows,
            ending,
            reason,
            this_run: counts,
            already_done: self.plan.already_done,
            blank: self.plan.blank,
            not_attempted,
            prior_invalid: self.plan.prior_invalid,
            records: self.plan.records,
            seconds,
            rate_per_second: if seconds > 0.0 {
                sent as f64 / seconds
            } else {
                0.0
            },
            logins,
            exit_code,
            again: crate::summary::resume_command(std::env::args_os(), |name| {
                std::env::var_os(name)
            }),
        }
    }
}

/// The failed-rows file, when any row failed or was invalid.
fn write_failed_rows(results: &Path, headers: &[String]) -> Option<std::path::PathBuf> {
    let path = crate::settings::failed_rows_path(results);
    match results::write_failed_rows(results, &path, headers) {
        Ok(0) => {
            let _ = std::fs::remove_file(&path);
            None
        }
        Ok(_) => Some(path),
        Err(error) => {
            warn!(%error, "could not write the failed-rows file");
            None
        }
    }
}

/// The reader stage: every row that needs an outcome goes to the queue or,
/// when it is not to be sent, straight to the writer.
fn feed(
    export: &Export,
    priors: &Priors,
    field_columns: &[(String, usize)],
    jobs: &mpsc::Sender<Vec<Job>>,
    outcomes: &mpsc::Sender<Outcome>,
    stop: &CancellationToken,
) -> Result<(), crate::export::InputError> {
    let mut batch = Vec::with_capacity(JOB_BATCH);
    for row in export.rows()? {
        let mut row = row?;
        if stop.is_cancelled() {
            return Ok(());
        }
        if done_before(priors, &row) {
            continue;
        }
        if let Some(outcome) = unsent_outcome(&mut row) {
            if outcomes.blocking_send(outcome).is_err() {
                return Ok(());
            }
        } else if let Verdict::Send(id) = std::mem::replace(&mut row.verdict, Verdict::Blank) {
            batch.push(job(field_columns, row, id, &export.path));
        }
        if batch.len() == JOB_BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(JOB_BATCH));
            if jobs.blocking_send(full).is_err() {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = jobs.blocking_send(batch);
    }
    Ok(())
}

fn job(field_columns: &[(String, usize)], row: Row, id: String, file: &Path) -> Job {
    let fields = field_columns
        .iter()
        .map(|(name, column)| (name.clone(), row.fields[*column].clone()))
        .collect();
    Job {
        row: row.number,
        event: Event {
            idempotency_key: idempotency_key(file, row.number, &id),
            id,
            fields,
        },
        fields: row.fields,
    }
}

/// The same on every attempt and every rerun for a row of a file (by its
/// name, so rows added to the file later keep their keys), and different
/// for any other file name, row or id.
// Known limit: an export saved every day under the same name repeats its
// keys for a supporter who comes back on the same row; a server that keeps
// keys for longer than a day could drop that day's event. Dated file names
// avoid it, and the README says so.
pub fn idempotency_key(file: &Path, row: u64, id: &str) -> String {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(row.to_le_bytes());
    hasher.update(id.as_bytes());
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = hasher.finalize();
    hash[..16]
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

/// The writer stage: records each outcome as it arrives, handing every
/// batch at hand to the OS at once and syncing to disk at least once a
/// second (on a blocking thread, so sending goes on meanwhile).
async fn write_outcomes(
    mut results: ResultsFile,
    mut outcomes: mpsc::Receiver<Outcome>,
    mut progress: Progress,
) -> (ResultsFile, Counts, Option<std::io::Error>) {
    let mut counts = Counts::default();
    let mut synced = Instant::now();
    let mut unsynced = false;
    let written = loop {
        match tokio::time::timeout(SYNC_EVERY, outcomes.recv()).await {
            Ok(Some(first)) => {
                let batch = record_batch(
                    &mut results,
                    first,
                    &mut outcomes,
                    &mut counts,
                    &mut progress,
                );
                if let Err(e) = batch {
                    break Err(e);
                }
                unsynced = true;
            }
            Ok(None) => break Ok(()),
            Err(_idle) => {}
        }
        if unsynced && synced.elapsed() >= SYNC_EVERY {
            if let Err(e) = sync_in_background(&results) {
                break Err(e);
            }
            (synced, unsynced) = (Instant::now(), false);
        }
    };
    progress.finish();
    (results, counts, written.err())
}

fn sync_in_background(results: &ResultsFile) -> std::io::Result<()> {
    let file = results.sync_handle()?;
    tokio::task::spawn_blocking(move || {
        if let Err(error) = file.sync_data() {
            warn!(%error, "syncing the results file failed");
        }
    });
    Ok(())
}

/// Writes `first` and every outcome already waiting, then flushes.
fn record_batch(
    results: &mut ResultsFile,
    first: Outcome,
    outcomes: &mut mpsc::Receiver<Outcome>,
    counts: &mut Counts,
    progress: &mut Progress,
) -> std::io::Result<()> {
    let mut next = Some(first);
    while let Some(outcome) = next {
        counts.add(outcome.status);
        if matches!(outcome.status, Status::Accepted | Status::Failed) {
            progress.advance(counts);
        }
        results.record(&outcome)?;
        next = outcomes.try_recv().ok();
    }
    results.flush()
}

/// SIGINT and SIGTERM: the first stops the run gently, letting the rows in
/// flight finish for up to [`GRACE`]; a second stops it at once.
struct Signals {
    first: Arc<std::sync::Mutex<Option<Ending>>>,
    /// Stop the workers now, rows in hand or not.
    now: CancellationToken,
}

impl Signals {
    fn watch(stop: CancellationToken) -> Signals {
        let first = Arc::new(std::sync::Mutex::new(None));
        let now = CancellationToken::new();
        let (record, hard) = (first.clone(), now.clone());
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let ending = tokio::select! {
                _ = int.recv() => Ending::Interrupted,
                _ = term.recv() => Ending::Terminated,
            };
            match ending {
                Ending::Interrupted => warn!(
                    "stopping: finishing the rows in flight (press Ctrl-C again to stop at once)"
                ),
                _ => warn!(
                    "stopping on SIGTERM: finishing the rows in flight (a second SIGTERM stops at once)"
                ),
            }
            *record.lock().expect("signal lock poisoned") = Some(ending);
            stop.cancel();
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
                () = tokio::time::sleep(GRACE) => {},
            }
            hard.cancel();
        });
        Signals { first, now }
    }

    fn received(&self) -> Option<Ending> {
        *self.first.lock().expect("signal lock poisoned")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_stable_and_distinct() {
        let file = Path::new("/mail/returns-2026-12-03.csv");
        let key = idempotency_key(file, 3, "AB12");
        assert_eq!(
            key,
            idempotency_key(Path::new("elsewhere/returns-2026-12-03.csv"), 3, "AB12")
        );
        assert_eq!(key.len(), 32);
        assert_ne!(key, idempotency_key(file, 4, "AB12"));
        assert_ne!(key, idempotency_key(file, 3, "AB13"));
        assert_ne!(
            key,
            idempotency_key(Path::new("returns-2026-12-04.csv"), 3, "AB12")
        );
    }
}
