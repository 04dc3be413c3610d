//! Every real-world case file behaves as its README says; each test is
//! named after its case.

mod common;

use common::{count, rts_paths, statuses, Server, Work};

fn run_case(name: &str) -> (Work, Server, common::Run) {
    let server = Server::default();
    let work = Work::new();
    work.copy(&format!("tests/cases/{name}"));
    let run = work.submit(name, &server, &[]);
    (work, server, run)
}

fn results_of(work: &Work, case: &str) -> Vec<std::collections::HashMap<String, String>> {
    work.results(&case.replace(".csv", ".results.csv"))
}

#[test]
fn b01_a_bom_does_not_stick_to_the_first_header() {
    let (work, server, run) = run_case("B01-bom-header.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B01-bom-header.csv");
    assert!(rows[0].contains_key("customer_id"), "{:?}", rows[0].keys());
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(server.events(), 2);
}

#[test]
fn b02_excel_unicode_text_is_decoded_and_split_on_tabs() {
    let (work, server, run) = run_case("B02-utf16le-unicode-text.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B02-utf16le-unicode-text.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(rows[0]["name"], "Renée Dupont");
    let stats = server.stats();
    let mut ids: Vec<&String> = stats.accepted.keys().collect();
    ids.sort();
    assert_eq!(ids, ["AB12-CD34-EF56-GH78", "QR34-ST56-UV78-WX90"]);
    assert!(stats
        .paths
        .iter()
        .all(|p| !p.contains('\0') && !p.contains("%00")));
}

#[test]
fn b03_windows_1252_is_settled_before_sending_and_written_as_utf8() {
    let (work, server, run) = run_case("B03-windows1252-accents-pound.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B03-windows1252-accents-pound.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(rows[0]["name"], "Renée Dupont");
    assert_eq!(rows[0]["postage_due"], "£1.20");
    assert_eq!(rows[1]["name"], "Zoë Müller");
    let text =
        std::fs::read_to_string(work.path("B03-windows1252-accents-pound.results.csv")).unwrap();
    assert!(!text.contains('\u{fffd}'));
    assert_eq!(server.events(), 2);
}

#[test]
fn b04_an_excel_sep_line_is_honoured_not_taken_as_the_header() {
    let (work, _server, run) = run_case("B04-semicolon-sep-line.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B04-semicolon-sep-line.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(rows[0]["postage_due"], "1,20");
    assert_eq!(rows[1]["name"], "Dupont; Renée");
    assert_eq!(rows[0]["rts_row"], "1");
}

#[test]
fn b07_comma_only_rows_are_skipped_and_counted_as_blank() {
    let (work, server, run) = run_case("B07-excel-comma-only-rows.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B07-excel-comma-only-rows.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert!(run.stdout.contains("blank rows: 3"), "{}", run.stdout);
    assert_eq!(server.events(), 2);
}

#[test]
fn b10_a_shifted_row_is_invalid_with_both_field_counts() {
    let (work, server, run) = run_case("B10-extra-field-unquoted-comma.csv");
    assert_eq!(run.code, 1, "{}", run.all());
    let rows = results_of(&work, "B10-extra-field-unquoted-comma.csv");
    assert_eq!(statuses(&rows), ["invalid", "accepted"]);
    let message = &rows[0]["rts_message"];
    assert!(
        message.contains("4 fields") && message.contains("header has 3"),
        "{message}"
    );
    assert_eq!(rts_paths(&server.stats()).len(), 1);
}

#[test]
fn b11_quoted_line_breaks_and_doubled_quotes_make_two_records() {
    let (work, _server, run) = run_case("B11-quoted-newline-doubled-quotes.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B11-quoted-newline-doubled-quotes.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(rows[0]["address"], "Flat 2\r\n10 High Street");
    assert_eq!(rows[0]["return_reason"], "Marked \"gone away\" by carrier");
    assert_eq!(rows[0]["rts_row"], "1");
    assert_eq!(rows[1]["rts_row"], "2");
}

#[test]
fn b12_an_unclosed_quote_stops_before_anything_is_sent() {
    let (work, server, run) = run_case("B12-unbalanced-quote.csv");
    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("record 1"), "{}", run.stderr);
    assert!(run.stderr.contains("line 2"), "{}", run.stderr);
    assert!(
        server.stats().paths.is_empty(),
        "nothing may be sent, not even a login"
    );
    assert!(!work.path("B12-unbalanced-quote.results.csv").exists());
}

#[test]
fn b15_the_id_column_is_found_whatever_its_case_and_spaces() {
    let (work, _server, run) = run_case("B15-header-case-spaces.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B15-header-case-spaces.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
}

#[test]
fn b41_ids_that_could_change_the_path_are_never_sent() {
    let (work, server, run) = run_case("B41-id-path-injection.csv");
    assert_eq!(run.code, 1, "{}", run.all());
    let rows = results_of(&work, "B41-id-path-injection.csv");
    assert_eq!(
        statuses(&rows),
        ["accepted", "invalid", "invalid", "invalid", "invalid"]
    );
    let stats = server.stats();
    assert_eq!(
        stats.paths,
        [
            "/api-admin/login",
            "/api-admin/customer/AB12-CD34-EF56-GH78/communication/rts"
        ]
    );
}

#[test]
fn b45_formula_shaped_values_are_sent_unchanged_and_written_as_text() {
    let (work, server, run) = run_case("B45-formula-injection.csv");
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = results_of(&work, "B45-formula-injection.csv");
    assert_eq!(count(&rows, "accepted"), 3);
    assert_eq!(server.stats().accepted.len(), 3);
    for row in &rows {
        for (column, cell) in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{column} = {cell:?} would be a formula"
            );
        }
    }
    assert_eq!(rows[1]["name"], "'+1+1");
}
