//! The JLP admin API: logging in and recording one RTS event.
//!
//! Every answer is turned into an [`Answer`] that says what the caller should
//! do next (record it, retry it, renew the login), whatever shape the body
//! came in: JSON with `messages[]`, HTML from a proxy, plain text or nothing.

use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, LOCATION, RETRY_AFTER};
use reqwest::{redirect, StatusCode};
use serde::Deserialize;

use crate::secret::Secret;

/// The capability an account needs to record RTS events.
pub const RTS_CAPABILITY: &str = "customer.communication_rts";

/// Most of an answer's body that is ever read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// How the event travels in the request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BodyKind {
    /// `multipart/form-data`, as the admin site sends it.
    Multipart,
    /// `application/json`, as the published example shows.
    Json,
}

/// Connection settings for [`Client::new`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub body: BodyKind,
    pub ca_cert: Option<std::path::PathBuf>,
    /// Loopback bases are never sent through a proxy.
    pub use_proxy: bool,
}

/// One shared HTTP client for the whole run.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    /// The base parsed once: each event's URL is this with its own path.
    base_url: reqwest::Url,
    body: BodyKind,
}

/// A fresh pair of tokens.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: Access,
    pub refresh: Option<Secret>,
}

/// Who we are logged in as.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Account {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default)]
    pub channels: Vec<Channel>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Channel {
    #[serde(default)]
    pub channel_key: String,
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub is_default: bool,
}

/// Why a login did not give us a usable session.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoginError {
    #[error("the JLP refused the login (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the account `{account}` lacks the capability `{RTS_CAPABILITY}`; ask a JLP administrator to grant it")]
    MissingCapability { account: String },
    #[error("the JLP could not be reached: {0}")]
    Unreachable(String),
    #[error("the JLP answered the login with HTTP {status}: {message}")]
    Unexpected {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
}

impl LoginError {
    /// Worth trying again shortly: the server was busy or unreachable.
    pub fn is_transient(&self) -> bool {
        match self {
            LoginError::Unreachable(_) => true,
            LoginError::Unexpected { status, .. } => is_transient_status(*status),
            _ => false,
        }
    }
}

/// An access token with its `Authorization` header, built once per token
/// and marked sensitive so that no layer prints it.
#[derive(Clone)]
pub struct Access {
    token: Secret,
    header: reqwest::header::HeaderValue,
}

impl Access {
    pub fn new(token: Secret) -> anyhow::Result<Access> {
        let mut header =
            reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(
                |_| anyhow::anyhow!("the JLP sent an access token that cannot be sent back"),
            )?;
        header.set_sensitive(true);
        Ok(Access { token, header })
    }
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access([redacted])")
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub idempotency_key: String,
    /// Form fields mapped from the export's columns.
    pub fields: Vec<(String, String)>,
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accepted {
        status: u16,
    },
    /// Final: sending it again would get the same answer.
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    /// Worth another try, after `retry_after` if the server said so.
    Transient {
        status: Option<u16>,
        code: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The access token is no longer accepted.
    Unauthorized {
        status: u16,
        code: String,
        message: String,
    },
}

impl Answer {
    /// The HTTP status, when an answer came at all.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Answer::Accepted { status }
            | Answer::Rejected { status, .. }
            | Answer::Unauthorized { status, .. } => Some(*status),
            Answer::Transient { status, .. } => *status,
        }
    }

    /// The first `messages[].code`, if any.
    pub fn code(&self) -> &str {
        match self {
            Answer::Accepted { .. } => "",
            Answer::Rejected { code, .. }
            | Answer::Unauthorized { code, .. }
            | Answer::Transient { code, .. } => code,
        }
    }

    /// The API's message, or what went wrong on the way.
    pub fn message(&self) -> &str {
        match self {
            Answer::Accepted { .. } => "",
            Answer::Rejected { message, .. }
            | Answer::Unauthorized { message, .. }
            | Answer::Transient { message, .. } => message,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    messages: Vec<Message>,
    #[serde(default)]
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct Message {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct LoginResult {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    admin: Account,
}

impl Client {
    pub fn new(base: &str, options: &ClientOptions) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("jlp-rts/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect::Policy::none())
            .connect_timeout(options.connect_timeout)
            .timeout(options.request_timeout)
            // Many servers close idle connections after 5 s; reusing one
            // they are closing fails the next POST.
            .pool_idle_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(256);
        if !options.use_proxy {
            builder = builder.no_proxy();
        }
        if let Some(path) = &options.ca_cert {
            builder = builder.add_root_certificate(read_certificate(path)?);
        }
        Ok(Client {
            http: builder.build()?,
            base: base.trim_end_matches('/').to_string(),
            base_url: reqwest::Url::parse(base)?,
            body: options.body,
        })
    }

    /// `POST {base}/api-admin/login`; the account must hold the RTS
    /// capability.
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<(Tokens, Account), LoginError> {
        let body = serde_json::json!({ "username": username, "password": password.expose() });
        let url = format!("{}/api-admin/login", self.base);
        let (tokens, account) = self.token_call(&url, &body, password).await?;
        if !account.capabilities.iter().any(|c| c == RTS_CAPABILITY) {
            let account = if account.email.is_empty() {
                username.to_string()
            } else {
                account.email
            };
            return Err(LoginError::MissingCapability { account });
        }
        Ok((tokens, account))
    }

    /// `POST {base}{path}` with the refresh token, for installations that
    /// publish a refresh call.
    pub async fn refresh(&self, path: &str, refresh: &Secret) -> Result<Tokens, LoginError> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let body = serde_json::json!({ "refresh_token": refresh.expose() });
        Ok(self.token_call(&url, &body, refresh).await?.0)
    }

    /// A call answered with a token pair; `sent` is the secret in the body,
    /// blanked out of any text the server echoes back.
    async fn token_call(
        &self,
        url: &str,
        body: &serde_json::Value,
        sent: &Secret,
    ) -> Result<(Tokens, Account), LoginError> {
        let response = self
            .http
            .post(url)
            .header(ACCEPT, "application/json")
            .json(body)
            .send()
            .await
            .map_err(|e| LoginError::Unreachable(describe(&e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = read_capped(response)
            .await
            .map_err(|e| LoginError::Unreachable(describe(&e)))?;
        let (code, message) = first_message(&bytes);
        let (code, message) = (hide(code, sent), hide(message, sent));

        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(LoginError::Refused {
                status: status.as_u16(),
                message: if message.is_empty() { code } else { message },
            });
        }
        if !status.is_success() {
            return Err(LoginError::Unexpected {
                status: status.as_u16(),
                message,
                retry_after,
            });
        }
        let envelope: Envelope = serde_json::from_slice(&bytes).map_err(|_| unexpected(status))?;
        let result: LoginResult =
            serde_json::from_value(envelope.result).map_err(|_| unexpected(status))?;
        let access =
            Access::new(Secret::new(result.access_token)).map_err(|_| unexpected(status))?;
        let tokens = Tokens {
            access,
            refresh: result.refresh_token.map(Secret::new),
        };
        Ok((tokens, result.admin))
    }

    /// `POST {base}/api-admin/customer/{id}/communication/rts`.
    pub async fn send_event(&self, access: &Access, event: &Event) -> Answer {
        let request = self
            .http
            .post(self.event_url(&event.id))
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, access.header.clone())
            .header("Idempotency-Key", &event.idempotency_key);
        let request = match self.body {
            // What an empty form encodes to, without building one per row.
            BodyKind::Multipart if event.fields.is_empty() => request
                .header(reqwest::header::CONTENT_TYPE, EMPTY_FORM_TYPE)
                .body(EMPTY_FORM_BODY),
            BodyKind::Multipart => request.multipart(form(&event.fields)),
            BodyKind::Json if event.fields.is_empty() => {
                request.header(reqwest::header::CONTENT_TYPE, "application/json")
            }
            BodyKind::Json => request.json(&json_fields(&event.fields)),
        };
        match request.send().await {
            Ok(response) => judge(response, &access.token).await,
            Err(e) => transport_failure(&e),
        }
    }

    /// The id always travels as exactly one percent-encoded path segment.
    pub fn event_url(&self, id: &str) -> reqwest::Url {
        let prefix = self.base_url.path().trim_end_matches('/');
        let id = percent_encoding::utf8_percent_encode(id, PATH_SEGMENT);
        let mut url = self.base_url.clone();
        url.set_path(&format!(
            "{prefix}/api-admin/customer/{id}/communication/rts"
        ));
        url
    }
}

const EMPTY_FORM_TYPE: &str = "multipart/form-data; boundary=jlp-rts-form";
const EMPTY_FORM_BODY: &str = "--jlp-rts-form--\r\n";

/// Everything but unreserved characters is encoded, so no id can add a
/// segment, a query or a fragment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn form(fields: &[(String, String)]) -> reqwest::multipart::Form {
    fields
        .iter()
        .fold(reqwest::multipart::Form::new(), |form, (name, value)| {
            form.text(name.clone(), value.clone())
        })
}

fn json_fields(fields: &[(String, String)]) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect()
}

async fn judge(response: reqwest::Response, access: &Secret) -> Answer {
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(excerpt);
    let bytes = match read_capped(response).await {
        Ok(bytes) => bytes,
        Err(e) => return transport_failure(&e),
    };
    let (code, message) = first_message(&bytes);
    let (code, message) = (hide(code, access), hide(message, access));
    let status_code = status.as_u16();

    if status.is_success() {
        if accepted(&bytes) {
            return Answer::Accepted {
                status: status_code,
            };
        }
        let message = if message.is_empty() {
            "the JLP answered without `\"result\": true`".to_string()
        } else {
            message
        };
        return Answer::Rejected {
            status: status_code,
            code,
            message,
        };
    }
    if status.is_redirection() {
        let message = format!(
            "the JLP redirected the request to `{}`; check `--base-url`",
            location.unwrap_or_default()
        );
        return Answer::Rejected {
            status: status_code,
            code,
            message,
        };
    }
    if status == StatusCode::UNAUTHORIZED {
        return Answer::Unauthorized {
            status: status_code,
            code,
            message,
        };
    }
    if is_transient_status(status_code) {
        return Answer::Transient {
            status: Some(status_code),
            code,
            message,
            retry_after,
        };
    }
    Answer::Rejected {
        status: status_code,
        code,
        message,
    }
}

fn accepted(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Envelope>(bytes)
        .is_ok_and(|e| e.result == serde_json::Value::Bool(true))
}

pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

fn transport_failure(error: &reqwest::Error) -> Answer {
    Answer::Transient {
        status: None,
        code: String::new(),
        message: describe(error),
        retry_after: None,
    }
}

/// A transport error in one line, without the URL.
pub fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_body() || error.is_decode() {
        "the connection broke while reading the answer"
    } else {
        "the request failed"
    };
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if cause.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {cause}")
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// The first `messages[]` entry's code and text, or a safe excerpt of a body
/// that is not JSON.
fn first_message(bytes: &[u8]) -> (String, String) {
    match serde_json::from_slice::<Envelope>(bytes) {
        Ok(envelope) => envelope
            .messages
            .into_iter()
            .next()
            .map(|m| (excerpt(&m.code), excerpt(&m.message)))
            .unwrap_or_default(),
        Err(_) => (String::new(), excerpt(&String::from_utf8_lossy(bytes))),
    }
}

/// `text` with a secret we sent blanked out, should the server echo it.
fn hide(text: String, secret: &Secret) -> String {
    let secret = secret.expose();
    if secret.len() < 3 || !text.contains(secret) {
        return text;
    }
    text.replace(secret, "[redacted]")
}

/// At most 160 characters of text, tags dropped, whitespace folded, control
/// characters removed: safe to show and to write to the results.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c if c.is_whitespace() || c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    let folded: Vec<&str> = out.split_whitespace().collect();
    let folded = folded.join(" ");
    if folded.chars().count() > 160 {
        let cut: String = folded.chars().take(157).collect();
        format!("{cut}...")
    } else {
        folded
    }
}

fn unexpected(status: StatusCode) -> LoginError {
    LoginError::Unexpected {
        status: status.as_u16(),
        message: "the answer was not the JSON the login call returns; check `--base-url`".into(),
        retry_after: None,
    }
}

/// `Retry-After` in either form: delay seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

fn read_certificate(path: &Path) -> anyhow::Result<reqwest::Certificate> {
    use anyhow::Context;
    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA certificate `{}`", path.display()))?;
    reqwest::Certificate::from_pem(&pem)
        .with_context(|| format!("`{}` is not a PEM certificate", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_stay_one_path_segment() {
        let client = Client::new(
            "https://api.example.org/prefix/",
            &ClientOptions {
                connect_timeout: Duration::from_secs(1),
                request_timeout: Duration::from_secs(1),
                body: BodyKind::Multipart,
                ca_cert: None,
                use_proxy: false,
            },
        )
        .unwrap();
        assert_eq!(
            client.event_url("../login?x=1#y").as_str(),
            "https://api.example.org/prefix/api-admin/customer/..%2Flogin%3Fx%3D1%23y/communication/rts"
        );
        assert_eq!(
            client.event_url("a%2Fb").as_str(),
            "https://api.example.org/prefix/api-admin/customer/a%252Fb/communication/rts"
        );
    }

    #[test]
    fn bodies_of_any_shape_give_a_safe_message() {
        let json = br#"{"messages":[{"code":"customer_not_found","level":"error","message":"No such customer"}]}"#;
        assert_eq!(
            first_message(json),
            ("customer_not_found".into(), "No such customer".into())
        );
        let html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>";
        assert_eq!(first_message(html).1, "502 Bad Gateway nginx");
        assert_eq!(first_message(b""), (String::new(), String::new()));
        assert!(excerpt(&"x".repeat(500)).ends_with("..."));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = SystemTime::now() + Duration::from_secs(30);
        headers.insert(RETRY_AFTER, httpdate::fmt_http_date(later).parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
    }
}
