//! `jlp-rts check`: what the tool makes of a file, without sending anything.

use std::fmt::Write;
use std::path::Path;

use crate::export::{self, Export, Format, ReadOptions};
use crate::Failure;

/// Reads the whole file and describes it; exit 0 when every row is usable.
pub fn check(path: &Path, options: &ReadOptions) -> Result<(String, u8), Failure> {
    let export = Export::open(path, options).map_err(Failure::usage)?;
    let tally = export::validate(&export).map_err(Failure::usage)?;

    let mut out = String::new();
    let _ = writeln!(out, "file:        {}", path.display());
    match &export.format {
        Format::Text {
            encoding,
            encoding_reason,
            delimiter,
            sep_line,
        } => {
            let _ = writeln!(out, "encoding:    {} ({encoding_reason})", encoding.name());
            let shown = match delimiter {
                b'\t' => "tab".to_string(),
                d => format!("`{}`", char::from(*d)),
            };
            let sep = if *sep_line {
                " (from the `sep=` line)"
            } else {
                ""
            };
            let _ = writeln!(out, "delimiter:   {shown}{sep}");
        }
        Format::Workbook { sheet } => {
            let _ = writeln!(out, "sheet:       {sheet}");
        }
    }
    let _ = writeln!(out, "columns:     {}", export.headers.join(" | "));
    let _ = writeln!(
        out,
        "id column:   {} (column {})",
        export.id_header(),
        export.id_index + 1
    );
    let _ = writeln!(out, "records:     {}", tally.records());
    let _ = writeln!(out, "  to send:   {}", tally.to_send);
    let _ = writeln!(out, "  invalid:   {}", tally.invalid);
    let _ = writeln!(out, "  duplicate: {}", tally.duplicate);
    let _ = writeln!(out, "  blank:     {}", tally.blank);
    if !tally.problems.is_empty() {
        let _ = writeln!(out, "first problems:");
        for problem in &tally.problems {
            let _ = writeln!(out, "  {problem}");
        }
    }
    let code = u8::from(tally.invalid + tally.duplicate > 0);
    Ok((out, code))
}
