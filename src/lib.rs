//! `jlp-rts` records Return to Sender events on the Jumbo Lottery Platform
//! from a mailroom's returned-mail export.
//!
//! The stages, one module each: [`export`] reads the file, [`jlp`] and
//! [`login`] talk to the API, [`retry`] and [`pace`] decide when to send,
//! [`pool`] delivers, [`results`] records, [`progress`] and [`summary`] tell
//! the person running it. [`submit`] wires them into the main job.

pub mod adaptive;
pub mod check;
pub mod cli;
pub mod export;
pub mod jlp;
pub mod lock;
pub mod logging;
pub mod login;
pub mod outcome;
pub mod pace;
pub mod pool;
pub mod progress;
pub mod results;
pub mod retry;
pub mod sandbox;
pub mod secret;
pub mod settings;
pub mod submit;
pub mod summary;

use cli::{Cli, Command};

/// Why a run could not do its job; each maps to an exit code of the
/// contract.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Usage, configuration or input: nothing was sent (exit 2).
    #[error("{0:#}")]
    Usage(anyhow::Error),
    /// The login was refused or lacks the capability (exit 3).
    #[error("{0:#}")]
    Login(anyhow::Error),
    /// The API could not be reached or kept failing (exit 4).
    #[error("{0:#}")]
    Unreachable(anyhow::Error),
    /// Another run holds the results file (exit 75).
    #[error("{0:#}")]
    Locked(anyhow::Error),
    /// Anything else that stopped the run (exit 4).
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl Failure {
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure::Usage(error.into())
    }

    pub fn login(error: jlp::LoginError) -> Failure {
        if matches!(
            error,
            jlp::LoginError::Refused { .. } | jlp::LoginError::MissingCapability { .. }
        ) {
            Failure::Login(error.into())
        } else {
            Failure::Unreachable(error.into())
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Login(_) => 3,
            Failure::Unreachable(_) | Failure::Other(_) => 4,
            Failure::Locked(_) => 75,
        }
    }
}

/// Prints to standard output; a reader that went away (`| head`) is not
/// a reason to fail a run whose work is done.
pub fn say(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(text.as_bytes());
    let _ = std::io::stdout().flush();
}

/// Writes a line to standard error, which may have been closed.
pub fn complain(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Runs one command; returns the exit code of the contract.
pub fn run(cli: Cli) -> Result<u8, Failure> {
    let file = settings::load_file(&cli.output).map_err(Failure::Usage)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Other(e.into()))?;
    let quiet = cli.output.quiet;

    match cli.command {
        Command::Submit(args) => {
            let settings = settings::submit(&args, &file).map_err(Failure::Usage)?;
            let summary = runtime.block_on(submit::submit(settings, quiet))?;
            if let Some(path) = &args.summary_json {
                if let Err(error) = summary.write_json(path) {
                    tracing::error!("{error:#}");
                }
            }
            if !quiet || summary.exit_code != 0 {
                say(&summary.render());
            }
            Ok(summary.exit_code)
        }
        Command::Check(args) => {
            let (path, options) = settings::check(&args, &file).map_err(Failure::Usage)?;
            let (report, code) = check::check(&path, &options)?;
            say(&report);
            Ok(code)
        }
        Command::Login(args) => {
            let connection =
                settings::connection(&args.connection, &file, None).map_err(Failure::Usage)?;
            runtime.block_on(login::check(connection))
        }
        Command::Sandbox(args) => runtime.block_on(sandbox::serve_forever(args)),
    }
}
