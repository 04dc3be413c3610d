//! What the user typed: flags, with the environment variables clap reads.
//! Nothing here is validated beyond its type; [`crate::settings`] turns it
//! into the settings the rest of the code sees.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::jlp::BodyKind;

/// Record Return to Sender events on the Jumbo Lottery Platform from a
/// mailroom's returned-mail export.
#[derive(Debug, Parser)]
#[command(name = "jlp-rts", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Record an RTS event for every row of an export, and write a results file.
    Submit(Box<SubmitArgs>),
    /// Read and check an export without sending anything.
    Check(CheckArgs),
    /// Check the credentials and the account's capability.
    Login(LoginArgs),
    /// Serve a simulated JLP on loopback, for trials and tests.
    Sandbox(SandboxArgs),
}

#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
    /// Print errors only (and the summary when something went wrong).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// More detail in the log: -v for the run's milestones, -vv for decisions.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Write the log to this file instead of the terminal.
    #[arg(long, global = true, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Settings file (TOML); see the README for its keys.
    #[arg(long, global = true, env = "JLP_RTS_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How to reach the JLP and who to log in as.
#[derive(Debug, Clone, Args)]
pub struct ConnectionArgs {
    /// The JLP API host, e.g. `https://api.example-lottery.org`.
    #[arg(long, env = "JLP_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,

    /// The admin account's user name.
    #[arg(long, env = "JLP_USERNAME")]
    pub username: Option<String>,

    /// Read the password from this file (first line). Otherwise it comes from
    /// `JLP_PASSWORD`, or a prompt on a terminal; never from a flag.
    #[arg(long, env = "JLP_PASSWORD_FILE", value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// Allow a plain-HTTP base URL that is not loopback.
    #[arg(long)]
    pub allow_insecure_http: bool,

    /// Trust this PEM certificate authority as well as the system's.
    #[arg(long, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Seconds to wait for a connection.
    #[arg(long, value_name = "SECONDS")]
    pub connect_timeout: Option<f64>,

    /// Seconds to wait for a whole request.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,

    /// Run against a simulated JLP started inside this process on loopback,
    /// with demo credentials.
    #[arg(long)]
    pub sandbox: bool,
}

/// How to read the export.
#[derive(Debug, Clone, Args)]
pub struct InputArgs {
    /// The returned-mail export: CSV or text, `.xlsx` or `.ods`.
    pub file: PathBuf,

    /// The column holding the supporter id: a header name or a 1-based
    /// position. Found automatically when left out.
    #[arg(long, value_name = "NAME|N")]
    pub id_column: Option<String>,

    /// The file has no header row.
    #[arg(long)]
    pub no_header: bool,

    /// Force the text encoding (utf-8, utf-16le, utf-16be, windows-1252, ...).
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,

    /// Force the delimiter: a character, or `comma`, `semicolon`, `tab`, `pipe`.
    #[arg(long, value_name = "CHAR")]
    pub delimiter: Option<String>,

    /// The workbook sheet to read (default: the first).
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    /// Where to write the results (default: beside the input, `NAME.results.csv`).
    #[arg(long, value_name = "PATH")]
    pub results: Option<PathBuf>,

    /// Continue from the results file: rows already accepted are not sent again.
    #[arg(long)]
    pub resume: bool,

    /// Read and validate everything and write the results it would start
    /// from, without any network traffic.
    #[arg(long)]
    pub dry_run: bool,

    /// Requests in flight at once: a number, or `auto` to find the pace the
    /// server takes.
    #[arg(long, value_name = "N|auto", allow_negative_numbers = true)]
    pub concurrency: Option<String>,

    /// At most this many calls a second, whatever the concurrency.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub max_rate: Option<f64>,

    /// Threads sending requests [default: one per 16 requests in flight,
    /// at most one per core and 4 in all].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub threads: Option<usize>,

    /// Attempts per row, the first included.
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,

    /// Longest wait between two attempts, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub max_delay: Option<f64>,

    /// Path of the installation's token refresh call, tried before logging in
    /// again when the token expires.
    #[arg(long, value_name = "PATH")]
    pub refresh_path: Option<String>,

    /// Send a column as a form field: `FIELD=COLUMN`. Repeatable.
    #[arg(long = "field", value_name = "FIELD=COLUMN")]
    pub fields: Vec<String>,

    /// How the event's body is encoded.
    #[arg(long, value_enum)]
    pub body: Option<BodyKind>,

    /// Also write the run's summary as JSON to this file.
    #[arg(long, value_name = "PATH")]
    pub summary_json: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub input: InputArgs,
}

#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,

    /// User name the simulated JLP accepts.
    #[arg(long, default_value = "demo")]
    pub user: String,

    /// Password it accepts (a trial value, not a secret).
    #[arg(long, default_value = "demo")]
    pub pass: String,

    /// Log in without the RTS capability.
    #[arg(long)]
    pub no_capability: bool,

    /// A customer id the simulated JLP does not know (404). Repeatable.
    #[arg(long = "unknown", value_name = "ID")]
    pub unknown: Vec<String>,

    /// Added latency per RTS call, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Share of RTS calls answered 503 (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,

    /// Share of RTS calls whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.0)]
    pub drop_rate: f64,

    /// RTS calls allowed a second; 429 with `Retry-After` beyond.
    #[arg(long)]
    pub rate_limit: Option<u32>,

    /// Seconds an access token stays valid.
    #[arg(long)]
    pub token_ttl: Option<f64>,
}
