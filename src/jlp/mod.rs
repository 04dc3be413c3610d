//! The JLP admin API: logging in and recording one RTS event.
//!
//! Every answer is turned into an [`Answer`] that says what the caller should
//! do next (record it, retry it, renew the login), whatever shape the body
//! came in: JSON with `messages[]`, HTML from a proxy, plain text or nothing.

mod http;

use std::time::{Duration, SystemTime};

use ::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use ::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;
use serde::Deserialize;

pub use self::http::HttpError;
use self::http::{Http, Reply};
use crate::secret::Secret;

/// The capability an account needs to record RTS events.
pub const RTS_CAPABILITY: &str = "customer.communication_rts";

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
pub struct Client {
    http: Http,
    /// The base's path, without a trailing `/`: every call's path starts
    /// with it.
    prefix: String,
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
    header: HeaderValue,
}

impl Access {
    pub fn new(token: Secret) -> anyhow::Result<Access> {
        let mut header =
            HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                anyhow::anyhow!("the JLP sent an access token that cannot be sent back")
            })?;
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
        let base_url = url::Url::parse(base)?;
        let http = Http::new(
            &base_url,
            &http::Options {
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
                ca_cert: options.ca_cert.clone(),
                use_proxy: options.use_proxy,
            },
        )?;
        Ok(Client {
            http,
            prefix: base_url.path().trim_end_matches('/').to_string(),
            body: options.body,
        })
    }

    /// A client to the same API with connections of its own, for workers
    /// on another thread: a connection is served by the thread that opened
    /// it, so sharing one across threads would cost a wake-up per answer.
    pub fn sibling(&self) -> Client {
        Client {
            http: self.http.sibling(),
            prefix: self.prefix.clone(),
            body: self.body,
        }
    }

    /// `POST {base}/api-admin/login`; the account must hold the RTS
    /// capability.
    pub async fn login(
        &self,
        username: &str,
        password: &Secret,
    ) -> Result<(Tokens, Account), LoginError> {
        let body = serde_json::json!({ "username": username, "password": password.expose() });
        let path = format!("{}/api-admin/login", self.prefix);
        let (tokens, account) = self.token_call(&path, &body, password).await?;
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
        let path = format!("{}/{}", self.prefix, path.trim_start_matches('/'));
        let body = serde_json::json!({ "refresh_token": refresh.expose() });
        Ok(self.token_call(&path, &body, refresh).await?.0)
    }

    /// A call answered with a token pair; `sent` is the secret in the body,
    /// blanked out of any text the server echoes back.
    async fn token_call(
        &self,
        path: &str,
        body: &serde_json::Value,
        sent: &Secret,
    ) -> Result<(Tokens, Account), LoginError> {
        let mut headers = HeaderMap::with_capacity(6);
        headers.insert(ACCEPT, JSON_TYPE);
        headers.insert(CONTENT_TYPE, JSON_TYPE);
        let body = Bytes::from(serde_json::to_vec(body).expect("a JSON value always serialises"));
        let reply = self
            .http
            .post(path, headers, body)
            .await
            .map_err(|e| LoginError::Unreachable(e.to_string()))?;
        let status = reply.status;
        let envelope = serde_json::from_slice::<Envelope>(&reply.body).ok();
        let (code, message) = explain(envelope, &reply.body, sent);

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
                retry_after: retry_after(&reply.headers),
            });
        }
        let envelope: Envelope =
            serde_json::from_slice(&reply.body).map_err(|_| unexpected(status))?;
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
        let mut headers = HeaderMap::with_capacity(8);
        headers.insert(ACCEPT, JSON_TYPE);
        headers.insert(AUTHORIZATION, access.header.clone());
        if let Ok(key) = HeaderValue::try_from(event.idempotency_key.as_str()) {
            headers.insert(IDEMPOTENCY_KEY, key);
        }
        let body = match self.body {
            BodyKind::Multipart => {
                let (content_type, body) = form(&event.fields);
                headers.insert(CONTENT_TYPE, content_type);
                body
            }
            BodyKind::Json => {
                headers.insert(CONTENT_TYPE, JSON_TYPE);
                json_fields(&event.fields)
            }
        };
        match self
            .http
            .post(&self.event_path(&event.id), headers, body)
            .await
        {
            Ok(reply) => judge(&reply, &access.token),
            Err(error) => transport_failure(&error),
        }
    }

    /// The id always travels as exactly one percent-encoded path segment.
    pub fn event_path(&self, id: &str) -> String {
        let id = percent_encoding::utf8_percent_encode(id, PATH_SEGMENT);
        format!("{}/api-admin/customer/{id}/communication/rts", self.prefix)
    }
}

const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json");
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The form boundary, unless a field holds it (see [`form`]).
const FORM_BOUNDARY: &str = "jlp-rts-form-7c1f9a2e5b";
const EMPTY_FORM_TYPE: &str = "multipart/form-data; boundary=jlp-rts-form-7c1f9a2e5b";
const EMPTY_FORM: &[u8] = b"--jlp-rts-form-7c1f9a2e5b--\r\n";
/// Everything but unreserved characters is encoded, so no id can add a
/// segment, a query or a fragment.
const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A `multipart/form-data` body of text fields, with its content type,
/// encoded as browsers do: `"`, CR and LF in a name are percent-encoded,
/// values go as they are, between boundaries that none of them contains.
fn form(fields: &[(String, String)]) -> (HeaderValue, Bytes) {
    if fields.is_empty() {
        // What an empty form encodes to, without building one per row.
        return (
            HeaderValue::from_static(EMPTY_FORM_TYPE),
            Bytes::from_static(EMPTY_FORM),
        );
    }
    let mut boundary = FORM_BOUNDARY.to_string();
    while fields
        .iter()
        .any(|(name, value)| name.contains(&boundary) || value.contains(&boundary))
    {
        boundary = format!("jlp-rts-form-{:016x}", fastrand::u64(..));
    }
    let mut body = String::new();
    for (name, value) in fields {
        let name = name
            .replace('"', "%22")
            .replace('\r', "%0D")
            .replace('\n', "%0A");
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let content_type = HeaderValue::try_from(format!("multipart/form-data; boundary={boundary}"))
        .expect("a boundary of letters, digits and dashes is a valid header");
    (content_type, Bytes::from(body))
}

/// The fields as one JSON object; no fields, no body.
fn json_fields(fields: &[(String, String)]) -> Bytes {
    if fields.is_empty() {
        return Bytes::new();
    }
    let object: serde_json::Map<String, serde_json::Value> = fields
        .iter()
        .map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone())))
        .collect();
    Bytes::from(serde_json::to_vec(&object).expect("a JSON object always serialises"))
}

/// What an answer means for the row.
fn judge(reply: &Reply, access: &Secret) -> Answer {
    let status = reply.status;
    let status_code = status.as_u16();
    let envelope = serde_json::from_slice::<Envelope>(&reply.body).ok();
    if status.is_success()
        && envelope
            .as_ref()
            .is_some_and(|e| e.result == serde_json::Value::Bool(true))
    {
        return Answer::Accepted {
            status: status_code,
        };
    }
    let (code, message) = explain(envelope, &reply.body, access);

    if status.is_success() {
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
        let location = reply
            .headers
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(|l| excerpt(&hide(l, access)))
            .unwrap_or_default();
        let message = format!("the JLP redirected the request to `{location}`; check `--base-url`");
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
            retry_after: retry_after(&reply.headers),
        };
    }
    Answer::Rejected {
        status: status_code,
        code,
        message,
    }
}

pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

fn transport_failure(error: &HttpError) -> Answer {
    Answer::Transient {
        status: None,
        code: String::new(),
        message: error.to_string(),
        retry_after: None,
    }
}

/// The first `messages[]` entry's code and text, or a safe excerpt of a body
/// that is not JSON, with `sent` (a secret of the request) blanked out.
fn explain(envelope: Option<Envelope>, bytes: &[u8], sent: &Secret) -> (String, String) {
    let safe = |text: &str| excerpt(&hide(text, sent));
    match envelope {
        Some(envelope) => envelope
            .messages
            .into_iter()
            .next()
            .map(|m| (safe(&m.code), safe(&m.message)))
            .unwrap_or_default(),
        None => (String::new(), safe(&String::from_utf8_lossy(bytes))),
    }
}

/// `text` with a secret we sent blanked out, should the server echo it:
/// as sent, escaped in JSON or encoded in a URL. Done before the text is
/// cut short, so that no part of a secret survives the cut.
fn hide(text: &str, secret: &Secret) -> String {
    let secret = secret.expose();
    if secret.len() < 3 {
        return text.to_string();
    }
    let json = serde_json::to_string(secret).expect("a string always serialises");
    let json = &json[1..json.len() - 1];
    let url = percent_encoding::utf8_percent_encode(secret, PATH_SEGMENT).to_string();
    [secret, json, url.as_str()]
        .iter()
        .fold(text.to_string(), |text, form| {
            text.replace(form, "[redacted]")
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message_of(bytes: &[u8]) -> (String, String) {
        let envelope = serde_json::from_slice::<Envelope>(bytes).ok();
        explain(envelope, bytes, &Secret::new("unused-secret"))
    }

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        Reply {
            status: StatusCode::from_u16(status).unwrap(),
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_secret_echoed_in_any_form_or_place_is_blanked_out() {
        let token = Secret::new(format!("eyJ.{}.sig", "x".repeat(300)));
        let padded = format!("{}{}", "p".repeat(110), token.expose());
        let answers = [
            reply(
                302,
                &[(
                    "location",
                    &format!("https://sso.example/next?t={}", token.expose()),
                )],
                "",
            ),
            reply(
                500,
                &[],
                &serde_json::json!({"messages": [{"code": "x", "message": padded}]}).to_string(),
            ),
            reply(502, &[], &format!("<html>{padded}</html>")),
        ];
        for answer in &answers {
            let shown = judge(answer, &token).message().to_string();
            assert!(!shown.contains("eyJ.xxx"), "{shown}");
            assert!(!shown.contains(&"x".repeat(20)), "{shown}");
        }

        let password = Secret::new(r#"pa"ss\word/?"#);
        let echoed = serde_json::json!({"password": password.expose()}).to_string();
        let shown = hide(
            &format!("rejected {echoed} and {}", "pa%22ss%5Cword%2F%3F"),
            &password,
        );
        assert_eq!(
            shown,
            r#"rejected {"password":"[redacted]"} and [redacted]"#
        );
    }

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
            client.event_path("../login?x=1#y"),
            "/prefix/api-admin/customer/..%2Flogin%3Fx%3D1%23y/communication/rts"
        );
        assert_eq!(
            client.event_path("a%2Fb"),
            "/prefix/api-admin/customer/a%252Fb/communication/rts"
        );
    }

    #[test]
    fn bodies_of_any_shape_give_a_safe_message() {
        let json = br#"{"messages":[{"code":"customer_not_found","level":"error","message":"No such customer"}]}"#;
        assert_eq!(
            message_of(json),
            ("customer_not_found".into(), "No such customer".into())
        );
        let html = b"<html><body><h1>502 Bad Gateway</h1>\n<p>nginx</p></body></html>";
        assert_eq!(message_of(html).1, "502 Bad Gateway nginx");
        assert_eq!(message_of(b""), (String::new(), String::new()));
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
