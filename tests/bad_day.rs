//! Surviving a bad day: faults from the server, expiring tokens, the API
//! down, crashes, signals, and resuming afterwards.

mod common;

use std::collections::HashSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{count, export_rows, login_ok, mock, response, statuses, Server, Work};
use jlp_rts::sandbox::SandboxConfig;

fn spawn(work: &Work, url: &str, extra: &[&str]) -> Child {
    work.command()
        .args(["submit", "r.csv", "--base-url", url])
        .args(extra)
        .env("JLP_USERNAME", "demo")
        .env("JLP_PASSWORD", "demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for_events(server: &Server, at_least: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.events() < at_least {
        assert!(Instant::now() < deadline, "the run made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Row numbers in the results, each must appear once.
fn recorded_rows(work: &Work) -> Vec<u64> {
    work.results("r.results.csv")
        .iter()
        .map(|r| r["rts_row"].parse().unwrap())
        .collect()
}

#[test]
fn faults_rate_limits_and_expiring_tokens_still_record_each_event_once() {
    let server = Server::start(SandboxConfig {
        fail_rate: 0.15,
        drop_rate: 0.05,
        rate_limit: Some(150),
        token_ttl: Some(Duration::from_secs(2)),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(600));
    let started = Instant::now();

    // With a fifth of all calls failing, a row fails all of 6 attempts with
    // odds 0.2^6, which over 600 rows happens in one run of 25; 10 attempts
    // make that one in 16,000.
    let run = work.submit(
        "r.csv",
        &server,
        &["--concurrency", "16", "--max-attempts", "10"],
    );

    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.all());
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 600);
    assert!(
        stats.accepted.values().all(|n| *n == 1),
        "an event was recorded twice"
    );
    let faults = (
        stats.failed,
        stats.dropped,
        stats.rate_limited,
        stats.unauthorized,
    );
    assert!(
        faults.0 > 0 && faults.1 > 0 && faults.2 > 0 && faults.3 > 0,
        "503s, drops, 429s, 401s: {faults:?}"
    );
    let lifetimes = (seconds / 2.0).ceil() as u64 + 1;
    assert!(
        stats.logins <= lifetimes,
        "{} logins in {seconds:.1} s",
        stats.logins
    );
    assert_eq!(count(&work.results("r.results.csv"), "accepted"), 600);
}

#[test]
fn an_expired_token_is_renewed_once_for_all_workers() {
    let server = Server::start(SandboxConfig {
        token_ttl: Some(Duration::from_millis(700)),
        latency: Duration::from_millis(30),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1000));
    let started = Instant::now();

    let run = work.submit("r.csv", &server, &["--concurrency", "16"]);

    assert_eq!(run.code, 0, "{}", run.all());
    let stats = server.stats();
    let lifetimes = (started.elapsed().as_secs_f64() / 0.7).ceil() as u64 + 1;
    assert!(
        stats.logins >= 2,
        "the token never expired: {} logins",
        stats.logins
    );
    assert!(
        stats.logins <= lifetimes,
        "{} logins for {lifetimes} lifetimes",
        stats.logins
    );
}

#[test]
fn the_refresh_call_is_tried_before_logging_in_again() {
    let server = Server::start(SandboxConfig {
        token_ttl: Some(Duration::from_millis(500)),
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(400));

    let run = work.submit(
        "r.csv",
        &server,
        &["--refresh-path", "/api-admin/refresh", "--concurrency", "4"],
    );

    assert_eq!(run.code, 0, "{}", run.all());
    let stats = server.stats();
    assert!(stats.refreshes >= 1, "{} refreshes", stats.refreshes);
    assert_eq!(stats.logins, 1);
}

#[test]
fn a_refused_renewal_stops_the_run_with_exit_3() {
    let calls = std::sync::atomic::AtomicU32::new(0);
    let url = mock(move |_, path| {
        if path.ends_with("/login") && calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0
        {
            login_ok()
        } else if path.ends_with("/login") {
            response(
                "401 Unauthorized",
                &[],
                r#"{"messages":[{"code":"incorrect_details","level":"error","message":"Account locked."}]}"#,
            )
        } else {
            response(
                "401 Unauthorized",
                &[],
                r#"{"messages":[{"code":"expired","level":"error","message":"Token expired."}]}"#,
            )
        }
    });
    let work = Work::new();
    work.write("r.csv", export_rows(5));

    let run = work.submit_to("r.csv", &url, &[]);

    assert_eq!(run.code, 3, "{}", run.all());
    assert!(run.stdout.contains("Account locked."), "{}", run.stdout);
}

#[test]
fn an_unreachable_api_exits_4_quickly_and_records_nothing_as_accepted() {
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let work = Work::new();
    work.write("r.csv", export_rows(10));
    let started = Instant::now();

    let run = work.submit_to("r.csv", &url, &[]);

    assert_eq!(run.code, 4, "{}", run.all());
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        run.stderr.contains("could not be reached"),
        "{}",
        run.stderr
    );
    assert!(!work.path("r.results.csv").exists(), "nothing was recorded");
}

#[test]
fn an_api_failing_every_request_stops_early_with_exit_4() {
    let server = Server::start(SandboxConfig {
        fail_rate: 1.0,
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(200));

    let run = work.submit(
        "r.csv",
        &server,
        &[
            "--max-attempts",
            "2",
            "--max-delay",
            "0.05",
            "--concurrency",
            "4",
        ],
    );

    assert_eq!(run.code, 4, "{}", run.all());
    assert!(
        run.stdout.contains("failed after every retry"),
        "{}",
        run.stdout
    );
    let rows = work.results("r.results.csv");
    assert!(
        rows.len() < 200,
        "rows never attempted must not be recorded"
    );
    assert!(statuses(&rows).iter().all(|s| s == "failed"));
    assert!(rows.iter().all(|r| r["rts_attempts"] == "2"));
    assert!(run.stdout.contains("--resume"), "{}", run.stdout);
}

#[test]
fn sigkill_mid_run_then_resume_records_every_row_once() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1500));
    let url = server.url();

    let mut child = spawn(&work, &url, &["--concurrency", "8"]);
    wait_for_events(&server, 200);
    child.kill().unwrap();
    child.wait().unwrap();
    let run = work.submit("r.csv", &server, &["--resume", "--concurrency", "8"]);

    assert_eq!(run.code, 0, "{}", run.all());
    let rows = recorded_rows(&work);
    assert_eq!(
        rows,
        (1..=1500).collect::<Vec<_>>(),
        "every row once, in order"
    );
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 1500);
    let twice = stats.accepted.values().filter(|n| **n > 1).count();
    assert!(stats.accepted.values().all(|n| *n <= 2));
    assert!(
        twice <= 8 + 1,
        "{twice} rows were sent twice; at most those in flight may be"
    );
}

#[test]
fn sigterm_stops_within_seconds_and_resume_sends_nothing_twice() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1500));
    let url = server.url();

    let child = spawn(&work, &url, &["--concurrency", "8"]);
    wait_for_events(&server, 200);
    let signalled = Instant::now();
    signal(&child, "TERM");
    let output = child.wait_with_output().unwrap();

    assert_eq!(output.status.code(), Some(143));
    assert!(signalled.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a second SIGTERM stops at once"),
        "{stderr}"
    );
    let accepted_by_server: HashSet<String> = server.stats().accepted.into_keys().collect();
    let results = work.results("r.results.csv");
    let accepted_in_results: HashSet<String> = results
        .iter()
        .filter(|r| r["rts_status"] == "accepted")
        .map(|r| r["customer_encoded_id"].clone())
        .collect();
    assert_eq!(accepted_in_results, accepted_by_server);
    assert!(results.len() < 1500);

    let run = work.submit("r.csv", &server, &["--resume"]);
    assert_eq!(run.code, 0, "{}", run.all());
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 1500);
    assert!(
        stats.accepted.values().all(|n| *n == 1),
        "nothing may be sent twice"
    );
    assert_eq!(recorded_rows(&work), (1..=1500).collect::<Vec<_>>());
}

#[test]
fn a_second_sigint_stops_at_once_with_the_results_intact() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_secs(3),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(50));
    let url = server.url();

    let mut child = spawn(&work, &url, &["--concurrency", "4"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().rts_calls < 4 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "INT");
    let started = Instant::now();
    let status = child.wait().unwrap();

    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(2));
    let rows = work.results("r.results.csv");
    assert!(rows.is_empty(), "nothing finished, so nothing is recorded");
}

#[test]
fn a_second_sigint_stops_every_sending_thread_at_once() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_secs(3),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(50));
    let url = server.url();

    let mut child = spawn(&work, &url, &["--concurrency", "4", "--threads", "2"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.stats().rts_calls < 4 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "INT");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "INT");
    let started = Instant::now();
    let status = child.wait().unwrap();

    assert_eq!(status.code(), Some(130));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a thread waited for its answers"
    );
    let rows = work.results("r.results.csv");
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn many_workers_on_several_threads_leave_no_row_behind() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(30_000));

    let run = work.submit("r.csv", &server, &["--concurrency", "64", "--threads", "4"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(server.stats().accepted.len(), 30_000);
    assert_eq!(recorded_rows(&work), (1..=30_000).collect::<Vec<_>>());
}

#[test]
fn an_export_cut_short_during_the_run_does_not_pass_for_a_complete_run() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    let rows = export_rows(20_000);
    work.write("r.csv", &rows);
    let url = server.url();

    let child = spawn(&work, &url, &["--concurrency", "4"]);
    wait_for_events(&server, 20);
    // Truncated in place, as a careless save over the file would.
    let head: String = rows.split_inclusive('\n').take(201).collect();
    std::fs::write(work.path("r.csv"), head).unwrap();
    let output = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout) + String::from_utf8_lossy(&output.stderr);

    assert_eq!(output.status.code(), Some(4), "{said}");
    assert!(said.contains("without an outcome"), "{said}");
    assert!(said.contains("--resume"), "{said}");
}

#[test]
fn a_refused_renewal_is_the_last_login_tried() {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let (logins, calls) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (seen_logins, seen_calls) = (logins.clone(), calls.clone());
    let url = mock(move |_, path| {
        if path.ends_with("/login") {
            if seen_logins.fetch_add(1, Ordering::SeqCst) == 0 {
                return login_ok();
            }
            let refused =
                r#"{"messages":[{"code":"incorrect_details","message":"Wrong password"}]}"#;
            return response("401 Unauthorized", &[], refused);
        }
        if seen_calls.fetch_add(1, Ordering::SeqCst) < 20 {
            response("202 Accepted", &[], r#"{"result":true,"messages":[]}"#)
        } else {
            response("401 Unauthorized", &[], r#"{"messages":[]}"#)
        }
    });
    let work = Work::new();
    work.write("r.csv", export_rows(100));

    let run = work.submit_to("r.csv", &url, &["--concurrency", "8"]);

    assert_eq!(run.code, 3, "{}", run.all());
    assert_eq!(
        logins.load(Ordering::SeqCst),
        2,
        "one refused password is enough to stop; more risk locking the account"
    );
}

#[test]
fn a_retry_after_of_zero_does_not_cut_the_backoff_short() {
    let url = mock(|_, path| {
        if path.ends_with("/login") {
            return login_ok();
        }
        response(
            "503 Service Unavailable",
            &["Retry-After: 0"],
            r#"{"messages":[]}"#,
        )
    });
    let work = Work::new();
    work.write("r.csv", export_rows(2));
    let started = Instant::now();

    let run = work.submit_to("r.csv", &url, &["--max-attempts", "3"]);

    // Two waits of at least 250 ms and 500 ms before each row's third try;
    // without them the run would be over in a few milliseconds.
    assert_ne!(run.code, 0, "{}", run.all());
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(statuses(&work.results("r.results.csv"))
        .iter()
        .all(|s| s == "failed"));
}

#[test]
fn threads_share_one_login_and_record_each_event_once_in_order() {
    let server = Server::start(SandboxConfig {
        token_ttl: Some(Duration::from_millis(700)),
        latency: Duration::from_millis(10),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(2000));
    let started = Instant::now();

    let run = work.submit(
        "r.csv",
        &server,
        &["--concurrency", "32", "--threads", "2", "-v"],
    );

    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stderr.contains("threads=2"), "{}", run.stderr);
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 2000);
    assert!(
        stats.accepted.values().all(|n| *n == 1),
        "an event was sent twice"
    );
    let lifetimes = (started.elapsed().as_secs_f64() / 0.7).ceil() as u64 + 1;
    assert!(stats.logins >= 2, "the token never expired");
    assert!(
        stats.logins <= lifetimes,
        "{} logins for {lifetimes} token lifetimes",
        stats.logins
    );
    assert_eq!(recorded_rows(&work), (1..=2000).collect::<Vec<_>>());
}

#[test]
fn resume_on_a_finished_file_sends_nothing_and_exits_0() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(20));
    assert_eq!(work.submit("r.csv", &server, &[]).code, 0);
    let calls = server.stats().rts_calls;

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(server.stats().rts_calls, calls);
    assert_eq!(recorded_rows(&work), (1..=20).collect::<Vec<_>>());
}

#[test]
fn resume_without_a_results_file_simply_starts() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(3));

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(server.events(), 3);
}

#[test]
fn resume_refuses_a_results_file_made_from_a_different_input() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(5));
    assert_eq!(work.submit("r.csv", &server, &[]).code, 0);
    let edited = export_rows(5).replace("Supporter 3", "Supporter Three");
    work.write("r.csv", edited);

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("different input"), "{}", run.stderr);
    assert!(run.stderr.contains("record 4"), "{}", run.stderr);
}

#[test]
fn rows_corrected_after_a_dry_run_are_judged_again() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(2) + ",Forgot the id,Moved\r\n");
    assert_eq!(work.run(&["submit", "r.csv", "--dry-run"], &[]).code, 1);
    work.write(
        "r.csv",
        export_rows(2) + "ZZ99-ZZ99-ZZ99-ZZ99,Forgot the id,Moved\r\n",
    );

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(
        statuses(&work.results("r.results.csv")),
        ["accepted", "accepted", "accepted"]
    );
    assert_eq!(server.events(), 3);
}

#[test]
fn a_results_line_changed_by_hand_stops_resume_instead_of_resending() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(6));
    assert_eq!(work.submit("r.csv", &server, &[]).code, 0);
    let path = work.path("r.results.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen(",accepted,", ",Accepted,", 3)).unwrap();

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("cannot be read back"), "{}", run.stderr);
    assert_eq!(server.events(), 6, "nothing is sent again");
}

#[test]
fn resume_retries_failed_rows_and_keeps_one_line_per_row() {
    let server = Server::start(common::unknown(&["RT00-0001-AAAA-BBBB"]));
    let work = Work::new();
    work.write("r.csv", export_rows(3));
    assert_eq!(work.submit("r.csv", &server, &[]).code, 1);

    let fixed = Server::default();
    let run = work.submit("r.csv", &fixed, &["--resume"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(fixed.events(), 1, "only the failed row is sent again");
    assert_eq!(
        statuses(&work.results("r.results.csv")),
        ["accepted", "accepted", "accepted"]
    );
}

#[test]
fn a_line_torn_by_a_crash_is_cut_before_resuming() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(4));
    assert_eq!(work.submit("r.csv", &server, &[]).code, 0);
    let path = work.path("r.results.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let cut = text.trim_end().rfind('\n').unwrap() + 15;
    std::fs::write(&path, &text[..cut]).unwrap();

    let run = work.submit("r.csv", &server, &["--resume"]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(recorded_rows(&work), vec![1, 2, 3, 4]);
    assert_eq!(
        server.stats().accepted["RT00-0003-AAAA-BBBB"],
        2,
        "the torn row is sent again"
    );
}

#[test]
fn a_redirect_is_not_followed_and_names_the_new_location() {
    let url = mock(|_, path| {
        if path.ends_with("/login") {
            login_ok()
        } else {
            response(
                "301 Moved Permanently",
                &["Location: https://elsewhere.invalid/rts"],
                "",
            )
        }
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1));

    let run = work.submit_to("r.csv", &url, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(rows[0]["rts_http_status"], "301");
    assert!(
        rows[0]["rts_message"].contains("https://elsewhere.invalid/rts"),
        "{}",
        rows[0]["rts_message"]
    );
    assert_eq!(rows[0]["rts_attempts"], "1");
}

#[test]
fn odd_error_bodies_give_a_short_safe_message() {
    let url = mock(|_, path| {
        if path.ends_with("/login") {
            login_ok()
        } else if path.contains("RT00-0000") {
            response(
                "400 Bad Request",
                &["Content-Type: text/html"],
                "<html><body><h1>Bad request</h1><p>proxy says no</p></body></html>",
            )
        } else if path.contains("RT00-0001") {
            response("422 Unprocessable Entity", &[], "")
        } else {
            response(
                "400 Bad Request",
                &["Content-Type: application/json"],
                r#"{"messages":[{"code":"=cmd","level":"error","message":"=HYPERLINK(\"x\")"}]}"#,
            )
        }
    });
    let work = Work::new();
    work.write("r.csv", export_rows(3));

    let run = work.submit_to("r.csv", &url, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(rows[0]["rts_message"], "Bad request proxy says no");
    assert_eq!(rows[1]["rts_http_status"], "422");
    assert_eq!(rows[2]["rts_error_code"], "'=cmd");
    assert_eq!(rows[2]["rts_message"], "'=HYPERLINK(\"x\")");
}

#[test]
fn a_long_retry_after_is_capped_by_max_delay() {
    let url = mock(|_, path| {
        if path.ends_with("/login") {
            login_ok()
        } else {
            response("429 Too Many Requests", &["Retry-After: 999999"], "")
        }
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1));
    let started = Instant::now();

    let run = work.submit_to("r.csv", &url, &["--max-delay", "0.2"]);

    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(run.code, 1, "{}", run.all());
    let rows = work.results("r.results.csv");
    assert_eq!(rows[0]["rts_http_status"], "429");
    assert!(
        rows[0]["rts_message"].contains("HTTP 429"),
        "{}",
        rows[0]["rts_message"]
    );
}

#[test]
fn a_server_echoing_the_password_does_not_get_it_printed() {
    let url = mock(|_, _| {
        response(
            "401 Unauthorized",
            &[],
            r#"{"messages":[{"code":"bad","level":"error","message":"bad password for body {\"password\":\"Zebra-Fish-42\"}"}]}"#,
        )
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1));

    let args = ["submit", "r.csv", "--base-url", &url];
    let run = work.run(
        &args,
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "Zebra-Fish-42")],
    );

    assert_eq!(run.code, 3, "{}", run.all());
    assert!(!run.all().contains("Zebra-Fish-42"), "{}", run.all());
    assert!(run.stderr.contains("[redacted]"), "{}", run.stderr);
}

/// The share of calls refused with 429 when 1,000 rows go at `concurrency`
/// to a server allowing 100 calls a second: ten seconds, so that what
/// happens every second outweighs the first second's luck.
fn refused_share(concurrency: &str) -> f64 {
    let server = Server::start(SandboxConfig {
        rate_limit: Some(100),
        latency: Duration::from_millis(10),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(1000));

    let run = work.submit("r.csv", &server, &["--concurrency", concurrency]);

    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(count(&work.results("r.results.csv"), "accepted"), 1000);
    let stats = server.stats();
    stats.rate_limited as f64 / stats.rts_calls as f64
}

#[test]
fn auto_concurrency_learns_a_rate_limit_and_is_refused_far_less_often() {
    // Sixty-four requests in flight overrun a limit of 100 a second every
    // second; auto, allowed as many, overruns it at first, then learns to
    // stay under.
    let fixed = refused_share("64");
    let auto = refused_share("auto");

    assert!(
        auto < fixed / 2.0,
        "share of calls refused: auto {auto:.3}, fixed 64 {fixed:.3}"
    );
}

#[test]
fn the_next_step_after_an_interruption_is_a_command_that_resumes_as_started() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_millis(20),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(600));
    let url = server.url();

    // The server comes from the environment, the results from a flag.
    let child = work
        .command()
        .args([
            "submit",
            "r.csv",
            "--results",
            "kept.csv",
            "--concurrency",
            "4",
        ])
        .env("JLP_BASE_URL", &url)
        .env("JLP_USERNAME", "demo")
        .env("JLP_PASSWORD", "demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_events(&server, 40);
    signal(&child, "INT");
    let output = child.wait_with_output().unwrap();

    assert_eq!(output.status.code(), Some(130));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let next = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Next: run `"))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no command to run next: {stdout}"));
    let words: Vec<&str> = next.split_whitespace().collect();
    assert!(words[0].ends_with("jlp-rts"), "{next}");

    // Run word for word from another shell, it must pick up the same
    // results and server.
    let run = work.run(
        &words[1..],
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "demo")],
    );
    assert_eq!(run.code, 0, "{next}\n{}", run.all());
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 600);
    assert!(
        stats.accepted.values().all(|n| *n == 1),
        "the next step sent something twice: {next}"
    );
    assert_eq!(count(&work.results("kept.csv"), "accepted"), 600);
}
