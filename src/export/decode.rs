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
use sha2::{Digest, Sha256};

/// What one full read of the raw bytes tells us.
#[derive(Debug, Clone)]
pub struct Sniffed {
    pub encoding: &'static Encoding,
    /// How the encoding was chosen, for `check` and the logs.
    pub reason: &'static str,
    /// SHA-256 of the file's bytes: ties a results file and its
    /// idempotency keys to exactly this input.
    pub digest: [u8; 32],
}

/// Reads the file once: its digest, its byte order mark, and whether the
/// bytes are valid UTF-8. `forced` wins over all of it.
pub fn sniff(path: &Path, forced: Option<&'static Encoding>) -> io::Result<Sniffed> {
    let mut file = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let mut hasher = Sha256::new();
    let mut utf8 = Utf8Check::default();
    let mut head = Vec::with_capacity(3);
    let mut buf = vec![0; 64 * 1024];

    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        if head.len() < 3 {
            let take = (3 - head.len()).min(n);
            head.extend_from_slice(&chunk[..take]);
        }
        utf8.feed(chunk);
    }

    let digest = hasher.finalize().into();
    let (encoding, reason) = choose(forced, &head, utf8.finish());
    Ok(Sniffed {
        encoding,
        reason,
        digest,
    })
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
    if valid_utf8 {
        (UTF_8, "valid UTF-8")
    } else {
        (WINDOWS_1252, "not valid UTF-8, read as Windows-1252")
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
    fn common_names_for_encodings_are_understood() {
        assert_eq!(encoding_named("UTF-16"), Some(UTF_16LE));
        assert_eq!(encoding_named("cp1252"), Some(WINDOWS_1252));
        assert_eq!(encoding_named("latin1"), Some(WINDOWS_1252));
        assert_eq!(encoding_named("utf8"), Some(UTF_8));
        assert_eq!(encoding_named("klingon"), None);
    }
}
