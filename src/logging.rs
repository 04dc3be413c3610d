//! Diagnostics through `tracing`: off but for warnings by default, more with
//! `-v`, `RUST_LOG` when set, as text or JSON, to stderr or a file.
//! What people need to read (the bar, the summary) does not go through here.

use std::sync::Mutex;

use anyhow::Context;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, OutputArgs};
use crate::progress::{interactive, LogWriter};

pub fn init(output: &OutputArgs) -> anyhow::Result<()> {
    let level = match (output.quiet, output.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => {
            EnvFilter::try_new(spec).context("`RUST_LOG` is not a valid filter")?
        }
        _ => EnvFilter::new(format!("warn,jlp_rts={level}")),
    };

    let (writer, ansi) = match &output.log_file {
        Some(path) => {
            let file = crate::results::owner_only()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open the log file `{}`", path.display()))?;
            (BoxMakeWriter::new(Mutex::new(file)), false)
        }
        None => (BoxMakeWriter::new(|| LogWriter), interactive()),
    };

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi)
        .with_target(false)
        .log_internal_errors(false);
    match output.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}
