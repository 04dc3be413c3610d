//! Settling a file's text encoding before anything is sent.
//!
//! Excel and its friends save returned-mail exports as UTF-8 with or without
//! a byte order mark, as UTF-16 ("Unicode Text"), or in the Windows code
//! page of the desk they were made on. The choice is made once, from the
//! whole file, so that the same bytes never decode two ways within a run.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8, WINDOWS_1252};
use encoding_rs_io::DecodeReaderBytesBuilder;

/// What one full read of the raw bytes tells us.
#[derive(Debug, Clone)]
pub struct Sniffed {
    pub encoding: &'static Encoding,
    /// How the encoding was chosen, for `check` and the logs.
    pub reason: &'static str,
}

/// Reads the file once: its byte order mark, and whether the
/// bytes are valid UTF-8. `forced` wins over all of it.
pub fn sniff(path: &Path, forced: Option<&'static Encoding>) -> io::Result<Sniffed> {
    let mut file = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut utf8 = Utf8Check::default();
    let mut head = Vec::with_capacity(HEAD_BYTES);
    let mut buf = vec![0; 64 * 1024];

    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        if head.len() < HEAD_BYTES {
            let take = (HEAD_BYTES - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        utf8.feed(chunk);
    }

    let (encoding, reason) = choose(forced, &head, utf8.finish());
    Ok(Sniffed { encoding, reason })
}

fn choose(
    forced: Option<&'static Encoding>,
    head: &[u8],
    valid_utf8: bool,
) -> (&'static Encoding, &'static str) {
    if let Some(encoding) = forced {
        return (encoding, "chosen with --encoding");
    }
    if let Some((encoding, _)) = Encoding::for_bom(head) {
        return (encoding, "byte order mark");
    }
    if let Some(encoding) = utf16_without_bom(head) {
        return (encoding, "UTF-16 without a byte order mark");
    }
    if valid_utf8 {
        (UTF_8, "valid UTF-8")
    } else {
        (WINDOWS_1252, "not valid UTF-8, read as Windows-1252")
    }
}

/// How much of the start of the file is looked at for UTF-16 without a mark.
const HEAD_BYTES: usize = 4096;

/// Text in UTF-16 has a zero in every other byte wherever it is ASCII; no
/// CSV in an 8-bit encoding has many zeros at all.
fn utf16_without_bom(head: &[u8]) -> Option<&'static Encoding> {
    let pairs = head.len() / 2;
    if pairs < 4 {
        return None;
    }
    let zeros = |offset: usize| {
        head.iter()
            .skip(offset)
            .step_by(2)
            .filter(|b| **b == 0)
            .count()
    };
    let (even, odd) = (zeros(0), zeros(1));
    let mostly = |n: usize| n * 10 >= pairs * 3;
    let rarely = |n: usize| n * 20 <= pairs;
    match (mostly(odd) && rarely(even), mostly(even) && rarely(odd)) {
        (true, _) => Some(UTF_16LE),
        (_, true) => Some(UTF_16BE),
        _ => None,
    }
}

/// Streaming UTF-8 validation across read boundaries.
#[derive(Default)]
struct Utf8Check {
    carry: Vec<u8>,
    invalid: bool,
}

impl Utf8Check {
    fn feed(&mut self, chunk: &[u8]) {
        if self.invalid {
            return;
        }
        self.carry.extend_from_slice(chunk);
        match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.clear(),
            Err(e) if e.error_len().is_none() => {
                // A character cut in two by the read: keep its first bytes.
                self.carry.drain(..e.valid_up_to());
            }
            Err(_) => self.invalid = true,
        }
    }

    fn finish(self) -> bool {
        !self.invalid && self.carry.is_empty()
    }
}

/// The file as UTF-8 text, byte order mark removed.
pub fn decoded(path: &Path, encoding: &'static Encoding) -> io::Result<impl Read> {
    let file = File::open(path)?;
    Ok(DecodeReaderBytesBuilder::new()
        .encoding(Some(encoding))
        .bom_override(true)
        .strip_bom(true)
        .build(BufReader::with_capacity(64 * 1024, file)))
}

/// Parses the name given to `--encoding`.
pub fn encoding_named(name: &str) -> Option<&'static Encoding> {
    let label = match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "utf-16" | "utf16" | "utf-16le" | "utf16le" => return Some(UTF_16LE),
        "utf-16be" | "utf16be" => return Some(UTF_16BE),
        "cp1252" | "windows1252" | "ansi" => return Some(WINDOWS_1252),
        "utf8" => return Some(UTF_8),
        other => other.to_string(),
    };
    Encoding::for_label(label.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_cut_across_reads_is_still_valid() {
        let mut check = Utf8Check::default();
        let text = "Renée".as_bytes();
        check.feed(&text[..4]);
        check.feed(&text[4..]);
        assert!(check.finish());
    }

    #[test]
    fn a_windows_1252_byte_is_not_utf8() {
        let mut check = Utf8Check::default();
        check.feed(b"Ren\xe9e");
        assert!(!check.finish());
    }

    #[test]
    fn a_truncated_character_at_the_end_is_not_utf8() {
        let mut check = Utf8Check::default();
        check.feed(b"Ren\xc3");
        assert!(!check.finish());
    }

    #[test]
    fn utf16_without_a_mark_is_recognised_by_its_zeros() {
        let text = "customer_id\tname\r\nAB12\tRenée\r\n";
        let le: Vec<u8> = text.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let be: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(utf16_without_bom(&le), Some(UTF_16LE));
        assert_eq!(utf16_without_bom(&be), Some(UTF_16BE));
        assert_eq!(utf16_without_bom(text.as_bytes()), None);
    }

    #[test]
    fn common_names_for_encodings_are_understood() {
        assert_eq!(encoding_named("UTF-16"), Some(UTF_16LE));
        assert_eq!(encoding_named("cp1252"), Some(WINDOWS_1252));
        assert_eq!(encoding_named("latin1"), Some(WINDOWS_1252));
        assert_eq!(encoding_named("utf8"), Some(UTF_8));
        assert_eq!(encoding_named("klingon"), None);
    }
}
