//! Physical line numbers for CSV records, and the one structural fault a
//! CSV reader cannot see for itself: a quote opened and never closed.
//!
//! The csv crate reports the byte where each record starts, but its own line
//! counter does not treat CRLF and bare CR line ends the way a person counts
//! lines in a text editor. [`Tracked`] sits between the decoded text and the
//! parser, notes where every line starts as the bytes pass, and mirrors the
//! parser's quoting rules so that a quote still open at the end of the file
//! can be traced back to the line where it was opened.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Read};
use std::rc::Rc;

/// Where a quoted field that never closed was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenQuote {
    pub byte: u64,
    pub line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

#[derive(Debug)]
struct State {
    delimiter: u8,
    bytes_seen: u64,
    /// Starts of non-empty lines not yet asked about, as (byte offset,
    /// line number).
    pending: VecDeque<(u64, u64)>,
    at_line_start: bool,
    last_was_cr: bool,
    quoting: Quoting,
    open_quote: Option<OpenQuote>,
    lines_seen: u64,
}

/// A cheap handle on the line bookkeeping, kept by the reader of records.
#[derive(Debug, Clone)]
pub struct Lines(Rc<RefCell<State>>);

/// The byte stream handed to the CSV parser.
pub struct Tracked<R> {
    inner: R,
    lines: Lines,
}

/// Wraps `inner`, whose first byte sits on physical line `first_line`.
pub fn track<R: Read>(inner: R, delimiter: u8, first_line: u64) -> (Tracked<R>, Lines) {
    let state = State {
        delimiter,
        bytes_seen: 0,
        pending: VecDeque::new(),
        at_line_start: true,
        last_was_cr: false,
        quoting: Quoting::FieldStart,
        open_quote: None,
        lines_seen: first_line,
    };
    let lines = Lines(Rc::new(RefCell::new(state)));
    (
        Tracked {
            inner,
            lines: lines.clone(),
        },
        lines,
    )
}

impl<R: Read> Read for Tracked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.lines.0.borrow_mut().observe(&buf[..n]);
        Ok(n)
    }
}

impl State {
    fn observe(&mut self, chunk: &[u8]) {
        let mut at = 0;
        while let Some(&b) = chunk.get(at) {
            self.bytes_seen += 1;
            self.count_line_end(b);
            self.follow_quotes(b);
            at += 1;
            if !self.is_special(b) {
                // After one ordinary byte, the rest of a run of them changes
                // nothing but the count.
                let run = chunk[at..]
                    .iter()
                    .position(|&c| self.is_special(c))
                    .unwrap_or(chunk.len() - at);
                self.bytes_seen += run as u64;
                at += run;
            }
        }
    }

    /// A byte that can end a line, a field or a quote.
    fn is_special(&self, b: u8) -> bool {
        b == b'\r' || b == b'\n' || b == b'"' || b == self.delimiter
    }

    /// CRLF, LF and a bare CR each end one line. The first byte after a
    /// run of line ends is where a record can start.
    fn count_line_end(&mut self, b: u8) {
        let line_end = b == b'\r' || b == b'\n';
        if line_end {
            if b == b'\r' || !self.last_was_cr {
                self.lines_seen += 1;
            }
            self.at_line_start = true;
        } else if self.at_line_start {
            self.pending
                .push_back((self.bytes_seen - 1, self.lines_seen));
            self.at_line_start = false;
        }
        self.last_was_cr = b == b'\r';
    }

    /// The same quoting rules as the csv parser: a quote opens a field only at
    /// its start, `""` inside quotes is a literal quote.
    fn follow_quotes(&mut self, b: u8) {
        let line_end = b == b'\r' || b == b'\n';
        self.quoting = match self.quoting {
            Quoting::FieldStart | Quoting::Unquoted | Quoting::QuoteInQuoted
                if b == self.delimiter || line_end =>
            {
                Quoting::FieldStart
            }
            Quoting::FieldStart if b == b'"' => {
                self.open_quote = Some(OpenQuote {
                    byte: self.bytes_seen - 1,
                    line: self.lines_seen,
                });
                Quoting::Quoted
            }
            Quoting::FieldStart | Quoting::Unquoted => Quoting::Unquoted,
            Quoting::Quoted if b == b'"' => Quoting::QuoteInQuoted,
            Quoting::Quoted => Quoting::Quoted,
            Quoting::QuoteInQuoted if b == b'"' => Quoting::Quoted,
            Quoting::QuoteInQuoted => Quoting::Unquoted,
        };
    }
}

impl Lines {
    /// The physical line where a record the parser says starts at `byte`
    /// really begins: the parser's position includes the previous record's
    /// line end and any blank lines, which are skipped here. Calls must ask
    /// about bytes in increasing order, as a reader moving through the file
    /// does.
    pub fn line_of(&self, byte: u64) -> u64 {
        let mut state = self.0.borrow_mut();
        while state
            .pending
            .front()
            .is_some_and(|&(start, _)| start < byte)
        {
            state.pending.pop_front();
        }
        state
            .pending
            .front()
            .map_or(state.lines_seen, |&(_, line)| line)
    }

    /// After the whole input has been read: the quote left open, if any.
    pub fn unclosed_quote(&self) -> Option<OpenQuote> {
        let state = self.0.borrow();
        match state.quoting {
            Quoting::Quoted => state.open_quote,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_for(text: &str) -> Lines {
        let (mut tracked, lines) = track(text.as_bytes(), b',', 1);
        io::copy(&mut tracked, &mut io::sink()).unwrap();
        lines
    }

    #[test]
    fn crlf_lf_and_bare_cr_each_end_one_line() {
        for text in ["a\r\nb\r\nc\r\n", "a\nb\nc\n", "a\rb\rc\r"] {
            let lines = lines_for(text);
            assert_eq!(lines.line_of(0), 1, "{text:?}");
            let b = text.find('b').unwrap() as u64;
            let c = text.find('c').unwrap() as u64;
            assert_eq!(lines.line_of(b), 2, "{text:?}");
            assert_eq!(lines.line_of(c), 3, "{text:?}");
        }
    }

    #[test]
    fn a_crlf_split_across_reads_counts_once() {
        let lines = Lines(Rc::new(RefCell::new(State {
            delimiter: b',',
            bytes_seen: 0,
            pending: VecDeque::new(),
            at_line_start: true,
            last_was_cr: false,
            quoting: Quoting::FieldStart,
            open_quote: None,
            lines_seen: 1,
        })));
        lines.0.borrow_mut().observe(b"a\r");
        lines.0.borrow_mut().observe(b"\nb");
        assert_eq!(lines.line_of(3), 2);
    }

    #[test]
    fn an_unclosed_quote_is_traced_to_its_line() {
        let lines = lines_for("id,name\r\nA,\"Doe, Jane,x\r\nB,John\r\n");
        let open = lines.unclosed_quote().unwrap();
        assert_eq!(open.line, 2);
        assert_eq!(open.byte, 11);
    }

    #[test]
    fn closed_and_doubled_quotes_are_balanced() {
        let lines = lines_for("id,note\nA,\"say \"\"hi\"\"\nthere\"\nB,5\" disk\n");
        assert_eq!(lines.unclosed_quote(), None);
    }
}
