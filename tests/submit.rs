//! The main job end to end: the real binary against the simulated JLP over
//! loopback HTTP, the results file read back and checked row by row.

mod common;

use common::{count, rts_paths, statuses, unknown, Server, Work};
use jlp_rts::sandbox::SandboxConfig;

const HEADER: &str = "customer_encoded_id,name,return_reason\r\n";

fn export(rows: &[&str]) -> String {
    let mut text = HEADER.to_string();
    for row in rows {
        text.push_str(row);
        text.push_str("\r\n");
    }
    text
}

#[test]
fn every_row_accepted_gives_exit_0_and_every_column_in_the_results() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "returns.csv",
        export(&[
            "AB12-CD34-EF56-GH78,\"Doe, Jane\",Moved away",
            "QR34-ST56-UV78-WX90,John Roe,Refused",
        ]),
    );

    let run = work.submit("returns.csv", &server, &[]);

    assert_eq!(run.code, 0, "{}", run.all());
    let rows = work.results("returns.results.csv");
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first["customer_encoded_id"], "AB12-CD34-EF56-GH78");
    assert_eq!(first["name"], "Doe, Jane");
    assert_eq!(first["return_reason"], "Moved away");
    assert_eq!(first["rts_row"], "1");
    assert_eq!(first["rts_status"], "accepted");
    assert_eq!(first["rts_http_status"], "202");
    assert_eq!(first["rts_error_code"], "");
    assert_eq!(first["rts_message"], "");
    assert_eq!(first["rts_attempts"], "1");
    assert!(
        humantime::parse_rfc3339(&first["rts_at"]).is_ok(),
        "{}",
        first["rts_at"]
    );
    assert!(first["rts_at"].ends_with('Z'));
    assert_eq!(rows[1]["rts_row"], "2");
    assert_eq!(rows[1]["name"], "John Roe");
    assert_eq!(server.events(), 2);
    assert!(run.stdout.contains("accepted:   2"), "{}", run.stdout);
}

#[test]
fn results_columns_are_the_input_columns_then_the_rts_columns() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));

    work.submit("r.csv", &server, &[]);

    let text = std::fs::read_to_string(work.path("r.results.csv")).unwrap();
    let header = text.lines().next().unwrap();
    assert_eq!(
        header,
        "\u{feff}customer_encoded_id,name,return_reason,rts_row,rts_status,rts_http_status,\
         rts_error_code,rts_message,rts_attempts,rts_at"
    );
}

#[test]
fn unknown_customers_fail_with_the_api_code_and_message() {
    let server = Server::start(unknown(&["ZZ99-ZZ99-ZZ99-ZZ99"]));
    let work = Work::new();
    work.write(
        "r.csv",
        export(&[
            "AB12-CD34-EF56-GH78,Jane,Moved",
            "ZZ99-ZZ99-ZZ99-ZZ99,Nobody,Refused",
        ]),
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(statuses(&rows), ["accepted", "failed"]);
    assert_eq!(rows[1]["rts_http_status"], "404");
    assert_eq!(rows[1]["rts_error_code"], "customer_not_found");
    assert_eq!(rows[1]["rts_message"], "No customer has this id.");
    assert_eq!(rows[1]["rts_attempts"], "1", "a 404 is not retried");
}

#[test]
fn blank_ids_are_invalid_and_never_sent() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        export(&[
            "AB12-CD34-EF56-GH78,Jane,Moved",
            "  ,No Id,Refused",
            ",Also none,Moved",
        ]),
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(statuses(&rows), ["accepted", "invalid", "invalid"]);
    assert!(
        rows[1]["rts_message"].contains("empty"),
        "{}",
        rows[1]["rts_message"]
    );
    assert!(
        rows[1]["rts_message"].contains("line 3"),
        "{}",
        rows[1]["rts_message"]
    );
    assert_eq!(rows[1]["rts_attempts"], "0");
    assert_eq!(rts_paths(&server.stats()).len(), 1);
}

#[test]
fn repeated_ids_are_duplicates_and_sent_once() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        export(&[
            "AB12-CD34-EF56-GH78,Jane,Moved",
            "QR34-ST56-UV78-WX90,John,Refused",
            " AB12-CD34-EF56-GH78 ,Jane again,Moved",
        ]),
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(
        run.code,
        0,
        "duplicates alone are not a failure: {}",
        run.all()
    );
    let rows = work.results("r.results.csv");
    assert_eq!(statuses(&rows), ["accepted", "accepted", "duplicate"]);
    assert!(
        rows[2]["rts_message"].contains("row 1"),
        "{}",
        rows[2]["rts_message"]
    );
    assert_eq!(server.stats().accepted["AB12-CD34-EF56-GH78"], 1);
}

#[test]
fn refused_credentials_exit_3_with_the_api_message() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));
    let url = server.url();

    let run = work.run(
        &["submit", "r.csv", "--base-url", &url],
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "wrong")],
    );

    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr
            .contains("The username or password you entered is incorrect."),
        "{}",
        run.stderr
    );
    assert!(
        !run.all().contains("wrong"),
        "the password must not be echoed: {}",
        run.all()
    );
    assert!(rts_paths(&server.stats()).is_empty());
}

#[test]
fn an_account_without_the_rts_capability_exits_3() {
    let server = Server::start(SandboxConfig {
        capability: false,
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 3, "{}", run.all());
    assert!(
        run.stderr.contains("customer.communication_rts"),
        "{}",
        run.stderr
    );
    assert!(rts_paths(&server.stats()).is_empty());
}

#[test]
fn a_missing_input_file_exits_2_naming_it() {
    let server = Server::default();
    let work = Work::new();

    let run = work.submit("nowhere.csv", &server, &[]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("nowhere.csv"), "{}", run.stderr);
    assert!(server.stats().paths.is_empty(), "nothing may be sent");
}

#[test]
fn an_existing_results_file_is_never_overwritten() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));
    work.write("r.results.csv", "keep me");

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("--resume"), "{}", run.stderr);
    assert_eq!(
        std::fs::read_to_string(work.path("r.results.csv")).unwrap(),
        "keep me"
    );
    assert!(server.stats().paths.is_empty());
}

#[test]
fn results_go_where_results_says() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));

    let run = work.submit("r.csv", &server, &["--results", "out/elsewhere.csv"]);

    assert_eq!(run.code, 2, "a missing folder is an error: {}", run.all());
    std::fs::create_dir(work.path("out")).unwrap();
    let run = work.submit("r.csv", &server, &["--results", "out/elsewhere.csv"]);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(work.results("out/elsewhere.csv").len(), 1);
    assert!(!work.path("r.results.csv").exists());
}

/// An Excel export of 400 supporters' rows (20 of them unknown to the
/// server, 4 with blank ids) plus 6 repeated rows.
#[test]
fn a_400_row_export_records_each_event_exactly_once() {
    let mut rows = Vec::new();
    let mut unknown_ids = Vec::new();
    for i in 0..396 {
        let id = format!(
            "AB{:02}-CD{:02}-EF{:02}-GH{:02}",
            i / 1000,
            i / 100 % 10,
            i / 10 % 10,
            i % 10
        );
        let id = format!("{id}{i:03}");
        if i % 19 == 0 && unknown_ids.len() < 20 {
            unknown_ids.push(id.clone());
        }
        rows.push(format!("{id},\"Supporter {i}, Esq.\",Moved away"));
    }
    for i in 0..4 {
        rows.insert(50 + i * 60, format!(",Blank Id {i},Refused"));
    }
    for i in 0..6 {
        let repeat = rows[11 + i * 30].clone();
        rows.push(repeat);
    }
    assert_eq!(rows.len(), 406);
    assert_eq!(unknown_ids.len(), 20);
    let unknown_refs: Vec<&str> = unknown_ids.iter().map(String::as_str).collect();
    let server = Server::start(unknown(&unknown_refs));
    let work = Work::new();
    let refs: Vec<&str> = rows.iter().map(String::as_str).collect();
    work.write("big.csv", format!("\u{feff}{}", export(&refs)));

    let run = work.submit("big.csv", &server, &["--concurrency", "16"]);

    assert_eq!(run.code, 1, "{}", run.all());
    let results = work.results("big.results.csv");
    assert_eq!(results.len(), 406);
    assert_eq!(count(&results, "accepted"), 376);
    assert_eq!(count(&results, "failed"), 20);
    assert_eq!(count(&results, "invalid"), 4);
    assert_eq!(count(&results, "duplicate"), 6);
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 376);
    assert!(
        stats.accepted.values().all(|n| *n == 1),
        "an event was recorded twice"
    );
    let numbers: Vec<u64> = results
        .iter()
        .map(|r| r["rts_row"].parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (1..=406).collect::<Vec<_>>(),
        "results are in input order"
    );
}

#[test]
fn dry_run_sends_nothing_not_even_a_login() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        export(&["AB12-CD34-EF56-GH78,Jane,Moved", ",Blank,Moved"]),
    );

    let run = work.submit("r.csv", &server, &["--dry-run"]);

    assert_eq!(run.code, 1, "{}", run.all());
    assert!(server.stats().paths.is_empty());
    assert_eq!(statuses(&work.results("r.results.csv")), ["invalid"]);
    assert!(run.stdout.contains("--resume"), "{}", run.stdout);

    let run = work.submit("r.csv", &server, &["--resume"]);
    assert_eq!(run.code, 1, "{}", run.all());
    assert_eq!(
        statuses(&work.results("r.results.csv")),
        ["accepted", "invalid"]
    );
}

#[test]
fn dry_run_needs_no_credentials() {
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved"]));

    let run = work.run(&["submit", "r.csv", "--dry-run"], &[]);

    assert_eq!(run.code, 0, "{}", run.all());
}

#[test]
fn the_shipped_sample_runs_against_the_built_in_sandbox() {
    let work = Work::new();
    work.copy("samples/returned-mail-2026-12-03.csv");

    let run = work.run(
        &["submit", "returned-mail-2026-12-03.csv", "--sandbox"],
        &[],
    );

    assert_eq!(run.code, 0, "{}", run.all());
    let rows = work.results("returned-mail-2026-12-03.sandbox.results.csv");
    assert!(rows.len() >= 20);
    assert!(rows.iter().all(|r| r["rts_status"] == "accepted"));
    let nt = rows.iter().find(|r| r["State"] == "NT").unwrap();
    assert!(
        nt["Postcode"].starts_with('0'),
        "postcodes keep their leading zero"
    );
    assert!(
        rows.iter().any(|r| r["Address Line 1"].contains('\n')),
        "quoted line breaks survive"
    );
    assert!(
        !work.path("returned-mail-2026-12-03.results.csv").exists(),
        "a trial's results are kept apart from a real run's"
    );
}

#[test]
fn mapped_columns_travel_as_form_fields() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved away"]));

    let run = work.submit("r.csv", &server, &["--field", "reason=Return Reason"]);

    assert_eq!(run.code, 0, "{}", run.all());
    let fields = &server.stats().fields["AB12-CD34-EF56-GH78"];
    assert_eq!(
        fields,
        &vec![("reason".to_string(), "Moved away".to_string())]
    );
}

#[test]
fn a_mapping_to_a_missing_column_is_a_usage_error() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved away"]));

    let run = work.submit("r.csv", &server, &["--field", "reason=Why"]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("`Why`"), "{}", run.stderr);
    assert!(server.stats().paths.is_empty());
}

#[test]
fn every_request_carries_a_stable_idempotency_key() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        export(&[
            "AB12-CD34-EF56-GH78,Jane,Moved",
            "QR34-ST56-UV78-WX90,John,Refused",
        ]),
    );

    work.submit("r.csv", &server, &[]);
    std::fs::remove_file(work.path("r.results.csv")).unwrap();
    work.submit("r.csv", &server, &[]);

    let keys = server.stats().idempotency_keys;
    assert_eq!(
        keys.len(),
        2,
        "the same file, row and id give the same key: {keys:?}"
    );
    assert!(keys.values().all(|n| *n == 2));
    assert!(keys.keys().all(|k| k.len() == 32));
}

#[test]
fn a_max_rate_too_small_to_mean_anything_is_a_usage_error() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved away"]));

    for rate in ["1e-30", "0", "-5", "NaN", "inf"] {
        let flag = format!("--max-rate={rate}");
        let run = work.submit("r.csv", &server, &[flag.as_str()]);

        assert_eq!(run.code, 2, "{rate}: {}", run.all());
        assert!(run.stderr.contains("--max-rate"), "{}", run.stderr);
    }
    assert!(server.stats().paths.is_empty());
    assert!(!work.path("r.results.csv").exists());
}

#[test]
fn max_rate_spaces_the_calls_whatever_the_concurrency() {
    // Twenty calls at ten a second are nineteen gaps of 100 ms; on
    // loopback, unpaced, sixteen workers send them in a few milliseconds.
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", common::export_rows(20));
    let started = std::time::Instant::now();

    let run = work.submit(
        "r.csv",
        &server,
        &["--concurrency", "16", "--max-rate", "10"],
    );

    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(rts_paths(&server.stats()).len(), 20);
    assert!(
        seconds >= 1.85,
        "20 calls at 10 a second took {seconds:.2} s"
    );
}

#[test]
fn a_negative_number_is_refused_as_out_of_range_not_as_an_unknown_option() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export(&["AB12-CD34-EF56-GH78,Jane,Moved away"]));

    for (flag, value) in [
        ("--concurrency", "-1"),
        ("--max-rate", "-5"),
        ("--threads", "-1"),
    ] {
        let run = work.submit("r.csv", &server, &[flag, value]);

        assert_eq!(run.code, 2, "{flag} {value}: {}", run.all());
        assert!(run.stderr.contains(flag), "{}", run.stderr);
        assert!(!run.stderr.contains("use '--"), "{}", run.stderr);
    }
    assert!(server.stats().paths.is_empty());
}
