//! The plain account a run gives at the end, for people and for monitoring.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::progress::Counts;

/// How a run ended, for the summary and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    Finished,
    DryRun,
    Interrupted,
    Terminated,
    LoginRefused,
    ApiDown,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub file: PathBuf,
    pub results: PathBuf,
    pub failed_rows: Option<PathBuf>,
    pub ending: Ending,
    /// What stopped the run early, in a sentence.
    pub reason: Option<String>,
    /// Outcomes written in this run.
    pub this_run: Counts,
    /// Rows already finished by an earlier run, not touched again.
    pub already_done: u64,
    pub blank: u64,
    /// Rows with no outcome yet: `--resume` takes them up.
    pub not_attempted: u64,
    /// Rows an earlier run found invalid, still so.
    pub prior_invalid: u64,
    pub records: u64,
    pub seconds: f64,
    pub rate_per_second: f64,
    pub logins: u64,
    pub exit_code: u8,
    /// The command that takes the run up again, as [`resume_command`]
    /// makes it.
    #[serde(skip)]
    pub again: String,
}

impl Summary {
    /// The summary as a person reads it.
    pub fn render(&self) -> String {
        let c = &self.this_run;
        let mut out = String::new();
        let heading = match self.ending {
            Ending::Finished => "Finished",
            Ending::DryRun => "Dry run finished (nothing sent)",
            Ending::Interrupted => "Interrupted",
            Ending::Terminated => "Stopped by SIGTERM",
            Ending::LoginRefused => "Stopped: the login was refused",
            Ending::ApiDown => "Stopped early: the JLP kept failing",
        };
        out.push_str(&format!("{heading}: {}\n", self.file.display()));
        if let Some(reason) = &self.reason {
            out.push_str(&format!("  why:        {reason}\n"));
        }
        out.push_str(&format!("  accepted:   {}\n", c.accepted));
        out.push_str(&format!("  failed:     {}\n", c.failed));
        out.push_str(&format!("  invalid:    {}\n", c.invalid));
        out.push_str(&format!("  duplicate:  {}\n", c.duplicate));
        out.push_str(&format!("  blank rows: {} (skipped)\n", self.blank));
        if self.already_done > 0 {
            out.push_str(&format!(
                "  done before: {} (from the earlier run, not sent again)\n",
                self.already_done
            ));
        }
        if self.not_attempted > 0 {
            out.push_str(&format!(
                "  not finished: {} (`--resume` takes them up)\n",
                self.not_attempted
            ));
        }
        if self.prior_invalid > 0 {
            out.push_str(&format!(
                "  still invalid from before: {} (correct them in the input)\n",
                self.prior_invalid
            ));
        }
        out.push_str(&format!(
            "  time:       {:.1} s ({:.0} rows/s)\n",
            self.seconds, self.rate_per_second
        ));
        out.push_str(&format!("  results:    {}\n", self.results.display()));
        if let Some(failed) = &self.failed_rows {
            out.push_str(&format!("  to fix:     {}\n", failed.display()));
        }
        if let Some(next) = self.next_step() {
            out.push_str(&format!("Next: {next}\n"));
        }
        out
    }

    fn next_step(&self) -> Option<String> {
        let again = &self.again;
        match self.ending {
            Ending::DryRun if self.not_attempted > 0 => Some(format!("send the rows with `{again}`")),
            Ending::Interrupted | Ending::Terminated | Ending::ApiDown if self.not_attempted > 0 || self.this_run.failed > 0 => {
                Some(format!("run `{again}` to send the rest; nothing accepted is sent twice"))
            }
            Ending::LoginRefused => Some(format!("check the user name and password, then run `{again}`")),
            _ if self.this_run.failed > 0 => Some(format!(
                "see rts_message in the results for why rows failed; `{again}` retries the failed rows"
            )),
            _ if self.this_run.invalid > 0 => Some(
                "correct the invalid rows (listed in the to-fix file) and submit that file".into(),
            ),
            _ => None,
        }
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write the summary to `{}`", path.display()))
    }
}

/// The command a run was started with, made to resume it: every option
/// that chose the file, the results, the server or what is sent stays,
/// `--dry-run` goes and `--resume` is added before any `--`. A settings
/// file or base URL that came from the environment is written out as its
/// flag, so that the command does the same from another shell. No option
/// carries a secret, so all of it can be shown.
pub fn resume_command(
    command: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<OsString>,
) -> String {
    let mut command = command.into_iter();
    let program = command.next().unwrap_or_else(|| "jlp-rts".into());
    let mut options: Vec<OsString> = command.collect();
    let rest = match options.iter().position(|arg| arg == "--") {
        Some(at) => options.split_off(at),
        None => Vec::new(),
    };
    options.retain(|arg| arg != "--resume" && arg != "--dry-run");

    for (flag, variable) in [
        ("--config", "JLP_RTS_CONFIG"),
        ("--base-url", "JLP_BASE_URL"),
    ] {
        let chosen =
            given(&options, flag) || (flag == "--base-url" && given(&options, "--sandbox"));
        if let Some(value) = env(variable).filter(|v| !chosen && !v.is_empty()) {
            options.extend([flag.into(), value]);
        }
    }
    options.push("--resume".into());

    std::iter::once(program)
        .chain(options)
        .chain(rest)
        .map(|arg| shell_word(&arg))
        .collect::<Vec<_>>()
        .join(" ")
}

fn given(options: &[OsString], flag: &str) -> bool {
    options.iter().any(|arg| {
        arg.to_str()
            .is_some_and(|a| a == flag || a.strip_prefix(flag).is_some_and(|v| v.starts_with('=')))
    })
}

/// One word as a POSIX shell reads it back: plain words as they are, others
/// between single quotes, and bytes that are not text as `$'\xNN'`.
fn shell_word(word: &OsStr) -> String {
    let plain = |c: char| c.is_alphanumeric() || "-_./:=@%+,".contains(c);
    match word.to_str() {
        Some(text) if !text.is_empty() && text.chars().all(plain) => text.to_string(),
        Some(text) => format!("'{}'", text.replace('\'', "'\\''")),
        None => {
            let mut escaped = String::from("$'");
            for byte in word.as_encoded_bytes() {
                match byte {
                    b' '..=b'~' if !matches!(byte, b'\'' | b'\\') => {
                        escaped.push(char::from(*byte))
                    }
                    _ => escaped.push_str(&format!("\\x{byte:02x}")),
                }
            }
            escaped.push('\'');
            escaped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn the_resume_command_keeps_every_option_but_a_dry_run() {
        let given = words(&[
            "jlp-rts",
            "submit",
            "Returns May.csv",
            "--results",
            "out/res.csv",
            "--dry-run",
            "--sandbox",
            "--field",
            "reason=Return Reason",
            "-q",
        ]);

        assert_eq!(
            resume_command(given, no_env),
            "jlp-rts submit 'Returns May.csv' --results out/res.csv --sandbox \
             --field 'reason=Return Reason' -q --resume"
        );
    }

    #[test]
    fn a_resumed_run_is_resumed_once_more_without_repeating_the_flag() {
        let given = words(&["/opt/bin/jlp-rts", "submit", "it's.csv", "--resume"]);
        assert_eq!(
            resume_command(given, no_env),
            "/opt/bin/jlp-rts submit 'it'\\''s.csv' --resume"
        );
    }

    #[test]
    fn resume_goes_before_a_double_dash_and_what_follows_it_stays() {
        let given = words(&["jlp-rts", "submit", "--", "--dry-run"]);
        assert_eq!(
            resume_command(given, no_env),
            "jlp-rts submit --resume -- --dry-run"
        );
    }

    #[test]
    fn a_config_or_base_url_from_the_environment_is_written_out() {
        let env = |name: &str| match name {
            "JLP_RTS_CONFIG" => Some(OsString::from("/etc/jlp-rts/mail room.toml")),
            "JLP_BASE_URL" => Some(OsString::from("https://jlp.example")),
            _ => None,
        };

        assert_eq!(
            resume_command(words(&["jlp-rts", "submit", "r.csv"]), env),
            "jlp-rts submit r.csv --config '/etc/jlp-rts/mail room.toml' \
             --base-url https://jlp.example --resume"
        );
        let flags = words(&["jlp-rts", "submit", "r.csv", "--config=a.toml", "--sandbox"]);
        assert_eq!(
            resume_command(flags, env),
            "jlp-rts submit r.csv --config=a.toml --sandbox --resume"
        );
    }

    #[test]
    fn a_name_that_is_not_text_is_written_byte_for_byte() {
        use std::os::unix::ffi::OsStringExt;
        let name = OsString::from_vec(b"r\xe9sultats.csv".to_vec());
        let given = vec!["jlp-rts".into(), "submit".into(), name];
        assert_eq!(
            resume_command(given, no_env),
            "jlp-rts submit $'r\\xe9sultats.csv' --resume"
        );
    }
}
