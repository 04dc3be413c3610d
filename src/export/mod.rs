//! Reading a returned-mail export, row by row.
//!
//! An export is a CSV or text file in whatever encoding and dialect the
//! spreadsheet program chose, or an `.xlsx`/`.ods` workbook. [`Export::open`]
//! settles the encoding, delimiter, header and id column once; each call to
//! [`Export::rows`] then streams the data records, each with its verdict:
//! send it, or why not. Reading never holds the whole file in memory.

mod columns;
mod decode;
mod dialect;
mod id;
mod lines;
mod sheet;

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use columns::{normalise as normalise_header, ColumnError};
pub use decode::encoding_named;
pub use dialect::delimiter_named;
use encoding_rs::Encoding;

/// A field longer than this makes its row invalid.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// A record longer than this makes its row invalid.
pub const MAX_ROW_BYTES: usize = 1024 * 1024;

/// How the user asked for the file to be read; `None` means "detect".
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub encoding: Option<&'static Encoding>,
    pub delimiter: Option<u8>,
    pub id_column: Option<String>,
    pub no_header: bool,
    pub sheet: Option<String>,
}

/// What kind of file the export is, and how its text is laid out.
#[derive(Debug, Clone)]
pub enum Format {
    Text {
        encoding: &'static Encoding,
        encoding_reason: &'static str,
        delimiter: u8,
        sep_line: bool,
    },
    Workbook {
        sheet: String,
    },
}

/// A file that cannot be read as an export at all; nothing is sent.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read `{path}`")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{path}`: {message}")]
    Structure { path: PathBuf, message: String },
    #[error("`{path}`: {error}")]
    Columns { path: PathBuf, error: ColumnError },
}

/// An export whose layout is settled.
#[derive(Debug, Clone)]
pub struct Export {
    pub path: PathBuf,
    pub format: Format,
    /// Header names, trimmed; `column_1`... when the file has no header.
    pub headers: Vec<String>,
    pub id_index: usize,
    has_header: bool,
    /// Data record → the earlier record with the same id.
    duplicates: Arc<HashMap<u64, u64>>,
    /// What the opening pass counted.
    pub census: Census,
}

/// How many data records of each kind an export holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    pub records: u64,
    pub blank: u64,
    pub invalid: u64,
    pub duplicate: u64,
    pub to_send: u64,
}

/// One data record and what to do with it.
#[derive(Debug, Clone)]
pub struct Row {
    /// 1-based number of the data record (`rts_row`).
    pub number: u64,
    /// Physical line (or sheet row) where the record starts.
    pub line: u64,
    /// The record's fields, exactly as many as there are headers.
    pub fields: Vec<String>,
    pub verdict: Verdict,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send an event for this id.
    Send(String),
    /// Never sent; the reason for the results.
    Invalid(String),
    /// The same id as data record `first`; not sent again.
    Duplicate { first: u64 },
    /// Every field empty: skipped, counted, not written.
    Blank,
}

/// A record as a source yields it, before any checks.
struct Record {
    fields: Vec<String>,
    line: u64,
}

/// A stream of records from a text file or a workbook.
trait Source {
    fn next_record(&mut self) -> Option<Result<Record, String>>;
}

impl Export {
    /// Opens `path` and settles its layout: encoding, delimiter, header and
    /// id column.
    pub fn open(path: &Path, options: &ReadOptions) -> Result<Export, InputError> {
        let io_error = |source| InputError::Io {
            path: path.to_path_buf(),
            source,
        };
        let sniffed = decode::sniff(path, options.encoding).map_err(io_error)?;
        let format = if sheet::is_workbook(path) {
            Format::Workbook {
                sheet: sheet::sheet_name(path, options.sheet.as_deref()).map_err(|message| {
                    InputError::Structure {
                        path: path.to_path_buf(),
                        message,
                    }
                })?,
            }
        } else {
            let head = decoded_head(path, sniffed.encoding).map_err(io_error)?;
            let dialect = dialect::detect(&head, options.delimiter);
            Format::Text {
                encoding: sniffed.encoding,
                encoding_reason: sniffed.reason,
                delimiter: dialect.delimiter,
                sep_line: dialect.sep_line,
            }
        };

        let mut export = Export {
            path: path.to_path_buf(),
            format,
            headers: Vec::new(),
            id_index: 0,
            has_header: !options.no_header,
            duplicates: Arc::default(),
            census: Census::default(),
        };
        export.settle_columns(options)?;
        let (duplicates, census) = survey(export.rows()?)?;
        export.duplicates = Arc::new(duplicates);
        export.census = census;
        Ok(export)
    }

    fn settle_columns(&mut self, options: &ReadOptions) -> Result<(), InputError> {
        let mut source = self.source()?;
        let first = match source.next_record() {
            Some(Ok(record)) => record.fields,
            Some(Err(message)) => return Err(self.structure(message)),
            None => return Err(self.structure("the file is empty: it has no header row".into())),
        };

        self.headers = if self.has_header {
            first.iter().map(|h| columns::clean_header(h)).collect()
        } else {
            (1..=first.len()).map(|i| format!("column_{i}")).collect()
        };
        while self.has_header && self.headers.last().is_some_and(String::is_empty) {
            self.headers.pop();
        }

        let chosen = options.id_column.as_deref();
        if !self.has_header && chosen.is_none() {
            return Err(self.structure(
                "with `--no-header`, say which column holds the id: `--id-column N`".into(),
            ));
        }
        self.id_index = columns::find_id_column(&self.headers, chosen).map_err(|source| {
            InputError::Columns {
                path: self.path.clone(),
                error: source,
            }
        })?;
        Ok(())
    }

    fn structure(&self, message: String) -> InputError {
        InputError::Structure {
            path: self.path.clone(),
            message,
        }
    }

    /// The field delimiter of a text file.
    pub fn delimiter(&self) -> Option<u8> {
        match self.format {
            Format::Text { delimiter, .. } => Some(delimiter),
            Format::Workbook { .. } => None,
        }
    }

    /// The id column's header.
    pub fn id_header(&self) -> &str {
        &self.headers[self.id_index]
    }

    /// The data records, in order, each with its verdict.
    pub fn rows(&self) -> Result<Rows, InputError> {
        let mut source = self.source()?;
        if self.has_header {
            if let Some(Err(message)) = source.next_record() {
                return Err(self.structure(message));
            }
        }
        Ok(Rows {
            export: self.clone(),
            source,
            number: 0,
            duplicates: self.duplicates.clone(),
        })
    }

    fn source(&self) -> Result<Box<dyn Source>, InputError> {
        match &self.format {
            Format::Text {
                encoding,
                delimiter,
                sep_line,
                ..
            } => {
                let text =
                    decode::decoded(&self.path, encoding).map_err(|source| InputError::Io {
                        path: self.path.clone(),
                        source,
                    })?;
                Ok(Box::new(TextSource::new(text, *delimiter, *sep_line)))
            }
            Format::Workbook { sheet } => {
                sheet::open(&self.path, sheet).map_err(|message| self.structure(message))
            }
        }
    }
}

/// The first 64 KiB of decoded text, for guessing the delimiter.
fn decoded_head(path: &Path, encoding: &'static Encoding) -> std::io::Result<String> {
    let mut head = Vec::new();
    decode::decoded(path, encoding)?
        .take(64 * 1024)
        .read_to_end(&mut head)?;
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Records of a delimited text file, with their physical lines.
struct TextSource {
    reader: csv::Reader<lines::Tracked<Box<dyn Read>>>,
    lines: lines::Lines,
    record: csv::StringRecord,
    last_line: u64,
    done: bool,
}

impl TextSource {
    fn new(text: impl Read + 'static, delimiter: u8, sep_line: bool) -> TextSource {
        let mut text = BufReader::new(text);
        let first_line = if sep_line && skip_line(&mut text).is_ok() {
            2
        } else {
            1
        };
        let text: Box<dyn Read> = Box::new(text);
        let (tracked, lines) = lines::track(text, delimiter, first_line);
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(tracked);
        TextSource {
            reader,
            lines,
            record: csv::StringRecord::new(),
            last_line: first_line,
            done: false,
        }
    }

    /// At the end of the file, the one fault that swallows records: a quote
    /// opened and never closed.
    fn check_quotes(&self) -> Option<String> {
        let open = self.lines.unclosed_quote()?;
        Some(format!(
            "a quote opened on line {} is never closed, so everything after it would be read \
             as one value; close the quote (or double a quote meant as text: \"\"), then run again",
            open.line
        ))
    }
}

/// Drops the Excel `sep=X` line, whatever its line end.
fn skip_line(text: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = text.fill_buf()?;
        let Some(&b) = buf.first() else {
            return Ok(());
        };
        text.consume(1);
        match b {
            b'\n' => return Ok(()),
            b'\r' => {
                if text.fill_buf()?.first() == Some(&b'\n') {
                    text.consume(1);
                }
                return Ok(());
            }
            _ => {}
        }
    }
}

impl Source for TextSource {
    fn next_record(&mut self) -> Option<Result<Record, String>> {
        if self.done {
            return None;
        }
        match self.reader.read_record(&mut self.record) {
            Ok(true) => {
                let byte = self.record.position().map_or(0, |p| p.byte());
                self.last_line = self.lines.line_of(byte);
                let fields = self.record.iter().map(str::to_string).collect();
                Some(Ok(Record {
                    fields,
                    line: self.last_line,
                }))
            }
            Ok(false) => {
                self.done = true;
                self.check_quotes().map(Err)
            }
            Err(e) => {
                self.done = true;
                Some(Err(format!("line {}: {e}", self.last_line)))
            }
        }
    }
}

/// The data records of an export, each with its verdict.
pub struct Rows {
    export: Export,
    source: Box<dyn Source>,
    number: u64,
    duplicates: Arc<HashMap<u64, u64>>,
}

impl Iterator for Rows {
    type Item = Result<Row, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        let record = match self.source.next_record()? {
            Ok(record) => record,
            Err(message) => {
                let message = format!("record {}: {message}", self.number);
                return Some(Err(self.export.structure(message)));
            }
        };
        self.number += 1;
        Some(Ok(self.judge(record)))
    }
}

impl Rows {
    fn judge(&mut self, record: Record) -> Row {
        let width = self.export.headers.len();
        let Record { mut fields, line } = record;
        let given = fields.len();
        while fields.len() > width && fields.last().is_some_and(|f| f.trim().is_empty()) {
            fields.pop();
        }
        let overflow = fields.len();
        fields.resize(width, String::new());

        let verdict = if fields.iter().all(|f| f.trim().is_empty()) && overflow <= width {
            Verdict::Blank
        } else if overflow > width {
            Verdict::Invalid(format!(
                "the record has {given} fields but the header has {width}: a delimiter inside \
                 an unquoted value has probably shifted the columns; put that value in quotes"
            ))
        } else if let Some(problem) = oversized(&fields) {
            Verdict::Invalid(problem)
        } else if let Some(problem) = swallowed(&fields, self.export.delimiter()) {
            Verdict::Invalid(problem)
        } else {
            match id::check_id(&fields[self.export.id_index]) {
                Ok(id) => match self.duplicates.get(&self.number) {
                    Some(&first) => Verdict::Duplicate { first },
                    None => Verdict::Send(id.to_string()),
                },
                Err(reason) => Verdict::Invalid(reason),
            }
        };

        let verdict = match verdict {
            Verdict::Invalid(reason) => {
                Verdict::Invalid(format!("record {} (line {line}): {reason}", self.number))
            }
            other => other,
        };
        Row {
            number: self.number,
            line,
            fields,
            verdict,
        }
    }
}

/// A value spanning lines that look like whole records: a stray quote has
/// probably swallowed the rows that follow it.
fn swallowed(fields: &[String], delimiter: Option<u8>) -> Option<String> {
    let delimiter = char::from(delimiter?);
    let width = fields.len();
    if width < 3 {
        return None;
    }
    fields.iter().enumerate().find_map(|(column, field)| {
        let rows_inside = field
            .split(['\r', '\n'])
            .skip(1)
            .filter(|line| line.matches(delimiter).count() >= width - 1)
            .count();
        (rows_inside > 0).then(|| {
            format!(
                "field {} holds {rows_inside} line(s) that look like whole rows: a quote is \
                 probably not closed where it should be, which hides those rows; check the \
                 quotes in this record",
                column + 1
            )
        })
    })
}

fn oversized(fields: &[String]) -> Option<String> {
    let total: usize = fields.iter().map(String::len).sum();
    if total > MAX_ROW_BYTES {
        return Some(format!(
            "the record is {} KiB; the limit is 1024 KiB",
            total / 1024
        ));
    }
    let (column, field) = fields
        .iter()
        .enumerate()
        .find(|(_, f)| f.len() > MAX_FIELD_BYTES)?;
    Some(format!(
        "field {} is {} KiB; the limit is 64 KiB",
        column + 1,
        field.len() / 1024
    ))
}

/// Rows that repeat an earlier row's id, with the row they repeat, and how
/// many rows there are of each kind.
///
/// Found in a pass of their own before any other, from a vector of one
/// 128-bit hash and one row number per id (24 bytes a row) sorted once:
/// much smaller than a hash set of the ids, and the one part of reading
/// that grows with the file.
fn survey(rows: Rows) -> Result<(HashMap<u64, u64>, Census), InputError> {
    let keys = (RandomState::new(), RandomState::new());
    let mut seen: Vec<([u64; 2], u64)> = Vec::new();
    let mut census = Census::default();
    for row in rows {
        let row = row?;
        census.records += 1;
        match &row.verdict {
            Verdict::Send(id) => {
                seen.push(([keys.0.hash_one(id), keys.1.hash_one(id)], row.number));
            }
            Verdict::Invalid(_) => census.invalid += 1,
            Verdict::Blank => census.blank += 1,
            Verdict::Duplicate { .. } => {}
        }
    }
    seen.sort_unstable();

    let mut duplicates = HashMap::new();
    for group in seen.chunk_by(|a, b| a.0 == b.0) {
        let first = group[0].1;
        duplicates.extend(group[1..].iter().map(|(_, row)| (*row, first)));
    }
    census.duplicate = duplicates.len() as u64;
    census.to_send = seen.len() as u64 - census.duplicate;
    Ok((duplicates, census))
}

/// Counts of a whole export's rows by verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub to_send: u64,
    pub invalid: u64,
    pub duplicate: u64,
    pub blank: u64,
    /// The first few problems, for `check`.
    pub problems: Vec<String>,
}

impl Tally {
    pub fn records(&self) -> u64 {
        self.to_send + self.invalid + self.duplicate + self.blank
    }

    fn add(&mut self, row: &Row) {
        match &row.verdict {
            Verdict::Send(_) => self.to_send += 1,
            Verdict::Invalid(reason) => {
                self.invalid += 1;
                if self.problems.len() < 10 {
                    self.problems.push(reason.clone());
                }
            }
            Verdict::Duplicate { first } => {
                self.duplicate += 1;
                if self.problems.len() < 10 {
                    self.problems.push(format!(
                        "record {} (line {}): the same id as record {first}",
                        row.number, row.line
                    ));
                }
            }
            Verdict::Blank => self.blank += 1,
        }
    }
}

/// Reads the whole export once and counts what it holds; a structural fault
/// anywhere stops here, before anything is sent.
pub fn validate(export: &Export) -> Result<Tally, InputError> {
    let mut tally = Tally::default();
    for row in export.rows()? {
        tally.add(&row?);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(bytes: &[u8]) -> Vec<Row> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.csv");
        std::fs::write(&path, bytes).unwrap();
        let export = Export::open(&path, &ReadOptions::default()).unwrap();
        export.rows().unwrap().map(Result::unwrap).collect()
    }

    fn lines(rows: &[Row]) -> Vec<(u64, u64)> {
        rows.iter().map(|r| (r.number, r.line)).collect()
    }

    #[test]
    fn records_and_lines_agree_across_line_ends() {
        for end in ["\r\n", "\n", "\r"] {
            let text = format!("id,addr{end}A,\"1 High St{end}Town\"{end}{end}B,x{end}C,y{end}");
            let rows = rows_of(text.as_bytes());
            assert_eq!(lines(&rows), vec![(1, 2), (2, 5), (3, 6)], "{end:?}");
        }
    }

    #[test]
    fn the_opening_pass_counts_what_a_full_read_finds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.csv");
        let text = "id,name\nAB12,a\n,,\nAB12,b\n,no id\nCD34,c\nAB12,d\nEF56,e\n";
        std::fs::write(&path, text).unwrap();

        let export = Export::open(&path, &ReadOptions::default()).unwrap();
        let tally = validate(&export).unwrap();

        let expected = Census {
            records: 7,
            blank: 1,
            invalid: 1,
            duplicate: 2,
            to_send: 3,
        };
        assert_eq!(export.census, expected);
        assert_eq!(
            (
                tally.records(),
                tally.blank,
                tally.invalid,
                tally.duplicate,
                tally.to_send
            ),
            (7, 1, 1, 2, 3)
        );
    }

    #[test]
    fn rows_swallowed_by_a_stray_quote_make_the_record_invalid() {
        let text = "id,name,reason\nA1,Ann,x\nA2,\"Bob \"\"Jr,y\nA3,Cy,z\nA4,Di,w\nA5,\"Ed\",v\n";
        let rows = rows_of(text.as_bytes());
        let Verdict::Invalid(reason) = &rows[1].verdict else {
            panic!("{:?}", rows[1].verdict);
        };
        assert!(reason.contains("look like whole rows"), "{reason}");
        let address = "id,name,address\nA1,Ann,\"Flat 2\n10 High St, Town\"\n";
        assert!(matches!(
            rows_of(address.as_bytes())[0].verdict,
            Verdict::Send(_)
        ));
    }

    #[test]
    fn a_sep_line_shifts_the_lines() {
        let rows = rows_of(b"sep=;\r\nid;name\r\nA;x\r\nB;y\r\n");
        assert_eq!(lines(&rows), vec![(1, 3), (2, 4)]);
        assert_eq!(rows[0].fields, vec!["A", "x"]);
    }
}
