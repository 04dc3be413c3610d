//! A small harness for driving the real binary against the simulated JLP
//! on loopback: a work directory, a sandbox with its fault knobs, the
//! binary run with arguments and environment, the results read back.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use jlp_rts::sandbox::{Sandbox, SandboxConfig, Stats};

pub const BIN: &str = env!("CARGO_BIN_EXE_jlp-rts");

/// A simulated JLP serving on 127.0.0.1 from its own runtime.
pub struct Server {
    pub sandbox: Sandbox,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start(config: SandboxConfig) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let sandbox = runtime.block_on(Sandbox::start(config, 0)).unwrap();
        Server {
            sandbox,
            _runtime: runtime,
        }
    }

    pub fn default() -> Server {
        Server::start(SandboxConfig::default())
    }

    pub fn url(&self) -> String {
        self.sandbox.base_url()
    }

    pub fn stats(&self) -> Stats {
        self.sandbox.stats()
    }

    /// Total accepted events, repeats included.
    pub fn events(&self) -> u32 {
        self.stats().accepted.values().sum()
    }
}

/// A config with some customers the server does not know.
pub fn unknown(ids: &[&str]) -> SandboxConfig {
    SandboxConfig {
        unknown: ids.iter().map(|s| s.to_string()).collect(),
        ..SandboxConfig::default()
    }
}

/// A temporary directory holding the input and what the run writes.
pub struct Work {
    pub dir: tempfile::TempDir,
}

/// What one run of the binary gave.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl Work {
    pub fn new() -> Work {
        Work {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Copies a file from the repository into the work directory.
    pub fn copy(&self, from: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(from);
        let path = self.path(source.file_name().unwrap().to_str().unwrap());
        std::fs::copy(&source, &path).unwrap();
        path
    }

    /// The binary with a clean environment, run in the work directory.
    pub fn command(&self) -> Command {
        let mut command = Command::new(BIN);
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("NO_COLOR", "1");
        command
    }

    pub fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut command = self.command();
        command.args(args);
        for (key, value) in env {
            command.env(key, value);
        }
        Run::from(command.output().unwrap())
    }

    /// `jlp-rts submit FILE --base-url URL` as the demo user, plus `extra`.
    pub fn submit(&self, file: &str, server: &Server, extra: &[&str]) -> Run {
        self.submit_to(file, &server.url(), extra)
    }

    /// The same against any loopback server, a mock included.
    pub fn submit_to(&self, file: &str, url: &str, extra: &[&str]) -> Run {
        let mut args = vec!["submit", file, "--base-url", url];
        args.extend_from_slice(extra);
        self.run(&args, &[("JLP_USERNAME", "demo"), ("JLP_PASSWORD", "demo")])
    }

    /// The results file's rows as header → value maps, cells as written.
    pub fn results(&self, name: &str) -> Vec<HashMap<String, String>> {
        read_csv(&self.path(name))
    }
}

/// A CSV file as header → value maps; a leading BOM is dropped.
pub fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// The results' `rts_status` column, in file order.
pub fn statuses(rows: &[HashMap<String, String>]) -> Vec<String> {
    rows.iter().map(|r| r["rts_status"].clone()).collect()
}

/// How many rows have each status.
pub fn count(rows: &[HashMap<String, String>], status: &str) -> usize {
    rows.iter().filter(|r| r["rts_status"] == status).count()
}

/// Paths of RTS calls the server received.
pub fn rts_paths(stats: &Stats) -> Vec<String> {
    stats
        .paths
        .iter()
        .filter(|p| p.contains("/customer/"))
        .cloned()
        .collect()
}

/// A bare HTTP/1.1 server on loopback answering each request with what
/// `answer(method, path)` returns (a whole response, headers included), one
/// request per connection. For answers the sandbox does not give.
pub fn mock(answer: impl Fn(&str, &str) -> String + Send + 'static) -> String {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let mut stream = stream;
            let _ = stream.write_all(answer(method, path).as_bytes());
        }
    });
    url
}

/// A whole HTTP response with a body.
pub fn response(status: &str, headers: &[&str], body: &str) -> String {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    text
}

/// The login answer of an account that may record RTS events.
pub fn login_ok() -> String {
    let body = r#"{"messages":[],"result":{"access_token":"mock-access","refresh_token":"mock-refresh","admin":{"capabilities":["customer.communication_rts"],"channels":[],"email":"m@example.org","id":1,"name":"Mock"}}}"#;
    response("200 OK", &["Content-Type: application/json"], body)
}

/// `n` rows with distinct well-formed ids.
pub fn export_rows(n: usize) -> String {
    let mut text = String::from("customer_encoded_id,name,return_reason\r\n");
    for i in 0..n {
        text.push_str(&format!(
            "RT{:02}-{:04}-AAAA-BBBB,Supporter {i},Moved away\r\n",
            i / 10000,
            i % 10000
        ));
    }
    text
}
