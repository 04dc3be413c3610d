//! Which character separates the fields.
//!
//! Excel writes commas or semicolons depending on the desk's regional
//! settings, tabs for "Unicode Text", and sometimes a first line `sep=;`
//! meant for Excel itself. The delimiter is read from that line when it is
//! there, otherwise guessed from the first lines of the file.

/// How the fields of an export are separated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    pub delimiter: u8,
    /// The file opens with an Excel `sep=X` line, which is not a header.
    pub sep_line: bool,
}

const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];
const SAMPLE_LINES: usize = 20;

/// Settles the dialect from the start of the decoded text.
pub fn detect(head: &str, forced: Option<u8>) -> Dialect {
    let first_line = head.lines().next().unwrap_or("");
    if let Some(delimiter) = sep_line(first_line) {
        return Dialect {
            delimiter: forced.unwrap_or(delimiter),
            sep_line: true,
        };
    }
    Dialect {
        delimiter: forced.unwrap_or_else(|| guess(head)),
        sep_line: false,
    }
}

/// `sep=;` (any case, optional spaces) as Excel writes it.
fn sep_line(line: &str) -> Option<u8> {
    let rest = line
        .trim()
        .strip_prefix("sep=")
        .or_else(|| line.trim().strip_prefix("SEP="))?;
    match rest.as_bytes() {
        [d] if d.is_ascii() => Some(*d),
        _ => None,
    }
}

/// The candidate that splits the sample lines most consistently into more
/// than one field; a comma when nothing stands out.
fn guess(head: &str) -> u8 {
    let lines: Vec<&str> = logical_lines(head).take(SAMPLE_LINES).collect();
    let mut best = (b',', 0usize, 0usize);
    for candidate in CANDIDATES {
        let counts: Vec<usize> = lines.iter().map(|l| count_fields(l, candidate)).collect();
        let Some(&header) = counts.first() else {
            break;
        };
        if header < 2 {
            continue;
        }
        let agreeing = counts.iter().filter(|&&c| c == header).count();
        if (agreeing, header) > (best.1, best.2) {
            best = (candidate, agreeing, header);
        }
    }
    best.0
}

/// Lines of the sample, a quoted line break not ending one.
fn logical_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        for (i, c) in rest.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '\r' | '\n' if !quoted => {
                    let line = &rest[..i];
                    rest = rest[i + 1..].trim_start_matches(['\r', '\n']);
                    return Some(line);
                }
                _ => {}
            }
        }
        let line = rest;
        rest = "";
        Some(line)
    })
    .filter(|line| !line.trim().is_empty())
}

fn count_fields(line: &str, delimiter: u8) -> usize {
    let mut quoted = false;
    let mut fields = 1;
    for b in line.bytes() {
        if b == b'"' {
            quoted = !quoted;
        } else if b == delimiter && !quoted {
            fields += 1;
        }
    }
    fields
}

/// Parses `--delimiter`: one character, or the words `tab`, `comma`,
/// `semicolon` and `pipe`.
pub fn delimiter_named(name: &str) -> Option<u8> {
    match name.to_ascii_lowercase().as_str() {
        "tab" | "\\t" => Some(b'\t'),
        "comma" => Some(b','),
        "semicolon" => Some(b';'),
        "pipe" => Some(b'|'),
        _ => match name.as_bytes() {
            [d] if d.is_ascii() && *d != b'"' => Some(*d),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_sep_line_is_honoured() {
        let d = detect("sep=;\r\nid;name\r\nA;B\r\n", None);
        assert_eq!(
            d,
            Dialect {
                delimiter: b';',
                sep_line: true
            }
        );
    }

    #[test]
    fn semicolons_with_decimal_commas_are_found() {
        let d = detect(
            "id;name;due\r\nA;\"Doe; Jane\";1,20\r\nB;John;0,85\r\n",
            None,
        );
        assert_eq!(d.delimiter, b';');
    }

    #[test]
    fn tabs_and_pipes_are_found() {
        assert_eq!(detect("id\tname\nA\tB\n", None).delimiter, b'\t');
        assert_eq!(detect("id|name\nA|B\n", None).delimiter, b'|');
    }

    #[test]
    fn a_single_column_file_is_read_with_commas() {
        assert_eq!(detect("customer_id\nA\nB\n", None).delimiter, b',');
    }

    #[test]
    fn quoted_commas_do_not_win_over_the_real_delimiter() {
        let head = "id;address\n1;\"1, High St, Town\"\n2;\"2, Low Rd, Town\"\n";
        assert_eq!(detect(head, None).delimiter, b';');
    }

    #[test]
    fn a_forced_delimiter_wins() {
        assert_eq!(detect("a,b\n", Some(b';')).delimiter, b';');
        assert_eq!(delimiter_named("tab"), Some(b'\t'));
        assert_eq!(delimiter_named(";"), Some(b';'));
        assert_eq!(delimiter_named("ab"), None);
    }
}
