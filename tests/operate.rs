//! Running it from a desk and from cron: quiet output, logs, settings,
//! overlapping runs, secrets and files others might open.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{export_rows, read_csv, Server, Work};
use jlp_rts::sandbox::SandboxConfig;

#[test]
fn without_a_terminal_there_are_no_escape_codes_and_a_plain_summary() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(30));
    let url = server.url();

    let output = work
        .command()
        .env_remove("NO_COLOR")
        .args(["submit", "r.csv", "--base-url", &url])
        .env("JLP_USERNAME", "demo")
        .env("JLP_PASSWORD", "demo")
        .stdin(Stdio::null())
        .output()
        .unwrap();

    assert_eq!(output.status.code(), Some(0));
    let all = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    assert!(
        !all.contains(&0x1b),
        "escape codes: {}",
        String::from_utf8_lossy(&all)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("accepted:   30"), "{stdout}");
    assert!(stdout.contains("r.results.csv"), "{stdout}");
}

#[test]
fn quiet_prints_nothing_on_success_and_the_summary_on_failure() {
    let server = Server::start(common::unknown(&["RT00-0001-AAAA-BBBB"]));
    let work = Work::new();
    work.write("ok.csv", export_rows(1));
    work.write("bad.csv", export_rows(2));

    let ok = work.submit("ok.csv", &server, &["-q"]);
    let bad = work.submit("bad.csv", &server, &["-q"]);

    assert_eq!(ok.code, 0);
    assert_eq!(ok.all(), "", "a good quiet run prints nothing");
    assert_eq!(bad.code, 1);
    assert!(bad.stdout.contains("failed:     1"), "{}", bad.stdout);
}

#[test]
fn a_second_overlapping_run_exits_75_at_once_and_the_first_completes() {
    let server = Server::start(SandboxConfig {
        latency: Duration::from_millis(10),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(400));
    let url = server.url();
    let mut first = work
        .command()
        .args(["submit", "r.csv", "--base-url", &url, "--concurrency", "4"])
        .env("JLP_USERNAME", "demo")
        .env("JLP_PASSWORD", "demo")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while server.events() < 10 {
        std::thread::sleep(Duration::from_millis(10));
    }

    let started = Instant::now();
    let second = work.submit("r.csv", &server, &["--resume"]);
    let refused_in = started.elapsed();

    assert_eq!(second.code, 75, "{}", second.all());
    assert!(refused_in < Duration::from_secs(1), "{refused_in:?}");
    assert!(
        second.stderr.contains(&format!("pid {}", first.id())),
        "{}",
        second.stderr
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
    let stats = server.stats();
    assert_eq!(stats.accepted.len(), 400);
    assert!(stats.accepted.values().all(|n| *n == 1));
}

#[test]
fn no_password_or_token_appears_anywhere_even_at_trace_level() {
    let server = Server::start(SandboxConfig {
        password: "S3cret-Passw0rd!".into(),
        token_ttl: Some(Duration::from_millis(300)),
        latency: Duration::from_millis(10),
        ..SandboxConfig::default()
    });
    let work = Work::new();
    work.write("r.csv", export_rows(100));
    let url = server.url();

    let run = work.run(
        &[
            "submit",
            "r.csv",
            "--base-url",
            &url,
            "-vv",
            "--log-file",
            "run.log",
            "--summary-json",
            "s.json",
        ],
        &[
            ("JLP_USERNAME", "demo"),
            ("JLP_PASSWORD", "S3cret-Passw0rd!"),
            ("RUST_LOG", "trace"),
        ],
    );
    let stderr_run = work.run(
        &[
            "submit",
            "r.csv",
            "--base-url",
            &url,
            "-vv",
            "--results",
            "again.csv",
        ],
        &[
            ("JLP_USERNAME", "demo"),
            ("JLP_PASSWORD", "S3cret-Passw0rd!"),
            ("RUST_LOG", "trace"),
        ],
    );

    assert_eq!(run.code, 0, "{}", run.all());
    assert!(
        server.stats().logins >= 2,
        "tokens were renewed during the run"
    );
    let log = std::fs::read_to_string(work.path("run.log")).unwrap();
    assert!(log.len() > 1000, "trace logging wrote little: {log}");
    let everything = [
        run.all(),
        stderr_run.all(),
        log,
        std::fs::read_to_string(work.path("r.results.csv")).unwrap(),
        std::fs::read_to_string(work.path("s.json")).unwrap(),
    ]
    .concat();
    for secret in ["S3cret-Passw0rd!", "sbx-access-", "sbx-refresh-", "Bearer "] {
        assert!(!everything.contains(secret), "`{secret}` leaked");
    }
}

#[test]
fn results_and_failed_rows_files_are_readable_by_their_owner_only() {
    let server = Server::start(common::unknown(&["RT00-0001-AAAA-BBBB"]));
    let work = Work::new();
    work.write("r.csv", export_rows(3));

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
    for name in ["r.results.csv", "r.failed.csv"] {
        let mode = std::fs::metadata(work.path(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn the_failed_rows_file_holds_failed_and_invalid_rows_with_original_columns() {
    let server = Server::start(common::unknown(&["RT00-0001-AAAA-BBBB"]));
    let work = Work::new();
    work.write("r.csv", export_rows(3) + ",Blank,Moved\r\n");

    let run = work.submit("r.csv", &server, &[]);

    assert!(run.stdout.contains("r.failed.csv"), "{}", run.stdout);
    let rows = read_csv(&work.path("r.failed.csv"));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["customer_encoded_id"], "RT00-0001-AAAA-BBBB");
    assert_eq!(rows[1]["name"], "Blank");
    assert!(!rows[0].contains_key("rts_status"), "original columns only");

    let fixed = Server::default();
    let again = work.submit("r.failed.csv", &fixed, &[]);
    assert_eq!(
        again.code,
        1,
        "the blank id is still invalid: {}",
        again.all()
    );
    assert_eq!(fixed.events(), 1);
}

#[test]
fn a_password_file_readable_by_others_is_refused() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(1));
    let secret = work.write("password", "demo\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let url = server.url();

    let refused = work.run(
        &[
            "submit",
            "r.csv",
            "--base-url",
            &url,
            "--password-file",
            "password",
        ],
        &[("JLP_USERNAME", "demo")],
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let accepted = work.run(
        &[
            "submit",
            "r.csv",
            "--base-url",
            &url,
            "--password-file",
            "password",
        ],
        &[("JLP_USERNAME", "demo")],
    );

    assert_eq!(refused.code, 2, "{}", refused.all());
    assert!(refused.stderr.contains("chmod 600"), "{}", refused.stderr);
    assert!(
        server.stats().paths.len() <= 2,
        "nothing sent before the refusal"
    );
    assert_eq!(accepted.code, 0, "{}", accepted.all());
}

#[test]
fn without_any_password_source_the_run_says_how_to_give_one() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(1));
    let url = server.url();

    let run = work.run(
        &["submit", "r.csv", "--base-url", &url],
        &[("JLP_USERNAME", "demo")],
    );

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("JLP_PASSWORD"), "{}", run.stderr);
}

#[test]
fn a_settings_file_keeps_the_command_short_and_flags_win_over_it() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", "Ref,Why\nAB12-CD34-EF56-GH78,Moved away\n");
    let secret = work.write("password", "demo\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    work.write(
        "jlp.toml",
        "base_url = \"http://127.0.0.1:1\"\nusername = \"demo\"\npassword_file = \"password\"\n\
         id_column = \"Ref\"\nconcurrency = 2\n\n[fields]\nreason = \"Why\"\n",
    );
    let url = server.url();

    let run = work.run(
        &["submit", "r.csv", "--config", "jlp.toml"],
        &[("JLP_BASE_URL", &url)],
    );

    assert_eq!(
        run.code,
        0,
        "the environment's base URL wins over the file: {}",
        run.all()
    );
    let fields = &server.stats().fields["AB12-CD34-EF56-GH78"];
    assert_eq!(
        fields,
        &vec![("reason".to_string(), "Moved away".to_string())]
    );
}

#[test]
fn a_settings_file_with_an_unknown_key_is_refused() {
    let work = Work::new();
    work.write("r.csv", export_rows(1));
    work.write("jlp.toml", "base_ulr = \"https://x.example\"\n");

    let run = work.run(
        &["submit", "r.csv", "--config", "jlp.toml", "--dry-run"],
        &[],
    );

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(run.stderr.contains("base_ulr"), "{}", run.stderr);
}

#[test]
fn a_bad_value_in_the_settings_file_is_blamed_on_the_file_not_a_flag() {
    let work = Work::new();
    work.write("r.csv", export_rows(1));

    for (line, key) in [
        ("concurrency = 0", "`concurrency` in the settings file"),
        ("max_rate = 0.0", "`max_rate` in the settings file"),
        ("threads = 0", "`threads` in the settings file"),
    ] {
        work.write("jlp.toml", format!("{line}\n"));
        let run = work.run(
            &["submit", "r.csv", "--config", "jlp.toml", "--dry-run"],
            &[],
        );

        assert_eq!(run.code, 2, "{line}: {}", run.all());
        assert!(run.stderr.contains(key), "{line}: {}", run.stderr);
    }
}

#[test]
fn login_shows_the_account_and_its_channels() {
    let server = Server::default();
    let work = Work::new();
    let url = server.url();

    let run = work.run(
        &["login", "--base-url", &url],
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "demo")],
    );
    let refused = work.run(
        &["login", "--base-url", &url],
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "no")],
    );

    assert_eq!(run.code, 0, "{}", run.all());
    assert!(run.stdout.contains("Sandbox Operator"), "{}", run.stdout);
    assert!(
        run.stdout.contains("Sandbox Lottery (default)"),
        "{}",
        run.stdout
    );
    assert_eq!(refused.code, 3, "{}", refused.all());
}

#[test]
fn plain_http_is_refused_for_hosts_that_are_not_loopback() {
    let work = Work::new();
    work.write("r.csv", export_rows(1));

    let run = work.run(
        &[
            "submit",
            "r.csv",
            "--base-url",
            "http://api.example.invalid",
        ],
        &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "demo")],
    );

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(
        run.stderr.contains("--allow-insecure-http"),
        "{}",
        run.stderr
    );
}

#[test]
fn hostile_ids_never_leave_the_rts_path() {
    let server = Server::default();
    let work = Work::new();
    work.write(
        "r.csv",
        "customer_id,name\n../login,a\na%2Fb,b\nx?y=1,c\nx#y,d\n..,e\nAB12-CD34-EF56-GH78,ok\n",
    );

    let run = work.submit("r.csv", &server, &[]);

    assert_eq!(run.code, 1, "{}", run.all());
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
fn the_summary_can_be_written_as_json_for_monitoring() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(5) + ",blank,x\r\n");

    let run = work.submit("r.csv", &server, &["--summary-json", "summary.json"]);

    assert_eq!(run.code, 1);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["this_run"]["accepted"], 5);
    assert_eq!(summary["this_run"]["invalid"], 1);
    assert_eq!(summary["exit_code"], 1);
    assert_eq!(summary["ending"], "finished");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(2));

    let run = work.submit(
        "r.csv",
        &server,
        &["-v", "--log-format", "json", "--log-file", "log.json"],
    );

    assert_eq!(run.code, 0);
    let log = std::fs::read_to_string(work.path("log.json")).unwrap();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(entry["level"].is_string(), "{line}");
    }
    assert!(log.contains("logged in"), "{log}");
}

#[test]
fn a_summary_path_in_a_missing_folder_is_refused_before_anything_is_sent() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(2));

    let run = work.submit("r.csv", &server, &["--summary-json", "nowhere/s.json"]);

    assert_eq!(run.code, 2, "{}", run.all());
    assert!(server.stats().paths.is_empty());
}

#[test]
fn a_reader_that_goes_away_does_not_crash_the_run() {
    let server = Server::default();
    let work = Work::new();
    work.write("r.csv", export_rows(50));
    let url = server.url();

    let mut child = work
        .command()
        .args(["submit", "r.csv", "--base-url", &url, "-vv"])
        .env("JLP_USERNAME", "demo")
        .env("JLP_PASSWORD", "demo")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());

    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(server.events(), 50);
    assert_eq!(read_csv(&work.path("r.results.csv")).len(), 50);
}
