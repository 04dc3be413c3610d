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
        let again = format!("jlp-rts submit {} --resume", quoted(&self.file));
        match self.ending {
            Ending::DryRun if self.not_attempted > 0 => Some(format!("send the rows with `{again}`")),
            Ending::Interrupted | Ending::Terminated | Ending::ApiDown if self.not_attempted > 0 || self.this_run.failed > 0 => {
                Some(format!("run `{again}` to send the rest; nothing accepted is sent twice"))
            }
            Ending::LoginRefused => Some("check the user name and password, then run again with `--resume`".into()),
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

fn quoted(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(|c: char| c.is_whitespace() || "'\"$&;|".contains(c)) {
        format!("'{}'", text.replace('\'', "'\\''"))
    } else {
        text
    }
}
