//! A simulated JLP on loopback: `jlp-rts sandbox`, `submit --sandbox`, and
//! the integration tests.
//!
//! It answers the two calls the tool uses the way the real API does (login,
//! bearer tokens, the RTS call with `messages[]` errors), plus a refresh call
//! for `--refresh-path`. Knobs make it misbehave on purpose: latency, a share
//! of 503s, dropped connections, a calls-per-second limit with 429 and
//! `Retry-After`, short-lived tokens, unknown customers. It counts what it
//! receives, so a test can tell exactly what reached the server.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Request paths remembered, so a long trial does not grow without end.
const MAX_PATHS_KEPT: usize = 100_000;

/// How the simulated JLP behaves.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub username: String,
    pub password: String,
    pub capability: bool,
    pub unknown: HashSet<String>,
    pub latency: Duration,
    pub fail_rate: f64,
    pub drop_rate: f64,
    pub rate_limit: Option<u32>,
    pub token_ttl: Option<Duration>,
}

impl Default for SandboxConfig {
    fn default() -> SandboxConfig {
        SandboxConfig {
            username: crate::settings::SANDBOX_USER.into(),
            password: crate::settings::SANDBOX_PASSWORD.into(),
            capability: true,
            unknown: HashSet::new(),
            latency: Duration::ZERO,
            fail_rate: 0.0,
            drop_rate: 0.0,
            rate_limit: None,
            token_ttl: None,
        }
    }
}

/// What the simulated JLP has seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Accepted RTS events, by customer id.
    pub accepted: HashMap<String, u32>,
    /// Form fields of the last accepted event, by customer id.
    pub fields: HashMap<String, Vec<(String, String)>>,
    /// Idempotency keys of accepted events, with how often each came.
    pub idempotency_keys: HashMap<String, u32>,
    /// Every request path, as received.
    pub paths: Vec<String>,
    pub rts_calls: u64,
    pub logins: u64,
    pub refused_logins: u64,
    pub refreshes: u64,
    pub unauthorized: u64,
    pub rate_limited: u64,
    pub failed: u64,
    pub dropped: u64,
    pub not_found: u64,
    pub max_in_flight: u64,
}

struct Shared {
    config: SandboxConfig,
    stats: Mutex<Stats>,
    tokens: Mutex<HashMap<String, Instant>>,
    next_token: AtomicU64,
    window: Mutex<(u64, u32)>,
    in_flight: AtomicU64,
}

/// A running simulated JLP.
pub struct Sandbox {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Closes the connection of the request that holds it, without an answer.
#[derive(Clone)]
struct Hangup(Arc<Notify>);

impl Sandbox {
    /// Serves on `127.0.0.1:port` (0 for any free port).
    pub async fn start(config: SandboxConfig, port: u16) -> std::io::Result<Sandbox> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            stats: Mutex::new(Stats::default()),
            tokens: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            window: Mutex::new((0, 0)),
            in_flight: AtomicU64::new(0),
        });
        let app = router(shared.clone());
        let task = tokio::spawn(serve(listener, app));
        Ok(Sandbox { addr, shared, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn stats(&self) -> Stats {
        self.shared
            .stats
            .lock()
            .expect("stats lock poisoned")
            .clone()
    }
}

async fn serve(listener: TcpListener, app: Router) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let hangup = Hangup(Arc::new(Notify::new()));
        let service = TowerToHyperService::new(app.clone().layer(Extension(hangup.clone())));
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = hangup.0.notified() => {}
            }
        });
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api-admin/login", post(login))
        .route("/api-admin/refresh", post(refresh))
        .route("/api-admin/customer/{id}/communication/rts", post(rts))
        .route("/_sandbox/stats", get(stats))
        .fallback(not_found)
        .with_state(shared)
}

fn messages(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "messages": [{ "code": code, "level": "error", "message": message }] });
    (status, Json(body)).into_response()
}

impl Shared {
    fn note_path(&self, path: &str) {
        let mut stats = self.stats.lock().expect("stats lock poisoned");
        if stats.paths.len() < MAX_PATHS_KEPT {
            stats.paths.push(path.to_string());
        }
    }

    fn issue_tokens(&self) -> serde_json::Value {
        let n = self.next_token.fetch_add(1, Ordering::Relaxed);
        let access = format!("sbx-access-{n}-{:016x}", fastrand::u64(..));
        let refresh = format!("sbx-refresh-{n}-{:016x}", fastrand::u64(..));
        let ttl = self.config.token_ttl.unwrap_or(Duration::from_secs(86_400));
        let mut tokens = self.tokens.lock().expect("token lock poisoned");
        tokens.insert(access.clone(), Instant::now() + ttl);
        tokens.insert(
            refresh.clone(),
            Instant::now() + Duration::from_secs(86_400),
        );
        let capabilities: Vec<&str> = if self.config.capability {
            vec!["customer.view", crate::jlp::RTS_CAPABILITY]
        } else {
            vec!["customer.view"]
        };
        json!({
            "messages": [],
            "result": {
                "access_token": access,
                "refresh_token": refresh,
                "admin": {
                    "capabilities": capabilities,
                    "channels": [{ "channel_key": "main", "channel_name": "Sandbox Lottery", "is_default": true }],
                    "email": format!("{}@sandbox.invalid", self.config.username),
                    "id": 1,
                    "name": "Sandbox Operator"
                }
            }
        })
    }

    fn token_valid(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let tokens = self.tokens.lock().expect("token lock poisoned");
        tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
            && token.starts_with("sbx-access-")
    }

    /// A fixed window per wall-clock second; the answer to a call beyond the
    /// limit says when the next window opens.
    // Known limit: like many real limiters, a fixed window lets a burst of
    // twice the limit through around a second's edge; a sliding window would
    // make short measured rates stricter.
    fn over_limit(&self) -> Option<SystemTime> {
        let limit = self.config.rate_limit?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut window = self.window.lock().expect("window lock poisoned");
        if window.0 != now.as_secs() {
            *window = (now.as_secs(), 0);
        }
        window.1 += 1;
        (window.1 > limit).then(|| UNIX_EPOCH + Duration::from_secs(now.as_secs() + 1))
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().expect("stats lock poisoned"));
    }
}

async fn login(
    State(shared): State<Arc<Shared>>,
    body: Option<Json<serde_json::Value>>,
) -> Response {
    shared.note_path("/api-admin/login");
    let body = body.map(|Json(b)| b).unwrap_or_default();
    let matches = body["username"] == shared.config.username.as_str()
        && body["password"] == shared.config.password.as_str();
    if !matches {
        shared.count(|s| s.refused_logins += 1);
        return messages(
            StatusCode::UNAUTHORIZED,
            "incorrect_details",
            "The username or password you entered is incorrect.",
        );
    }
    shared.count(|s| s.logins += 1);
    Json(shared.issue_tokens()).into_response()
}

async fn refresh(
    State(shared): State<Arc<Shared>>,
    body: Option<Json<serde_json::Value>>,
) -> Response {
    shared.note_path("/api-admin/refresh");
    let token = body.map(|Json(b)| b["refresh_token"].as_str().unwrap_or("").to_string());
    let known = token.is_some_and(|t| {
        t.starts_with("sbx-refresh-")
            && shared
                .tokens
                .lock()
                .expect("token lock poisoned")
                .remove(&t)
                .is_some()
    });
    if !known {
        return messages(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The refresh token is not valid.",
        );
    }
    shared.count(|s| s.refreshes += 1);
    Json(shared.issue_tokens()).into_response()
}

async fn rts(
    State(shared): State<Arc<Shared>>,
    Extension(hangup): Extension<Hangup>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    shared.note_path(request.uri().path());
    let in_flight = InFlight::enter(&shared.in_flight);
    shared.count(|s| {
        s.rts_calls += 1;
        s.max_in_flight = s.max_in_flight.max(in_flight.0);
    });
    answer_rts(&shared, &hangup, id, request).await
}

/// One request being answered; counted out even when its connection is
/// dropped mid-answer.
struct InFlight<'a>(u64, &'a AtomicU64);

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicU64) -> InFlight<'a> {
        InFlight(counter.fetch_add(1, Ordering::SeqCst) + 1, counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.1.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer_rts(shared: &Shared, hangup: &Hangup, id: String, request: Request) -> Response {
    if !shared.token_valid(request.headers()) {
        shared.count(|s| s.unauthorized += 1);
        return messages(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "The access token is missing or has expired.",
        );
    }
    if let Some(next_window) = shared.over_limit() {
        shared.count(|s| s.rate_limited += 1);
        let mut response = messages(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "Slow down.",
        );
        let when = httpdate::fmt_http_date(next_window);
        response.headers_mut().insert(
            header::RETRY_AFTER,
            when.parse().expect("an HTTP date is a header value"),
        );
        return response;
    }
    if fastrand::f64() < shared.config.drop_rate {
        shared.count(|s| s.dropped += 1);
        hangup.0.notify_one();
        return std::future::pending().await;
    }
    if fastrand::f64() < shared.config.fail_rate {
        shared.count(|s| s.failed += 1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<html><body><h1>503 Service Unavailable</h1></body></html>",
        )
            .into_response();
    }
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }
    if shared.config.unknown.contains(&id) {
        shared.count(|s| s.not_found += 1);
        return messages(
            StatusCode::NOT_FOUND,
            "customer_not_found",
            "No customer has this id.",
        );
    }

    let key = request
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let fields = form_fields(request).await;
    shared.count(|s| {
        *s.accepted.entry(id.clone()).or_default() += 1;
        *s.idempotency_keys.entry(key).or_default() += 1;
        s.fields.insert(id, fields);
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({ "result": true, "messages": [] })),
    )
        .into_response()
}

async fn form_fields(request: Request) -> Vec<(String, String)> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        return Vec::new();
    }
    let Ok(mut form) = Multipart::from_request(request, &()).await else {
        return Vec::new();
    };
    let mut fields = Vec::new();
    while let Ok(Some(field)) = form.next_field().await {
        let name = field.name().unwrap_or("").to_string();
        fields.push((name, field.text().await.unwrap_or_default()));
    }
    fields
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.stats.lock().expect("stats lock poisoned").clone()).into_response()
}

async fn not_found(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    shared.note_path(request.uri().path());
    messages(StatusCode::NOT_FOUND, "not_found", "No such endpoint.")
}

/// Where to send requests for `target`, starting the in-process sandbox
/// when that is the target; keep the sandbox alive as long as the run.
pub async fn reach(
    target: &crate::settings::Target,
) -> Result<(String, Option<Sandbox>), crate::Failure> {
    match target {
        crate::settings::Target::Api { base_url } => Ok((base_url.clone(), None)),
        crate::settings::Target::Sandbox => {
            let sandbox = Sandbox::start(SandboxConfig::default(), 0)
                .await
                .map_err(|e| {
                    crate::Failure::Other(anyhow::anyhow!("cannot start the sandbox: {e}"))
                })?;
            Ok((sandbox.base_url(), Some(sandbox)))
        }
    }
}

/// `jlp-rts sandbox`: serves until interrupted.
pub async fn serve_forever(args: crate::cli::SandboxArgs) -> Result<u8, crate::Failure> {
    let config = SandboxConfig {
        username: args.user,
        password: args.pass,
        capability: !args.no_capability,
        unknown: args.unknown.into_iter().collect(),
        latency: Duration::from_millis(args.latency_ms),
        fail_rate: args.fail_rate,
        drop_rate: args.drop_rate,
        rate_limit: args.rate_limit,
        token_ttl: args.token_ttl.map(Duration::from_secs_f64),
    };
    let user = config.username.clone();
    let sandbox = Sandbox::start(config, args.port).await.map_err(|e| {
        crate::Failure::usage(anyhow::anyhow!(
            "cannot listen on 127.0.0.1:{}: {e}",
            args.port
        ))
    })?;
    println!(
        "Simulated JLP listening on {} (user `{user}`); Ctrl-C stops it.",
        sandbox.base_url()
    );
    println!(
        "What it has received: {}/_sandbox/stats",
        sandbox.base_url()
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = tokio::signal::ctrl_c().await;
    Ok(0)
}
