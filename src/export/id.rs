//! What counts as a usable supporter id.
//!
//! JLP ids are opaque strings, but some values can never be one: empty
//! cells, values with spaces or URL punctuation inside, and ids that a
//! spreadsheet silently turned into a number. Each is refused with a reason
//! a person can act on, before anything is sent.

/// Longest id accepted, in characters.
pub const MAX_ID_CHARS: usize = 64;

/// The id with surrounding spaces removed, or why it cannot be sent.
pub fn check_id(raw: &str) -> Result<&str, String> {
    let id = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}' || c == '\u{200b}');

    if id.is_empty() {
        return Err("the id is empty".into());
    }
    if looks_converted(id) {
        return Err(format!(
            "the id `{id}` looks like a number a spreadsheet converted it into; \
             format the id column as Text before saving, or export it again from JLP"
        ));
    }
    let length = id.chars().count();
    if length > MAX_ID_CHARS {
        return Err(format!(
            "the id is {length} characters long; JLP ids are at most {MAX_ID_CHARS}"
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control() || invisible(*c)) {
        return Err(format!(
            "the id holds a control character (U+{:04X}); retype it",
            u32::from(c)
        ));
    }
    if id.chars().any(char::is_whitespace) {
        return Err(format!("the id `{id}` has a space inside it"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| matches!(c, '/' | '\\' | '?' | '#' | '%'))
    {
        return Err(format!(
            "the id `{id}` holds `{c}`, which is never part of a JLP id"
        ));
    }
    if id.chars().all(|c| c == '.') {
        return Err(format!("the id `{id}` is only dots"));
    }
    Ok(id)
}

/// Characters that print as nothing: a pasted id can carry them unseen.
fn invisible(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

/// `1.23457E+11`, `123456.0` (or `1,23457E+11`, `123456,0` where the
/// decimal mark is a comma): what a spreadsheet makes of a long
/// numeric-looking id.
fn looks_converted(id: &str) -> bool {
    let unsigned = id.strip_prefix('-').unwrap_or(id);
    scientific(unsigned) || trailing_point_zero(unsigned)
}

fn scientific(id: &str) -> bool {
    let Some((mantissa, exponent)) = id.split_once(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    let (whole, fraction) = mantissa.split_once(['.', ',']).unwrap_or((mantissa, "0"));
    all_digits(whole) && all_digits(fraction) && all_digits(exponent)
}

fn trailing_point_zero(id: &str) -> bool {
    match id.split_once(['.', ',']) {
        Some((whole, zeros)) => {
            all_digits(whole) && !zeros.is_empty() && zeros.bytes().all(|b| b == b'0')
        }
        None => false,
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jlp_id_passes_trimmed() {
        assert_eq!(
            check_id(" AB12-CD34-EF56-GH78\u{a0}"),
            Ok("AB12-CD34-EF56-GH78")
        );
    }

    #[test]
    fn unusable_ids_say_why() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("AB12 CD34", "space inside"),
            ("../../admin", "`/`"),
            ("AB%2F..", "`%`"),
            ("QR34?force=true", "`?`"),
            ("QR34#frag", "`#`"),
            ("AB\u{0}CD", "control character"),
            ("..", "only dots"),
            ("1.23457E+11", "spreadsheet"),
            ("123456789012.0", "spreadsheet"),
            ("1,23457E+11", "spreadsheet"),
            ("123456,0", "spreadsheet"),
            ("-1.5E-3", "spreadsheet"),
            ("AB\u{200b}CD", "control character"),
        ];
        for (id, reason) in cases {
            let err = check_id(id).unwrap_err();
            assert!(err.contains(reason), "{id:?}: {err}");
        }
        assert!(check_id(&"A".repeat(65))
            .unwrap_err()
            .contains("65 characters"));
        assert!(check_id(&"A".repeat(64)).is_ok());
    }

    #[test]
    fn ids_that_merely_contain_digits_and_letters_pass() {
        for id in ["12E4-AB", "1E5X", "2026.12", "AB12.0C"] {
            assert!(check_id(id).is_ok(), "{id}");
        }
    }
}
