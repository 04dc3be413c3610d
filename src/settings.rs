//! Settings the rest of the code can trust: flags over environment over the
//! settings file, URLs parsed, paths resolved, limits checked.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;

use crate::cli::{CheckArgs, ConnectionArgs, InputArgs, OutputArgs, SubmitArgs};
use crate::export::{delimiter_named, encoding_named, ReadOptions};
use crate::jlp::{BodyKind, ClientOptions};
use crate::retry::RetryPolicy;
use crate::secret::Secret;

/// The slowest `--max-rate`: one call every 1,000 seconds.
const MIN_RATE: f64 = 0.001;

/// The demo account the in-process simulated JLP accepts.
pub const SANDBOX_USER: &str = "demo";
pub const SANDBOX_PASSWORD: &str = "demo";

/// The settings file: what a crontab line should not have to repeat.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub base_url: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub concurrency: Option<toml::Value>,
    pub id_column: Option<String>,
    pub max_rate: Option<f64>,
    pub threads: Option<usize>,
    pub max_attempts: Option<u32>,
    pub max_delay: Option<f64>,
    pub refresh_path: Option<String>,
    pub body: Option<BodyKind>,
    pub ca_cert: Option<PathBuf>,
    pub connect_timeout: Option<f64>,
    pub timeout: Option<f64>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl<'de> Deserialize<'de> for BodyKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BodyKind, D::Error> {
        let name = String::deserialize(d)?;
        clap::ValueEnum::from_str(&name, true).map_err(serde::de::Error::custom)
    }
}

/// Reads the settings file named by `--config`, if any.
pub fn load_file(output: &OutputArgs) -> anyhow::Result<FileSettings> {
    let Some(path) = &output.config else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the settings file `{}`", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("the settings file `{}` is not valid", path.display()))
}

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A simulated JLP inside this process.
    Sandbox,
    Api {
        base_url: String,
    },
}

/// Everything needed to talk to the JLP.
#[derive(Debug, Clone)]
pub struct Connection {
    pub target: Target,
    pub username: String,
    pub password: Secret,
    pub client: ClientOptions,
}

/// How many requests are in flight at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    Fixed(usize),
    /// Found as the run goes, up to the given number of workers.
    Auto(usize),
}

/// Upper bound on workers, whatever is asked.
pub const MAX_CONCURRENCY: usize = 256;

#[derive(Debug, Clone)]
pub struct SubmitSettings {
    pub file: PathBuf,
    pub read: ReadOptions,
    pub results: PathBuf,
    pub resume: bool,
    pub dry_run: bool,
    pub concurrency: Concurrency,
    pub max_rate: Option<f64>,
    /// Threads sending requests; `None` leaves it to the concurrency.
    pub threads: Option<usize>,
    pub retry: RetryPolicy,
    pub refresh_path: Option<String>,
    /// Form field name and the header of the column it comes from.
    pub fields: Vec<(String, String)>,
    pub summary_json: Option<PathBuf>,
    /// `None` on a dry run: nothing is sent, so nothing is needed.
    pub connection: Option<Connection>,
}

pub fn submit(args: &SubmitArgs, file: &FileSettings) -> anyhow::Result<SubmitSettings> {
    let read = read_options(&args.input, file)?;
    let results = match &args.results {
        Some(path) => path.clone(),
        None if args.connection.sandbox => sandbox_results(&args.input.file),
        None => default_results(&args.input.file),
    };
    if let Some(path) = &args.summary_json {
        check_parent(path, "--summary-json")?;
    }
    let retry = retry_policy(args, file)?;
    let concurrency = concurrency(args.concurrency.clone(), file)?;
    let max_rate = args.max_rate.or(file.max_rate);
    if let Some(rate) = max_rate.filter(|r| !(MIN_RATE..=f64::MAX).contains(r)) {
        let name = named(args.max_rate.is_some(), "--max-rate", "max_rate");
        bail!(
            "{name} is {rate}; it must be a finite number of calls a second, at least \
             {MIN_RATE} (one call every 1,000 seconds)"
        );
    }
    let threads = args.threads.or(file.threads);
    if let Some(n) = threads.filter(|n| !(1..=64).contains(n)) {
        let name = named(args.threads.is_some(), "--threads", "threads");
        bail!("{name} is {n}; it must be a number from 1 to 64");
    }
    let fields = field_mappings(&args.fields, file)?;
    let connection = if args.dry_run {
        None
    } else {
        Some(connection(&args.connection, file, args.body)?)
    };

    Ok(SubmitSettings {
        file: args.input.file.clone(),
        read,
        results,
        resume: args.resume,
        dry_run: args.dry_run,
        concurrency,
        max_rate,
        threads,
        retry,
        refresh_path: args
            .refresh_path
            .clone()
            .or_else(|| file.refresh_path.clone()),
        fields,
        summary_json: args.summary_json.clone(),
        connection,
    })
}

pub fn check(args: &CheckArgs, file: &FileSettings) -> anyhow::Result<(PathBuf, ReadOptions)> {
    Ok((args.input.file.clone(), read_options(&args.input, file)?))
}

/// `returns.csv` → `returns.results.csv`, beside the input.
pub fn default_results(input: &Path) -> PathBuf {
    let stem = input.file_stem().unwrap_or_default().to_string_lossy();
    input.with_file_name(format!("{stem}.results.csv"))
}

/// A trial against the simulated JLP keeps its results apart, so that a
/// later real run can never take them for its own.
pub fn sandbox_results(input: &Path) -> PathBuf {
    let stem = input.file_stem().unwrap_or_default().to_string_lossy();
    input.with_file_name(format!("{stem}.sandbox.results.csv"))
}

/// The folder a file is to be written in must exist.
fn check_parent(path: &Path, flag: &str) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        bail!(
            "`{flag} {}`: the folder `{}` does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// `returns.results.csv` → `returns.failed.csv`.
pub fn failed_rows_path(results: &Path) -> PathBuf {
    let name = results.file_name().unwrap_or_default().to_string_lossy();
    let stem = name
        .strip_suffix(".results.csv")
        .or_else(|| name.strip_suffix(".csv"))
        .unwrap_or(&name);
    results.with_file_name(format!("{stem}.failed.csv"))
}

fn read_options(input: &InputArgs, file: &FileSettings) -> anyhow::Result<ReadOptions> {
    let encoding = match &input.encoding {
        Some(name) => Some(encoding_named(name).with_context(|| {
            format!("`--encoding {name}` is not an encoding this tool knows; try utf-8, utf-16le, utf-16be or windows-1252")
        })?),
        None => None,
    };
    let delimiter = match &input.delimiter {
        Some(name) => Some(delimiter_named(name).with_context(|| {
            format!("`--delimiter {name}` must be one character, or comma, semicolon, tab or pipe")
        })?),
        None => None,
    };
    Ok(ReadOptions {
        encoding,
        delimiter,
        id_column: input.id_column.clone().or_else(|| file.id_column.clone()),
        no_header: input.no_header,
        sheet: input.sheet.clone(),
    })
}

fn retry_policy(args: &SubmitArgs, file: &FileSettings) -> anyhow::Result<RetryPolicy> {
    let mut policy = RetryPolicy::default();
    if let Some(attempts) = args.max_attempts.or(file.max_attempts) {
        if !(1..=100).contains(&attempts) {
            bail!("`--max-attempts` must be between 1 and 100");
        }
        policy.max_attempts = attempts;
    }
    if let Some(delay) = args.max_delay.or(file.max_delay) {
        policy.max_delay = seconds("--max-delay", delay)?;
        policy.first_delay = policy.first_delay.min(policy.max_delay);
    }
    Ok(policy)
}

/// A setting as an error names it: the flag when one was given, otherwise
/// the settings file's key, so that the reader knows which to correct.
fn named(from_flag: bool, flag: &str, key: &str) -> String {
    if from_flag {
        format!("`{flag}`")
    } else {
        format!("`{key}` in the settings file")
    }
}

fn concurrency(flag: Option<String>, file: &FileSettings) -> anyhow::Result<Concurrency> {
    let name = named(flag.is_some(), "--concurrency", "concurrency");
    let given = match (flag, &file.concurrency) {
        (Some(flag), _) => flag,
        (None, Some(toml::Value::Integer(n))) => n.to_string(),
        (None, Some(toml::Value::String(s))) => s.clone(),
        (None, Some(_)) => bail!("`concurrency` in the settings file must be a number or \"auto\""),
        (None, None) => return Ok(Concurrency::Fixed(8)),
    };
    if given.eq_ignore_ascii_case("auto") {
        return Ok(Concurrency::Auto(64));
    }
    match given.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(Concurrency::Fixed(n)),
        _ => {
            bail!("{name} is `{given}`; it must be `auto` or a number from 1 to {MAX_CONCURRENCY}")
        }
    }
}

fn field_mappings(flags: &[String], file: &FileSettings) -> anyhow::Result<Vec<(String, String)>> {
    if flags.is_empty() {
        return Ok(file
            .fields
            .iter()
            .map(|(f, c)| (f.clone(), c.clone()))
            .collect());
    }
    flags
        .iter()
        .map(|mapping| match mapping.split_once('=') {
            Some((field, column)) if !field.trim().is_empty() && !column.trim().is_empty() => {
                Ok((field.trim().to_string(), column.trim().to_string()))
            }
            _ => bail!("`--field {mapping}` must look like `FIELD=COLUMN`, e.g. `--field reason=\"Return Reason\"`"),
        })
        .collect()
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if value > 0.0 && value <= 3600.0 {
        Ok(Duration::from_secs_f64(value))
    } else {
        bail!("`{flag}` must be a number of seconds above 0 and at most 3600")
    }
}

/// Resolves where to send and as whom; reads the password.
pub fn connection(
    args: &ConnectionArgs,
    file: &FileSettings,
    body: Option<BodyKind>,
) -> anyhow::Result<Connection> {
    let client = ClientOptions {
        connect_timeout: seconds(
            "--connect-timeout",
            args.connect_timeout
                .or(file.connect_timeout)
                .unwrap_or(10.0),
        )?,
        request_timeout: seconds("--timeout", args.timeout.or(file.timeout).unwrap_or(30.0))?,
        body: body.or(file.body).unwrap_or(BodyKind::Multipart),
        ca_cert: args.ca_cert.clone().or_else(|| file.ca_cert.clone()),
        use_proxy: !args.sandbox,
    };
    if args.sandbox {
        return Ok(Connection {
            target: Target::Sandbox,
            username: args.username.clone().unwrap_or_else(|| SANDBOX_USER.into()),
            password: std::env::var("JLP_PASSWORD")
                .map_or_else(|_| Secret::new(SANDBOX_PASSWORD), Secret::new),
            client,
        });
    }

    let base_url = args
        .base_url
        .clone()
        .or_else(|| file.base_url.clone())
        .context(
        "no JLP address: pass `--base-url https://api.your-lottery.org` (or set JLP_BASE_URL), \
         or try the tool with `--sandbox`",
    )?;
    let base_url = check_base_url(&base_url, args.allow_insecure_http)?;
    let mut client = client;
    client.use_proxy = !is_loopback_url(&base_url);
    let username = args
        .username
        .clone()
        .or_else(|| file.username.clone())
        .context("no user name: pass `--username NAME` or set JLP_USERNAME")?;
    let password_file = args
        .password_file
        .clone()
        .or_else(|| file.password_file.clone());
    let password = password(password_file.as_deref(), &username)?;
    Ok(Connection {
        target: Target::Api { base_url },
        username,
        password,
        client,
    })
}

/// The base URL, parsed: HTTPS unless loopback or explicitly allowed, and
/// nothing after the path.
pub fn check_base_url(given: &str, allow_insecure: bool) -> anyhow::Result<String> {
    let url = url::Url::parse(given.trim()).with_context(|| {
        format!(
            "`--base-url {given}` is not a URL; it should look like `https://api.your-lottery.org`"
        )
    })?;
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        bail!("`--base-url` must be just the API address, with no user, query or fragment");
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_url(url.as_str()) || allow_insecure => {}
        "http" => bail!(
            "`--base-url {given}` uses plain HTTP, which would send the password unencrypted; \
             use https://, or pass `--allow-insecure-http` if you really mean it"
        ),
        other => bail!("`--base-url` must start with https:// (not {other}://)"),
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn is_loopback_url(url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The password from `JLP_PASSWORD`, a password file, or a prompt; never
/// from a flag.
fn password(file: Option<&Path>, username: &str) -> anyhow::Result<Secret> {
    if let Ok(password) = std::env::var("JLP_PASSWORD") {
        return Ok(Secret::new(password));
    }
    if let Some(path) = file {
        return password_from_file(path);
    }
    if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
        let typed = rpassword::prompt_password(format!("JLP password for {username}: "))?;
        return Ok(Secret::new(typed));
    }
    bail!(
        "no password: set JLP_PASSWORD, or pass `--password-file PATH` (a file only you can read)"
    )
}

fn password_from_file(path: &Path) -> anyhow::Result<Secret> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read the password file `{}`", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the password file `{}` can be read by other users (mode {:o}); run `chmod 600 {}` first",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the password file `{}`", path.display()))?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        bail!("the password file `{}` is empty", path.display());
    }
    Ok(Secret::new(first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_must_be_https_unless_loopback() {
        assert_eq!(
            check_base_url("https://api.example.org/", false).unwrap(),
            "https://api.example.org"
        );
        assert_eq!(
            check_base_url("https://api.example.org/jlp/", false).unwrap(),
            "https://api.example.org/jlp"
        );
        assert!(check_base_url("http://127.0.0.1:9000", false).is_ok());
        assert!(check_base_url("http://localhost:9000", false).is_ok());
        assert!(check_base_url("http://api.example.org", false).is_err());
        assert!(check_base_url("http://api.example.org", true).is_ok());
        assert!(check_base_url("https://api.example.org/?x=1", false).is_err());
        assert!(check_base_url("ftp://api.example.org", false).is_err());
        assert!(check_base_url("api.example.org", false).is_err());
    }

    #[test]
    fn file_names_follow_the_input() {
        assert_eq!(
            default_results(Path::new("/m/returns.csv")),
            Path::new("/m/returns.results.csv")
        );
        assert_eq!(
            failed_rows_path(Path::new("/m/returns.results.csv")),
            Path::new("/m/returns.failed.csv")
        );
        assert_eq!(
            failed_rows_path(Path::new("/m/out.csv")),
            Path::new("/m/out.failed.csv")
        );
    }
}
