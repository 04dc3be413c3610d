//! `.xlsx`, `.xls` and `.ods` workbooks, read directly so that staff need not
//! save as CSV first. Cells are taken as text; dates become `YYYY-MM-DD`.

use std::path::Path;

use calamine::{open_workbook, open_workbook_auto, Data, Range, Reader, Xlsx};

use super::{Record, Source};

/// Workbooks are told apart from text by their extension.
pub fn is_workbook(path: &Path) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(extension.as_str(), "xlsx" | "xlsm" | "xls" | "ods")
}

/// The sheet to read: the one named, or the first.
pub fn sheet_name(path: &Path, wanted: Option<&str>) -> Result<String, String> {
    let workbook =
        open_workbook_auto(path).map_err(|e| format!("cannot open the workbook: {e}"))?;
    let names = workbook.sheet_names();
    match wanted {
        Some(name) if names.iter().any(|n| n == name) => Ok(name.to_string()),
        Some(name) => Err(format!(
            "the workbook has no sheet `{name}`; its sheets are: {}",
            names.join(", ")
        )),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| "the workbook has no sheets".to_string()),
    }
}

/// The records of a sheet, from a `.xlsx` workbook streamed cell by cell,
/// or from another kind of workbook loaded whole.
pub fn open(path: &Path, sheet: &str) -> Result<Box<dyn Source>, String> {
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(extension.to_ascii_lowercase().as_str(), "xlsx" | "xlsm") {
        Ok(Box::new(StreamedSheet::start(path, sheet)))
    } else {
        Ok(Box::new(LoadedSheet::open(path, sheet)?))
    }
}

/// A `.xlsx` sheet read cell by cell on a thread of its own, a row at a
/// time, so memory does not grow with the sheet.
struct StreamedSheet {
    rows: std::sync::mpsc::Receiver<Result<Record, String>>,
}

impl StreamedSheet {
    fn start(path: &Path, sheet: &str) -> StreamedSheet {
        let (sender, rows) = std::sync::mpsc::sync_channel(256);
        let (path, sheet) = (path.to_path_buf(), sheet.to_string());
        std::thread::spawn(move || {
            if let Err(message) = stream_rows(&path, &sheet, &sender) {
                let _ = sender.send(Err(message));
            }
        });
        StreamedSheet { rows }
    }
}

/// Sends each row as it is complete; rows the sheet skips are sent empty,
/// so record numbers follow the sheet's rows.
fn stream_rows(
    path: &Path,
    sheet: &str,
    sender: &std::sync::mpsc::SyncSender<Result<Record, String>>,
) -> Result<(), String> {
    let mut book: Xlsx<_> =
        open_workbook(path).map_err(|e| format!("cannot open the workbook: {e}"))?;
    let mut cells = book
        .worksheet_cells_reader(sheet)
        .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?;
    let mut row: Option<(u32, Vec<String>)> = None;
    while let Some(cell) = cells
        .next_cell()
        .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?
    {
        let (at, column) = cell.get_position();
        let text = cell_text(&Data::from(cell.get_value().clone()));
        match &mut row {
            Some((current, fields)) if *current == at => put(fields, column, text),
            _ => {
                if let Some((previous, fields)) = row.take() {
                    send_row(sender, previous, fields, at)?;
                }
                let mut fields = Vec::new();
                put(&mut fields, column, text);
                row = Some((at, fields));
            }
        }
    }
    if let Some((last, fields)) = row {
        send_row(sender, last, fields, last + 1)?;
    }
    Ok(())
}

fn put(fields: &mut Vec<String>, column: u32, text: String) {
    let column = column as usize;
    if text.is_empty() {
        return;
    }
    if fields.len() <= column {
        fields.resize(column + 1, String::new());
    }
    fields[column] = text;
}

/// Sends row `at`, then an empty record for each row skipped before `next`.
fn send_row(
    sender: &std::sync::mpsc::SyncSender<Result<Record, String>>,
    at: u32,
    fields: Vec<String>,
    next: u32,
) -> Result<(), String> {
    let stopped = || "the reader stopped".to_string();
    let line = u64::from(at) + 1;
    sender
        .send(Ok(Record { fields, line }))
        .map_err(|_| stopped())?;
    for skipped in at + 1..next {
        let line = u64::from(skipped) + 1;
        sender
            .send(Ok(Record {
                fields: Vec::new(),
                line,
            }))
            .map_err(|_| stopped())?;
    }
    Ok(())
}

impl Source for StreamedSheet {
    fn next_record(&mut self) -> Option<Result<Record, String>> {
        self.rows.recv().ok()
    }
}

/// An `.xls` or `.ods` sheet.
struct LoadedSheet {
    range: Range<Data>,
    next: usize,
    first_row: u64,
}

impl LoadedSheet {
    // Known limit: calamine offers no cell-by-cell reader for `.xls` and
    // `.ods`, so such a sheet is loaded whole; save big ones as `.xlsx` or
    // CSV, which are streamed.
    fn open(path: &Path, sheet: &str) -> Result<LoadedSheet, String> {
        let mut workbook =
            open_workbook_auto(path).map_err(|e| format!("cannot open the workbook: {e}"))?;
        let range = workbook
            .worksheet_range(sheet)
            .map_err(|e| format!("cannot read sheet `{sheet}`: {e}"))?;
        let first_row = range.start().map_or(0, |(row, _)| u64::from(row));
        Ok(LoadedSheet {
            range,
            next: 0,
            first_row,
        })
    }
}

impl Source for LoadedSheet {
    fn next_record(&mut self) -> Option<Result<Record, String>> {
        if self.next >= self.range.height() {
            return None;
        }
        let row = self.next;
        let line = self.first_row + row as u64 + 1;
        self.next += 1;
        let fields = (0..self.range.width())
            .map(|column| {
                self.range
                    .get((row, column))
                    .map_or_else(String::new, cell_text)
            })
            .collect();
        Some(Ok(Record { fields, line }))
    }
}

fn cell_text(cell: &Data) -> String {
    match cell {
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::DateTime(d) => excel_date(d.as_f64()),
        other => other.to_string(),
    }
}

/// An Excel serial date (days since 1899-12-30) as `YYYY-MM-DD`, with the
/// time of day when it has one.
fn excel_date(serial: f64) -> String {
    let days = serial.floor() as i64 - 25_569; // days from 1970-01-01
    let (y, m, d) = civil_from_days(days);
    let seconds = ((serial - serial.floor()) * 86_400.0).round() as i64;
    if seconds == 0 {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        let (h, min, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
        format!("{y:04}-{m:02}-{d:02} {h:02}:{min:02}:{s:02}")
    }
}

/// Proleptic Gregorian date from days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_dates_become_calendar_dates() {
        assert_eq!(excel_date(25_569.0), "1970-01-01");
        assert_eq!(excel_date(46_359.0), "2026-12-03");
        assert_eq!(excel_date(46_359.5), "2026-12-03 12:00:00");
    }

    #[test]
    fn whole_numbers_lose_their_point_zero() {
        assert_eq!(cell_text(&Data::Float(810.0)), "810");
        assert_eq!(cell_text(&Data::Float(1.5)), "1.5");
        assert_eq!(cell_text(&Data::String("0810".into())), "0810");
    }
}
