//! The plain account a run gives at the end, for people and for monitoring.

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
    /// makes it; without one, the plain form for the file.
    #[serde(skip)]
    pub again: Option<String>,
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
        let again = self
            .again
            .clone()
            .unwrap_or_else(|| format!("jlp-rts submit {} --resume", quoted(&self.file)));
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

/// The command a run was started with (after the program's name), made
/// to resume it: every option that chose the file, the results, the server
/// or what is sent stays, `--dry-run` goes and `--resume` is added. No
/// option carries a secret, so all of it can be shown.
pub fn resume_command(args: impl IntoIterator<Item = std::ffi::OsString>) -> String {
    let mut command = String::from("jlp-rts");
    for arg in args {
        if arg == "--resume" || arg == "--dry-run" {
            continue;
        }
        command.push(' ');
        command.push_str(&quoted(Path::new(&arg)));
    }
    command.push_str(" --resume");
    command
}

/// As a POSIX shell reads it back: anything but plain characters goes
/// between single quotes.
fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_alphanumeric() || "-_./:=@%+,".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        text
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resume_command_keeps_every_option_but_a_dry_run() {
        let given = [
            "submit",
            "Returns May.csv",
            "--results",
            "out/res.csv",
            "--dry-run",
            "--sandbox",
            "--field",
            "reason=Return Reason",
            "-q",
        ];

        let again = resume_command(given.map(std::ffi::OsString::from));

        assert_eq!(
            again,
            "jlp-rts submit 'Returns May.csv' --results out/res.csv --sandbox \
             --field 'reason=Return Reason' -q --resume"
        );
    }

    #[test]
    fn a_resumed_run_is_resumed_once_more_without_repeating_the_flag() {
        let given = ["submit", "it's.csv", "--resume"].map(std::ffi::OsString::from);
        assert_eq!(
            resume_command(given),
            "jlp-rts submit 'it'\\''s.csv' --resume"
        );
    }
}
