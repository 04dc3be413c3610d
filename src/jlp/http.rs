//! HTTP/1.1 to the one JLP host, over kept-alive connections.
//!
//! A request borrows an idle connection, or opens one, and gives it back
//! once its answer has been read in full. There is a single host, so the
//! idle connections are one short list: the most recently used is taken
//! first, and any left idle for [`IDLE_LIMIT`] are closed, before the
//! server closes them under us.
//!
//! Connections go straight to the host, through a proxy's `CONNECT` tunnel
//! for HTTPS, or to a forward proxy for plain HTTP, as the usual
//! `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` variables say.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, PROXY_AUTHORIZATION, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::ServerName;
use tower_service::Service;
use tracing::debug;

/// Many servers close idle connections after 5 s; reusing one they are
/// closing fails the next request.
const IDLE_LIMIT: Duration = Duration::from_secs(2);

/// Most of an answer's body that is ever read.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a request got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HttpError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("timed out")]
    Timeout,
    #[error("the connection broke while reading the answer: {0}")]
    Broken(String),
    #[error("the request failed: {0}")]
    Request(String),
}

/// An answer, its body cut at [`MAX_BODY_BYTES`].
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// How connections are made.
#[derive(Debug, Clone)]
pub struct Options {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// A PEM file of extra certificate authorities to trust.
    pub ca_cert: Option<std::path::PathBuf>,
    /// Whether the proxy variables apply; loopback hosts never use them.
    pub use_proxy: bool,
}

/// Connections to one origin, shared by every request of a run.
pub struct Http {
    origin: Uri,
    /// `scheme://host[:port]`, what a forward proxy is asked for.
    origin_text: String,
    host: HeaderValue,
    user_agent: HeaderValue,
    route: Route,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Clone)]
enum Route {
    Direct(HttpConnector),
    /// Plain HTTP through a forward proxy: requests name the whole URL.
    Forward {
        proxy: Uri,
        auth: Option<HeaderValue>,
        connector: HttpConnector,
    },
    /// HTTPS through a proxy's `CONNECT` tunnel.
    Tunnel(Tunnel<HttpConnector>),
}

struct Idle {
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

impl Http {
    /// Connections to the scheme, host and port of `base`.
    pub fn new(base: &url::Url, options: &Options) -> anyhow::Result<Http> {
        let host = base
            .host_str()
            .ok_or_else(|| anyhow::anyhow!("`{base}` names no host"))?;
        let port = base
            .port_or_known_default()
            .ok_or_else(|| anyhow::anyhow!("`{base}` names no port"))?;
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let origin: Uri = format!("{}://{host}:{port}", base.scheme()).parse()?;
        let origin_text = format!("{}://{authority}", base.scheme());
        // The certificate file is checked whatever the scheme, so that a
        // mistake in it shows before the day the base turns to https.
        let tls_connector = tls_connector(options)?;
        let tls = match base.scheme() {
            "https" => Some((tls_connector, server_name(host)?)),
            _ => None,
        };
        Ok(Http {
            route: route(&origin, options)?,
            host: HeaderValue::try_from(authority)?,
            user_agent: HeaderValue::from_static(concat!("jlp-rts/", env!("CARGO_PKG_VERSION"))),
            origin,
            origin_text,
            tls,
            connect_timeout: options.connect_timeout,
            request_timeout: options.request_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Connections to the same origin, none of them shared with this one:
    /// for requests made on another thread.
    pub fn sibling(&self) -> Http {
        Http {
            origin: self.origin.clone(),
            origin_text: self.origin_text.clone(),
            host: self.host.clone(),
            user_agent: self.user_agent.clone(),
            route: self.route.clone(),
            tls: self.tls.clone(),
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// `POST path` (already percent-encoded) with `headers` and `body`.
    pub async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Reply, HttpError> {
        let request = self.request(path, headers, body)?;
        tokio::time::timeout(self.request_timeout, self.exchange(request))
            .await
            .map_err(|_elapsed| HttpError::Timeout)?
    }

    fn request(
        &self,
        path: &str,
        mut headers: HeaderMap,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let target = match &self.route {
            Route::Forward { .. } => Uri::try_from(format!("{}{path}", self.origin_text)),
            Route::Direct(_) | Route::Tunnel(_) => Uri::try_from(path),
        }
        .map_err(|e| HttpError::Request(e.to_string()))?;
        headers.insert(HOST, self.host.clone());
        headers.insert(USER_AGENT, self.user_agent.clone());
        if let Route::Forward {
            auth: Some(auth), ..
        } = &self.route
        {
            headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }

        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// One request and its answer, on a kept-alive connection when there
    /// is one.
    async fn exchange(&self, request: Request<Full<Bytes>>) -> Result<Reply, HttpError> {
        let (mut sender, reused) = self.checkout().await?;
        // A server may close a kept-alive connection just as a request goes
        // out on it; that request is sent once more, on a fresh connection.
        // Sending twice is safe: every event carries its Idempotency-Key.
        let spare = reused.then(|| copy(&request));
        let response = match sender.try_send_request(request).await {
            Ok(response) => response,
            Err(mut refused) => {
                let unsent = refused.take_message();
                let closed = closed_under_us(refused.error());
                match unsent.or(spare.filter(|_| closed)) {
                    Some(request) if reused => {
                        debug!("a kept-alive connection had closed; sending on another");
                        sender = self.connect().await?;
                        sender.send_request(request).await.map_err(failed)?
                    }
                    _ => return Err(failed(refused.into_error())),
                }
            }
        };

        let (parts, body) = response.into_parts();
        let (body, whole) = read_capped(body).await?;
        if whole {
            self.checkin(sender);
        }
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// An idle connection that is still open, or a new one; `true` when
    /// it was kept alive from an earlier request.
    async fn checkout(&self) -> Result<(SendRequest<Full<Bytes>>, bool), HttpError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.connect().await?, false))
    }

    fn take_idle(&self) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = self.idle.lock().expect("connection list poisoned");
        // Oldest first: close those that idled too long.
        let now = Instant::now();
        let stale = idle.partition_point(|c| now.duration_since(c.since) > IDLE_LIMIT);
        idle.drain(..stale);
        idle.pop().map(|c| c.sender)
    }

    fn checkin(&self, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let since = Instant::now();
        let mut idle = self.idle.lock().expect("connection list poisoned");
        idle.push(Idle { sender, since });
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        tokio::time::timeout(self.connect_timeout, self.open())
            .await
            .map_err(|_elapsed| HttpError::Connect("timed out".into()))?
    }

    async fn open(&self) -> Result<SendRequest<Full<Bytes>>, HttpError> {
        let tcp = match &self.route {
            Route::Direct(connector) => dial(connector.clone(), self.origin.clone()).await?,
            Route::Forward {
                proxy, connector, ..
            } => dial(connector.clone(), proxy.clone()).await?,
            Route::Tunnel(tunnel) => dial(tunnel.clone(), self.origin.clone()).await?,
        };
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| HttpError::Connect(innermost(&e)))?;
                handshake(tls).await
            }
        }
    }
}

/// Where connections to `origin` go, by the proxy variables.
fn route(origin: &Uri, options: &Options) -> anyhow::Result<Route> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let intercept = if options.use_proxy {
        Matcher::from_env().intercept(origin)
    } else {
        None
    };
    let Some(proxy) = intercept else {
        return Ok(Route::Direct(connector));
    };
    // Known limit: only plain-HTTP proxies are spoken to. An `https://`
    // proxy would get its CONNECT request, credentials included, in clear
    // text, and a SOCKS proxy would get HTTP; both are refused instead.
    if proxy.uri().scheme_str() != Some("http") {
        anyhow::bail!(
            "the proxy `{}` (from the HTTPS_PROXY, HTTP_PROXY or ALL_PROXY variable) is not \
             an http:// proxy, the only kind jlp-rts speaks to; give an http:// proxy, or \
             exempt this host with NO_PROXY",
            redacted(proxy.uri())
        );
    }
    debug!(proxy = %redacted(proxy.uri()), "connecting through a proxy");
    let auth = proxy.basic_auth().cloned().map(|mut auth| {
        auth.set_sensitive(true);
        auth
    });
    if origin.scheme_str() == Some("https") {
        let tunnel = Tunnel::new(proxy.uri().clone(), connector);
        return Ok(Route::Tunnel(match auth {
            Some(auth) => tunnel.with_auth(auth),
            None => tunnel,
        }));
    }
    Ok(Route::Forward {
        proxy: proxy.uri().clone(),
        auth,
        connector,
    })
}

/// A proxy's address without any user name or password in it.
fn redacted(uri: &Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let default_port = if scheme == "https" { 443 } else { 80 };
    let port = uri.port_u16().unwrap_or(default_port);
    format!("{scheme}://{}:{port}", uri.host().unwrap_or(""))
}

async fn dial<C>(mut connector: C, to: Uri) -> Result<TcpStream, HttpError>
where
    C: Service<Uri, Response = TokioIo<TcpStream>>,
    C::Error: std::error::Error + 'static,
{
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| HttpError::Connect(innermost(&e)))?;
    let io = connector
        .call(to)
        .await
        .map_err(|e| HttpError::Connect(innermost(&e)))?;
    Ok(io.into_inner())
}

async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::Connect(innermost(&e)))?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(error = %innermost(&error), "connection closed");
        }
    });
    Ok(sender)
}

/// The body, up to [`MAX_BODY_BYTES`]; `true` when it was read to its end,
/// so that the connection can carry another request.
async fn read_capped(mut body: Incoming) -> Result<(Vec<u8>, bool), HttpError> {
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| HttpError::Broken(innermost(&e)))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let room = MAX_BODY_BYTES - read.len();
        if data.len() > room {
            read.extend_from_slice(&data[..room]);
            return Ok((read, false));
        }
        read.extend_from_slice(&data);
    }
    Ok((read, true))
}

/// The connection went away before any answer came: closed, reset or
/// broken under the request, as a server closing an idle connection does.
fn closed_under_us(error: &hyper::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};

    if error.is_incomplete_message() || error.is_canceled() {
        return true;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(inner) = cause {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
            );
        }
        cause = inner.source();
    }
    false
}

fn copy(request: &Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.headers_mut() = request.headers().clone();
    copy
}

fn failed(error: hyper::Error) -> HttpError {
    if error.is_incomplete_message() || error.is_closed() || error.is_canceled() {
        HttpError::Broken(innermost(&error))
    } else {
        HttpError::Request(innermost(&error))
    }
}

/// The deepest cause of an error: the one that says what happened.
fn innermost(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

fn tls_connector(options: &Options) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca_cert {
        add_certificates(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn add_certificates(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let pem = std::fs::read(path)
        .with_context(|| format!("cannot read the CA certificate `{}`", path.display()))?;
    let mut added = 0;
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate
            .with_context(|| format!("`{}` is not a PEM certificate", path.display()))?;
        roots
            .add(certificate)
            .with_context(|| format!("`{}` holds an unusable certificate", path.display()))?;
        added += 1;
    }
    anyhow::ensure!(added > 0, "`{}` holds no PEM certificate", path.display());
    Ok(())
}

fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|_| anyhow::anyhow!("`{host}` is not a name a certificate can be checked against"))
}
