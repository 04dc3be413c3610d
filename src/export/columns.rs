//! Finding the supporter id among the export's columns.
//!
//! Mailrooms name the column in many ways (`Supporter ID`, ` Customer_ID `,
//! `customer encoded id`, ...). Names are compared after dropping case,
//! spaces, underscores and punctuation; `--id-column` settles anything the
//! guess cannot.

use std::fmt::Write;

/// Spellings of the id column, already normalised. The first tier is the
/// name JLP itself uses; the second holds what mailrooms call it.
const PREFERRED: &[&str] = &["customerencodedid", "encodedid", "encodedcustomerid"];
const COMMON: &[&str] = &[
    "customerid",
    "customerno",
    "customernumber",
    "customerref",
    "supporterid",
    "supporterno",
    "supporternumber",
    "supporterref",
    "donorid",
    "donornumber",
    "constituentid",
    "constituentnumber",
    "contactid",
    "memberid",
    "playerid",
];

/// Why the id column could not be settled; each names the fix.
#[derive(Debug, thiserror::Error)]
pub enum ColumnError {
    #[error("no column looks like the supporter id; {headers}; choose one with `--id-column NAME` or `--id-column N`")]
    NotFound { headers: String },
    #[error("several columns could hold the supporter id ({candidates}); {headers}; choose one with `--id-column NAME` or `--id-column N`")]
    Ambiguous { candidates: String, headers: String },
    #[error("the id column `{name}` appears {count} times in the header; {headers}; rename one, or choose by position with `--id-column N`")]
    Repeated {
        name: String,
        count: usize,
        headers: String,
    },
    #[error("`--id-column {given}` matches no column; {headers}")]
    NoSuchColumn { given: String, headers: String },
}

/// A header name as written, without the spaces (the non-breaking one
/// included) and byte order marks that spreadsheets leave around it.
pub fn clean_header(name: &str) -> String {
    name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}' || c == '\u{200b}')
        .to_string()
}

/// Lower-case letters and digits only: `" Customer_ID "` → `customerid`.
pub fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The 0-based index of the id column.
pub fn find_id_column(headers: &[String], chosen: Option<&str>) -> Result<usize, ColumnError> {
    match chosen {
        Some(given) => by_choice(headers, given),
        None => by_guess(headers),
    }
}

fn by_choice(headers: &[String], given: &str) -> Result<usize, ColumnError> {
    if let Ok(position) = given.trim().parse::<usize>() {
        if (1..=headers.len()).contains(&position) {
            return Ok(position - 1);
        }
    }
    let exact: Vec<usize> = positions(headers, |h| h == given.trim());
    let matches = if exact.is_empty() {
        let wanted = normalise(given);
        positions(headers, |h| normalise(h) == wanted)
    } else {
        exact
    };
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(ColumnError::NoSuchColumn {
            given: given.to_string(),
            headers: listing(headers),
        }),
        many => Err(ColumnError::Repeated {
            name: given.to_string(),
            count: many.len(),
            headers: listing(headers),
        }),
    }
}

fn by_guess(headers: &[String]) -> Result<usize, ColumnError> {
    for tier in [PREFERRED, COMMON, &["id"]] {
        let matches = positions(headers, |h| tier.contains(&normalise(h).as_str()));
        match matches.as_slice() {
            [] => continue,
            [one] => return Ok(*one),
            many => return Err(several(headers, many)),
        }
    }
    Err(ColumnError::NotFound {
        headers: listing(headers),
    })
}

/// Two columns with the same name are a repeat; different names an
/// ambiguity.
fn several(headers: &[String], many: &[usize]) -> ColumnError {
    let first = normalise(&headers[many[0]]);
    if many.iter().all(|&i| normalise(&headers[i]) == first) {
        return ColumnError::Repeated {
            name: headers[many[0]].clone(),
            count: many.len(),
            headers: listing(headers),
        };
    }
    let candidates = many
        .iter()
        .map(|&i| format!("`{}`", headers[i]))
        .collect::<Vec<_>>()
        .join(", ");
    ColumnError::Ambiguous {
        candidates,
        headers: listing(headers),
    }
}

fn positions(headers: &[String], keep: impl Fn(&str) -> bool) -> Vec<usize> {
    (0..headers.len()).filter(|&i| keep(&headers[i])).collect()
}

/// `the header holds: 1 `name`, 2 `id``, for messages.
fn listing(headers: &[String]) -> String {
    let mut out = String::from("the header holds:");
    for (i, h) in headers.iter().enumerate() {
        let _ = write!(out, " {} `{}`", i + 1, h);
        if i + 1 < headers.len() {
            out.push(',');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| clean_header(n)).collect()
    }

    #[test]
    fn spellings_mailrooms_use_are_found() {
        for name in [
            " Customer_ID ",
            "Supporter ID",
            "supporter number",
            "Donor-ID",
            "CONSTITUENT ID",
            "customer encoded id",
            "\u{feff}customer_encoded_id",
            "\u{a0}Supporter ID\u{a0}",
        ] {
            let h = headers(&["Name", name, "Reason"]);
            assert_eq!(find_id_column(&h, None).unwrap(), 1, "{name:?}");
        }
    }

    #[test]
    fn jlp_own_name_wins_over_a_mailroom_name() {
        let h = headers(&["customer_id", "customer_encoded_id"]);
        assert_eq!(find_id_column(&h, None).unwrap(), 1);
    }

    #[test]
    fn two_candidates_are_refused_with_the_headers_listed() {
        let h = headers(&["Supporter ID", "Donor ID"]);
        let err = find_id_column(&h, None).unwrap_err().to_string();
        assert!(err.contains("`Supporter ID`, `Donor ID`"), "{err}");
        assert!(err.contains("--id-column"), "{err}");
    }

    #[test]
    fn a_repeated_id_column_is_refused() {
        let h = headers(&["customer_id", "name", "Customer ID"]);
        let err = find_id_column(&h, None).unwrap_err();
        assert!(
            matches!(err, ColumnError::Repeated { count: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn no_candidate_lists_what_was_found() {
        let h = headers(&["name", "reason"]);
        let err = find_id_column(&h, None).unwrap_err().to_string();
        assert!(err.contains("1 `name`, 2 `reason`"), "{err}");
    }

    #[test]
    fn the_flag_takes_a_name_or_a_position() {
        let h = headers(&["name", "Ref", "reason"]);
        assert_eq!(find_id_column(&h, Some("ref")).unwrap(), 1);
        assert_eq!(find_id_column(&h, Some("Ref")).unwrap(), 1);
        assert_eq!(find_id_column(&h, Some("3")).unwrap(), 2);
        assert!(find_id_column(&h, Some("9")).is_err());
    }
}
