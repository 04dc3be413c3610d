//! Reading the exports mailrooms actually produce: encodings, dialects,
//! header spellings, broken rows and workbooks.

mod common;

use common::{rts_paths, statuses, Server, Work};

/// One returned-mail export, as rows of cells.
const EXPORT: [[&str; 4]; 6] = [
    ["Supporter ID", "Name", "Postage", "Reason"],
    [
        "AB12-CD34-EF56-GH78",
        "Renée Dupont",
        "£1.20",
        "Addressee unknown",
    ],
    ["QR34-ST56-UV78-WX90", "Zoë Müller", "£0.85", "Moved away"],
    ["", "Blank Id", "£0.10", "Refused"],
    [
        "AB12-CD34-EF56-GH78",
        "Renée Dupont",
        "£1.20",
        "Addressee unknown",
    ],
    ["KL56-MN78-OP90-QR12", "Doe, Jane", "£2.00", "Refused"],
];

fn delimited(delimiter: char, line_end: &str) -> String {
    EXPORT
        .iter()
        .map(|row| {
            row.iter()
                .map(|cell| {
                    if cell.contains(delimiter) {
                        format!("\"{cell}\"")
                    } else {
                        cell.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(&delimiter.to_string())
        })
        .map(|line| line + line_end)
        .collect()
}

fn utf16le(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    bytes
}

fn windows_1252(text: &str) -> Vec<u8> {
    encoding_rs::WINDOWS_1252.encode(text).0.into_owned()
}

/// A minimal `.xlsx` workbook holding `rows` as text cells.
fn xlsx(rows: &[[&str; 4]]) -> Vec<u8> {
    let mut cells = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate().filter(|(_, cell)| !cell.is_empty()) {
            cells.push((
                format!("{}{}", (b'A' + c as u8) as char, r + 1),
                cell.to_string(),
            ));
        }
    }
    xlsx_cells(&cells)
}

/// A minimal `.xlsx` workbook with text in the cells named, in row order.
fn xlsx_cells(cells: &[(String, String)]) -> Vec<u8> {
    use std::io::Write;
    const MAIN: &str = "http://schemas.openxmlformats.org/spreadsheetml/2006/main";
    const RELS: &str = "http://schemas.openxmlformats.org/package/2006/relationships";
    const DOC: &str = "http://schemas.openxmlformats.org/officeDocument/2006/relationships";
    let mut sheet =
        format!(r#"<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>"#);
    let mut open_row = String::new();
    for (reference, text) in cells {
        let row: String = reference.chars().filter(char::is_ascii_digit).collect();
        if row != open_row {
            if !open_row.is_empty() {
                sheet.push_str("</row>");
            }
            sheet.push_str(&format!(r#"<row r="{row}">"#));
            open_row = row;
        }
        sheet.push_str(&format!(
            r#"<c r="{reference}" t="inlineStr"><is><t>{text}</t></is></c>"#
        ));
    }
    if !open_row.is_empty() {
        sheet.push_str("</row>");
    }
    sheet.push_str("</sheetData></worksheet>");
    let parts = [
        (
            "[Content_Types].xml",
                r#"<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELS}"><Relationship Id="rId1" Type="{DOC}/officeDocument" Target="xl/workbook.xml"/></Relationships>"#
            ),
        ),
        (
            "xl/workbook.xml",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{DOC}"><sheets><sheet name="Returns" sheetId="1" r:id="rId1"/></sheets></workbook>"#
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            format!(
                r#"<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{RELS}"><Relationship Id="rId1" Type="{DOC}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#
            ),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, text) in parts {
        zip.start_file(name, options).unwrap();
        zip.write_all(text.as_bytes()).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

#[test]
fn the_same_export_saved_five_ways_gives_the_same_outcomes() {
    let forms: Vec<(&str, Vec<u8>)> = vec![
        (
            "bom-semicolons.csv",
            [
                b"\xEF\xBB\xBF".as_slice(),
                delimited(';', "\r\n").as_bytes(),
            ]
            .concat(),
        ),
        ("windows-1252.csv", windows_1252(&delimited(',', "\r\n"))),
        ("unicode-text.txt", utf16le(&delimited('\t', "\r\n"))),
        ("plain-lf.csv", delimited(',', "\n").into_bytes()),
        ("workbook.xlsx", xlsx(&EXPORT)),
    ];
    for (name, bytes) in forms {
        let server = Server::default();
        let work = Work::new();
        work.write(name, bytes);

        let run = work.submit(name, &server, &[]);

        assert_eq!(run.code, 1, "{name}: {}", run.all());
        let results = name.rsplit_once('.').unwrap().0.to_string() + ".results.csv";
        let rows = work.results(&results);
        assert_eq!(
            statuses(&rows),
            ["accepted", "accepted", "invalid", "duplicate", "accepted"],
            "{name}"
        );
        assert_eq!(rows[0]["Name"], "Renée Dupont", "{name}");
        assert_eq!(rows[1]["Name"], "Zoë Müller", "{name}");
        assert_eq!(rows[0]["Postage"], "£1.20", "{name}");
        assert_eq!(rows[4]["Name"], "Doe, Jane", "{name}");
        assert_eq!(server.stats().accepted.len(), 3, "{name}");
    }
}

#[test]
fn utf16_big_endian_with_a_bom_is_read() {
    let server = Server::default();
    let work = Work::new();
    let mut bytes = vec![0xFE, 0xFF];
    bytes.extend(
        delimited('\t', "\r\n")
            .encode_utf16()
            .flat_map(u16::to_be_bytes),
    );
    work.write("be.txt", bytes);

    let run = work.submit("be.txt", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(work.results("be.results.csv")[1]["Name"], "Zoë Müller");
}

#[test]
fn windows_1252_is_announced_once_and_can_be_overridden() {
    let work = Work::new();
    work.write("w.csv", windows_1252(&delimited(',', "\r\n")));

    let run = work.run(&["check", "w.csv"], &[]);
    assert!(run.stdout.contains("windows-1252"), "{}", run.stdout);

    let run = work.run(&["check", "w.csv", "--encoding", "iso-8859-15"], &[]);
    assert!(run.stdout.contains("ISO-8859-15"), "{}", run.stdout);
}

#[test]
fn messages_name_the_record_and_physical_line_on_every_line_end() {
    for end in ["\r\n", "\n", "\r"] {
        let text = format!(
            "customer_id,address{end}AB12-CD34-EF56-GH78,\"Flat 2{end}10 High St\"{end}{end},No id{end}QR34-ST56-UV78-WX90,x{end}"
        );
        let work = Work::new();
        work.write("r.csv", text);

        let run = work.run(&["check", "r.csv"], &[]);

        assert_eq!(run.code, 1, "{end:?}: {}", run.all());
        assert!(
            run.stdout.contains("record 2 (line 5): the id is empty"),
            "{end:?}: {}",
            run.stdout
        );
    }
}

#[test]
fn trailing_empty_columns_and_short_rows_are_tolerated() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        "customer_id,name,reason,,\r\nAB12-CD34-EF56-GH78,Jane,Moved,,\r\nQR34-ST56-UV78-WX90\r\n",
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 0, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted"]);
    assert_eq!(rows[1]["name"], "");
}

#[test]
fn unusable_ids_are_invalid_with_a_reason_and_never_sent() {
    let server = Server::default();
    let work = Work::new();
    let long = "A".repeat(65);
    work.write(
        "r.csv",
        format!("customer_id,name\nAB12-CD34-EF56-GH78,ok\n1.23457E+11,sci\n123456.0,point zero\nAB 12,space\n{long},long\nA\u{7}B,bell\n"),
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(
        statuses(&rows),
        ["accepted", "invalid", "invalid", "invalid", "invalid", "invalid"]
    );
    assert!(
        rows[1]["rts_message"].contains("Text"),
        "{}",
        rows[1]["rts_message"]
    );
    assert!(
        rows[2]["rts_message"].contains("spreadsheet"),
        "{}",
        rows[2]["rts_message"]
    );
    assert!(
        rows[3]["rts_message"].contains("space"),
        "{}",
        rows[3]["rts_message"]
    );
    assert!(
        rows[4]["rts_message"].contains("65 characters"),
        "{}",
        rows[4]["rts_message"]
    );
    assert!(
        rows[5]["rts_message"].contains("control character"),
        "{}",
        rows[5]["rts_message"]
    );
    assert_eq!(rts_paths(&server.stats()).len(), 1);
}

#[test]
fn an_oversized_field_makes_only_its_row_invalid() {
    let server = Server::default();
    let work = Work::new();
    let huge = "x".repeat(70 * 1024);
    work.write(
        "r.csv",
        format!("customer_id,note\nAB12-CD34-EF56-GH78,{huge}\nQR34-ST56-UV78-WX90,fine\n"),
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(statuses(&rows), ["invalid", "accepted"]);
    assert!(
        rows[0]["rts_message"].contains("64 KiB"),
        "{}",
        rows[0]["rts_message"]
    );
}

#[test]
fn ambiguous_missing_or_repeated_id_columns_stop_with_the_headers_listed() {
    let cases = [
        ("Supporter ID,Donor ID\nA,B\n", "several columns"),
        ("name,reason\nA,B\n", "no column looks like"),
        ("customer_id,name,Customer ID\nA,B,C\n", "appears 2 times"),
    ];
    for (text, expected) in cases {
        let work = Work::new();
        work.write("r.csv", text);

        let run = work.run(&["submit", "r.csv", "--dry-run"], &[]);

        assert_eq!(run.code, 2, "{text:?}: {}", run.all());
        assert!(run.stderr.contains(expected), "{text:?}: {}", run.stderr);
        assert!(run.stderr.contains("--id-column"), "{}", run.stderr);
        assert!(
            run.stderr.contains("the header holds: 1 `"),
            "{}",
            run.stderr
        );
        assert!(!work.path("r.results.csv").exists());
    }
}

#[test]
fn the_id_column_can_be_chosen_by_name_or_position() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", "Ref,Other Ref\nAB12-CD34-EF56-GH78,X\n");

    let by_name = work.submit(
        "r.csv",
        &server,
        &["--id-column", "ref", "--results", "a.csv"],
    );
    let by_position = work.submit(
        "r.csv",
        &server,
        &["--id-column", "1", "--results", "b.csv"],
    );

    assert_eq!(by_name.code, 0, "{}", by_name.all());
    assert_eq!(by_position.code, 0, "{}", by_position.all());
    assert_eq!(server.stats().accepted["AB12-CD34-EF56-GH78"], 2);
}

#[test]
fn a_file_without_a_header_needs_the_column_position() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        "AB12-CD34-EF56-GH78,Jane\nQR34-ST56-UV78-WX90,John\n",
    );

    let refused = work.submit("r.csv", &server, &["--no-header"]);
    let run = work.submit("r.csv", &server, &["--no-header", "--id-column", "1"]);

    assert_eq!(refused.code, 2, "{}", refused.all());
    assert_eq!(run.code, 0, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(rows[0]["column_1"], "AB12-CD34-EF56-GH78");
    assert_eq!(rows.len(), 2);
}

#[test]
fn pipes_are_detected_and_a_delimiter_can_be_forced() {
    let work = Work::new();
    work.write("p.csv", "customer_id|name\nAB12-CD34-EF56-GH78|Jane\n");
    work.write("s.csv", "customer_id;name\nAB12-CD34-EF56-GH78;Jane\n");

    let detected = work.run(&["check", "p.csv"], &[]);
    let forced = work.run(
        &["check", "s.csv", "--delimiter", "comma", "--id-column", "1"],
        &[],
    );

    assert!(
        detected.stdout.contains("delimiter:   `|`"),
        "{}",
        detected.stdout
    );
    assert!(
        forced.stdout.contains("delimiter:   `,`"),
        "{}",
        forced.stdout
    );
}

#[test]
fn non_breaking_spaces_around_headers_are_trimmed() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        "\u{a0}Supporter Number\u{a0},Name\nAB12-CD34-EF56-GH78,Jane\n",
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert!(work.results("r.results.csv")[0].contains_key("Supporter Number"));
}

#[test]
fn check_reports_what_it_detected_and_the_first_problems() {
    let work = Work::new();
    work.copy("tests/cases/B04-semicolon-sep-line.csv");
    work.write(
        "bad.csv",
        "customer_id,name\nAB12-CD34-EF56-GH78,Jane\n,None\nAB12-CD34-EF56-GH78,Again\n",
    );

    let good = work.run(&["check", "B04-semicolon-sep-line.csv"], &[]);
    let bad = work.run(&["check", "bad.csv"], &[]);

    assert_eq!(good.code, 0, "{}", good.all());
    for expected in [
        "encoding:    UTF-8",
        "delimiter:   `;` (from the `sep=` line)",
        "id column:   customer_id (column 1)",
        "to send:   2",
    ] {
        assert!(
            good.stdout.contains(expected),
            "{expected}: {}",
            good.stdout
        );
    }
    assert_eq!(bad.code, 1, "{}", bad.all());
    assert!(
        bad.stdout.contains("record 2 (line 3): the id is empty"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout
            .contains("record 3 (line 4): the same id as record 1"),
        "{}",
        bad.stdout
    );
}

#[test]
fn a_workbook_sheet_can_be_chosen_and_a_missing_one_is_named() {
    let work = Work::new();
    work.write("w.xlsx", xlsx(&EXPORT));

    let chosen = work.run(&["check", "w.xlsx", "--sheet", "Returns"], &[]);
    let missing = work.run(&["check", "w.xlsx", "--sheet", "Nope"], &[]);

    assert!(
        chosen.stdout.contains("sheet:       Returns"),
        "{}",
        chosen.all()
    );
    assert_eq!(missing.code, 2, "{}", missing.all());
    assert!(missing.stderr.contains("Returns"), "{}", missing.stderr);
}

#[test]
fn utf16_without_a_byte_order_mark_is_recognised() {
    let work = Work::new();
    let bytes: Vec<u8> = delimited('\t', "\r\n")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    work.write("nobom.txt", bytes);

    let run = work.run(&["check", "nobom.txt"], &[]);

    assert!(run.stdout.contains("UTF-16LE"), "{}", run.stdout);
    assert!(
        run.stdout.contains("id column:   Supporter ID"),
        "{}",
        run.stdout
    );
}

#[test]
fn ids_mangled_by_a_spreadsheet_with_decimal_commas_are_caught() {
    let work = Work::new();
    work.write(
        "r.csv",
        "sep=;\r\ncustomer_id;name\r\n1,23457E+11;a\r\n123456,0;b\r\nAB12-CD34-EF56-GH78;c\r\n",
    );

    let run = work.run(&["check", "r.csv"], &[]);

    assert!(run.stdout.contains("invalid:   2"), "{}", run.stdout);
    assert!(run.stdout.contains("as Text"), "{}", run.stdout);
}

#[test]
fn a_workbook_with_a_far_away_cell_is_read_without_a_huge_allocation() {
    let server = Server::default();
    let work = Work::new();
    let cells = [
        ("A1", "customer_id"),
        ("B1", "name"),
        ("A2", "AB12-CD34-EF56-GH78"),
        ("B2", "Jane"),
        ("XFD200000", "stray"),
    ]
    .map(|(r, t)| (r.to_string(), t.to_string()));
    work.write("far.xlsx", xlsx_cells(&cells));

    let run = work.submit("far.xlsx", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("far.results.csv");
    assert_eq!(rows[0]["rts_status"], "accepted");
    assert_eq!(
        rows.len(),
        2,
        "blank rows are skipped; the stray cell's row is invalid"
    );
    assert_eq!(rows[1]["rts_row"], "199999");
}
