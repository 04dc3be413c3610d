//! The results file: every row's outcome, written as it arrives.
//!
//! Each outcome is appended and handed to the OS at once; the writer syncs
//! the file to disk at least every second, so a crash loses at most the rows
//! in flight.
//! Outcomes arrive in the order the workers finish; after a clean finish the
//! file is rewritten in input order. `--resume` reads the file back, drops
//! a line torn by a crash, and checks that it was made from the same input.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::outcome::{Outcome, Status};

/// The columns that follow the input's own.
pub const RTS_COLUMNS: [&str; 7] = [
    "rts_row",
    "rts_status",
    "rts_http_status",
    "rts_error_code",
    "rts_message",
    "rts_attempts",
    "rts_at",
];

/// Excel reads a CSV file as UTF-8 only when it starts with this mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Characters that make a spreadsheet read a cell as a formula.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A cell a spreadsheet will show as text: a value that would start a
/// formula gets a leading apostrophe. Values that already start with
/// apostrophes before such a character get one more, so that
/// [`unescape_cell`] restores every value exactly.
pub fn escape_cell(value: &str) -> std::borrow::Cow<'_, str> {
    let rest = value.trim_start_matches('\'');
    if rest.starts_with(FORMULA_STARTS) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// The value [`escape_cell`] was given.
pub fn unescape_cell(cell: &str) -> &str {
    let rest = cell.trim_start_matches('\'');
    if cell.starts_with('\'') && rest.starts_with(FORMULA_STARTS) {
        &cell[1..]
    } else {
        cell
    }
}

/// What an earlier run recorded for one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prior {
    pub status: Status,
    /// Hash of the row's echoed fields, to tell the input has not changed.
    pub fields_hash: u64,
}

/// The rows an earlier run finished with, by `rts_row`.
pub type Priors = HashMap<u64, Prior>;

/// Hash of a row's fields, the same for the input and its echo.
pub fn fields_hash(fields: &[String]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(fields)
}

/// The results file being written.
pub struct ResultsFile {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
    last_row: u64,
    in_order: bool,
    record: Vec<String>,
}

impl ResultsFile {
    /// A new results file, readable by its owner only.
    pub fn create(path: &Path, headers: &[String]) -> anyhow::Result<ResultsFile> {
        let mut file = owner_only()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create the results file `{}`", path.display()))?;
        file.write_all(BOM)?;
        let mut results = ResultsFile::around(path, file, true);
        let header = headers.iter().map(String::as_str).chain(RTS_COLUMNS);
        results
            .writer
            .write_record(header.map(|h| escape_cell(h).into_owned()))?;
        results.sync()?;
        Ok(results)
    }

    /// Continues an earlier run's file after [`read_priors`]; a line torn
    /// by a crash (everything past `good_end`) is cut off first.
    pub fn append(path: &Path, good_end: u64) -> anyhow::Result<ResultsFile> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the results file `{}`", path.display()))?;
        file.set_len(good_end)?;
        let mut file = file;
        file.seek(SeekFrom::End(0))?;
        Ok(ResultsFile::around(path, file, false))
    }

    fn around(path: &Path, file: File, in_order: bool) -> ResultsFile {
        let writer = csv::WriterBuilder::new()
            .flexible(true)
            .from_writer(BufWriter::with_capacity(64 * 1024, file));
        ResultsFile {
            path: path.to_path_buf(),
            writer,
            last_row: 0,
            in_order,
            record: Vec::new(),
        }
    }

    /// Appends one outcome. Call [`ResultsFile::flush`] once the outcomes
    /// at hand are written.
    pub fn record(&mut self, outcome: &Outcome) -> io::Result<()> {
        self.in_order &= outcome.row > self.last_row;
        self.last_row = outcome.row;

        self.record.clear();
        let fields = outcome.fields.iter().map(|f| escape_cell(f).into_owned());
        self.record.extend(fields);
        self.record.push(outcome.row.to_string());
        self.record.push(outcome.status.as_str().to_string());
        self.record.push(
            outcome
                .http_status
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
        self.record
            .push(escape_cell(&outcome.error_code).into_owned());
        self.record.push(escape_cell(&outcome.message).into_owned());
        self.record.push(outcome.attempts.to_string());
        self.record
            .push(humantime::format_rfc3339_seconds(outcome.at).to_string());
        self.writer
            .write_record(&self.record)
            .map_err(io::Error::other)
    }

    /// Hands what was written to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }

    /// Hands what was written to the OS and waits until it is on disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.flush()?;
        self.writer.get_ref().get_ref().sync_data()
    }

    /// A second handle on the file, to sync it from another thread while
    /// writing goes on.
    pub fn sync_handle(&self) -> io::Result<File> {
        self.writer.get_ref().get_ref().try_clone()
    }

    /// Syncs the file and, when rows were written out of input order or
    /// appended to an earlier run's, rewrites it in input order with one
    /// line per row.
    pub fn finish(mut self, reorder: bool) -> anyhow::Result<()> {
        self.sync()?;
        if reorder && !self.in_order {
            rewrite_in_order(&self.path)?;
        }
        Ok(())
    }
}

/// Options for a file only its owner may read.
pub(crate) fn owner_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// A reader of a results file, past its byte order mark, and the length
/// of that mark: add it to the reader's positions for file offsets.
fn results_reader(path: &Path) -> anyhow::Result<(csv::Reader<File>, u64)> {
    let mut file = File::open(path)
        .with_context(|| format!("cannot read the results file `{}`", path.display()))?;
    let mut mark = [0; 3];
    let skip = match file.read_exact(&mut mark) {
        Ok(()) if mark == BOM => 3,
        _ => 0,
    };
    file.seek(SeekFrom::Start(skip))?;
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(file);
    Ok((reader, skip))
}

/// One complete line of a results file.
struct Line {
    row: u64,
    status: Status,
    fields: Vec<String>,
    start: u64,
    end: u64,
}

/// Walks a results file's records, stopping at the first one a crash
/// left incomplete. Returns the lines and where the last good one ends.
fn read_lines(
    path: &Path,
    headers: &[String],
    mut each: impl FnMut(Line) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let (mut reader, skip) = results_reader(path)?;
    let width = headers.len() + RTS_COLUMNS.len();
    let file_len = std::fs::metadata(path)?.len();
    let mut record = csv::StringRecord::new();

    let expected = headers
        .iter()
        .map(|h| escape_cell(h).into_owned())
        .chain(RTS_COLUMNS.map(String::from));
    let header_read = reader.read_record(&mut record).unwrap_or(false);
    if !header_read || record.iter().ne(expected) {
        bail!(
            "the results file `{}` was not made from this input (its columns differ); \
             choose another `--results` path, or move the old file away",
            path.display()
        );
    }
    let mut good_end = skip + reader.position().byte();
    let ends_cleanly = ends_with_newline(path)?;

    loop {
        let start = skip + reader.position().byte();
        let read = reader.read_record(&mut record);
        if matches!(read, Ok(false)) {
            break;
        }
        let end = skip + reader.position().byte();
        let at_end = end >= file_len;
        let line = read
            .ok()
            .and_then(|_| parse_line(&record, width, headers.len(), start, end));
        match line {
            Some(line) if !at_end || ends_cleanly => {
                good_end = end;
                each(line)?;
            }
            // The last line, cut short by a crash: it is dropped.
            _ if at_end => break,
            _ => bail!(
                "line {} of the results file `{}` cannot be read back: it was changed, perhaps \
                 by saving the file from a spreadsheet. Restore it, or move it away to start afresh",
                record.position().map_or(0, |p| p.line()),
                path.display()
            ),
        }
    }
    Ok(good_end)
}

fn parse_line(
    record: &csv::StringRecord,
    width: usize,
    input_width: usize,
    start: u64,
    end: u64,
) -> Option<Line> {
    if record.len() != width {
        return None;
    }
    let row = record.get(input_width)?.parse().ok()?;
    let status = Status::parse(record.get(input_width + 1)?)?;
    humantime::parse_rfc3339(record.get(width - 1)?).ok()?;
    let fields = record
        .iter()
        .take(input_width)
        .map(|f| unescape_cell(f).to_string())
        .collect();
    Some(Line {
        row,
        status,
        fields,
        start,
        end,
    })
}

fn ends_with_newline(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    if file.seek(SeekFrom::End(-1)).is_err() {
        return Ok(false);
    }
    let mut last = [0];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// What an earlier run recorded, the last line for a row winning, and
/// where its last complete line ends.
// Known limit: resuming keeps one map entry per recorded row (about 40
// bytes), so resuming a run of millions of rows costs tens of MiB; a sorted
// vector like the one `latest_lines` builds would halve it.
pub fn read_priors(path: &Path, headers: &[String]) -> anyhow::Result<(Priors, u64)> {
    let mut priors = Priors::new();
    let good_end = read_lines(path, headers, |line| {
        let prior = Prior {
            status: line.status,
            fields_hash: fields_hash(&line.fields),
        };
        priors.insert(line.row, prior);
        Ok(())
    })?;
    Ok((priors, good_end))
}

/// Where a row's latest line sits in a results file: 24 bytes a row, the
/// only thing finishing a run keeps per row.
struct Span {
    row: u64,
    start: u64,
    len: u32,
    status: Status,
}

/// Each row's latest line, in row order.
fn latest_lines(path: &Path, headers: &[String]) -> anyhow::Result<Vec<Span>> {
    let mut spans = Vec::new();
    read_lines(path, headers, |line| {
        let len = u32::try_from(line.end - line.start)?;
        spans.push(Span {
            row: line.row,
            start: line.start,
            len,
            status: line.status,
        });
        Ok(())
    })?;
    spans.sort_unstable_by_key(|s| (s.row, std::cmp::Reverse(s.start)));
    spans.dedup_by_key(|s| s.row);
    Ok(spans)
}

/// Rewrites the file with one line per row, in row order, the last line
/// recorded for a row winning; replaced atomically.
fn rewrite_in_order(path: &Path) -> anyhow::Result<()> {
    let (headers, header_end) = header_of(path)?;
    let spans = latest_lines(path, &headers)?;

    let mut source = SpanReader::open(path)?;
    let temporary = path.with_extension("csv.partial");
    let file = owner_only()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&temporary)?;
    let mut out = BufWriter::new(file);
    let mut line = Vec::new();
    let header = Span {
        row: 0,
        start: 0,
        len: u32::try_from(header_end)?,
        status: Status::Accepted,
    };
    source.read(&header, &mut line)?;
    write_line(&mut out, &line)?;
    for span in spans {
        source.read(&span, &mut line)?;
        write_line(&mut out, &line)?;
    }
    let out = out.into_inner().map_err(|e| e.into_error())?;
    out.sync_all()?;
    std::fs::rename(&temporary, path)?;
    Ok(())
}

/// One line, whatever line ends it was read with, ending in `\n`.
fn write_line(out: &mut impl Write, line: &[u8]) -> io::Result<()> {
    let start = line
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(line.len());
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(start, |i| i + 1);
    out.write_all(&line[start..end.max(start)])?;
    out.write_all(b"\n")
}

/// Lines of a results file read by their spans. Spans in row order are
/// nearly in file order (rows finish about in the order they were sent), so
/// most of them are already in the buffer: a relative seek within it costs
/// no system call.
struct SpanReader {
    file: BufReader<File>,
    at: u64,
}

impl SpanReader {
    fn open(path: &Path) -> io::Result<SpanReader> {
        Ok(SpanReader {
            file: BufReader::with_capacity(256 * 1024, File::open(path)?),
            at: 0,
        })
    }

    fn read(&mut self, span: &Span, line: &mut Vec<u8>) -> io::Result<()> {
        let offset = i64::try_from(span.start).map_err(io::Error::other)?
            - i64::try_from(self.at).map_err(io::Error::other)?;
        self.file.seek_relative(offset)?;
        line.resize(span.len as usize, 0);
        self.file.read_exact(line)?;
        self.at = span.start + u64::from(span.len);
        Ok(())
    }
}

/// Writes the failed and invalid rows, with their original columns only
/// (formula-shaped cells made text, as in the results), to `path`; returns
/// how many there were.
pub fn write_failed_rows(results: &Path, path: &Path, headers: &[String]) -> anyhow::Result<u64> {
    let failed: Vec<Span> = latest_lines(results, headers)?
        .into_iter()
        .filter(|s| matches!(s.status, Status::Failed | Status::Invalid))
        .collect();
    if failed.is_empty() {
        return Ok(0);
    }

    let file = owner_only()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("cannot write the failed-rows file `{}`", path.display()))?;
    let mut writer = BufWriter::new(file);
    writer.write_all(BOM)?;
    let mut writer = csv::Writer::from_writer(writer);
    writer.write_record(headers.iter().map(|h| escape_cell(h).into_owned()))?;
    let mut source = SpanReader::open(results)?;
    let mut line = Vec::new();
    for span in &failed {
        source.read(span, &mut line)?;
        let mut record = csv::ByteRecord::new();
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(line.as_slice())
            .read_byte_record(&mut record)?;
        // Cells stay as the results wrote them: already safe to open.
        writer.write_byte_record(&record.iter().take(headers.len()).collect())?;
    }
    let writer = writer.into_inner().map_err(|e| e.into_error())?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(failed.len() as u64)
}

/// The input columns a results file was written with, and where its header
/// line ends.
fn header_of(path: &Path) -> anyhow::Result<(Vec<String>, u64)> {
    let (mut reader, skip) = results_reader(path)?;
    let mut record = csv::StringRecord::new();
    reader.read_record(&mut record)?;
    let input = record.len().saturating_sub(RTS_COLUMNS.len());
    let headers = record
        .iter()
        .take(input)
        .map(|h| unescape_cell(h).to_string())
        .collect();
    Ok((headers, skip + reader.position().byte()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_written_as_text_and_read_back_exactly() {
        for value in ["=1+1", "+1", "-2+3", "@SUM(1)", "\tx", "\rx", "'=x", "''@y"] {
            let cell = escape_cell(value);
            assert!(!cell.starts_with(FORMULA_STARTS), "{value:?} -> {cell:?}");
            assert_eq!(unescape_cell(&cell), value);
        }
        for value in ["Jane", "'quoted'", "", "1-2"] {
            assert_eq!(escape_cell(value), value);
            assert_eq!(unescape_cell(value), value);
        }
    }
}
