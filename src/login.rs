//! One login shared by every worker, renewed once for all of them.
//!
//! JLP hands out an access token and a refresh token but does not publish how
//! to refresh. When the access token stops being accepted, the first worker
//! to notice renews it (through `--refresh-path` when configured, otherwise
//! with a fresh login) while the others wait for that one renewal; nobody
//! logs in on their own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::jlp::{Access, Account, Client, LoginError, Tokens};
use crate::secret::Secret;

/// A login attempt that meets a busy or unreachable server is tried this many
/// times in all.
const LOGIN_ATTEMPTS: u32 = 3;

pub struct Session {
    client: Client,
    username: String,
    password: Secret,
    refresh_path: Option<String>,
    current: RwLock<Current>,
    /// Held by the one renewal in progress; holds the refusal that ended
    /// renewing for good, so that workers queued behind it do not try the
    /// same password again.
    renewing: tokio::sync::Mutex<Option<LoginError>>,
    logins: AtomicU64,
    /// Renewals since a token last got a real answer; a server that refuses
    /// every new token must not cause a login per row.
    fruitless_renewals: AtomicU64,
}

/// Renewals in a row whose token was refused at once before giving up.
const MAX_FRUITLESS_RENEWALS: u64 = 3;

struct Current {
    access: Arc<Access>,
    refresh: Option<Secret>,
    /// Bumped on every renewal, so a worker can tell whether the token it
    /// saw refused has already been replaced.
    generation: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Logs in; a busy or unreachable server is tried again a few times.
    pub async fn start(
        client: Client,
        username: String,
        password: Secret,
        refresh_path: Option<String>,
    ) -> Result<(Arc<Session>, Account), LoginError> {
        let (tokens, account) = login_with_retries(&client, &username, &password).await?;
        info!(account = %account.name, "logged in");
        let session = Session {
            client,
            username,
            password,
            refresh_path,
            current: RwLock::new(Current::from(tokens, 0)),
            renewing: tokio::sync::Mutex::new(None),
            logins: AtomicU64::new(1),
            fruitless_renewals: AtomicU64::new(0),
        };
        Ok((Arc::new(session), account))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The access token to use now, and its generation.
    pub fn token(&self) -> (Arc<Access>, u64) {
        let current = self.current.read().expect("token lock poisoned");
        (Arc::clone(&current.access), current.generation)
    }

    /// How many logins this run made, the first included.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// The current token got a real answer from the API.
    pub fn token_works(&self) {
        self.fruitless_renewals.store(0, Ordering::Relaxed);
    }

    /// Replaces the token of generation `refused`, unless another worker
    /// already has.
    pub async fn renew(&self, refused: u64) -> Result<(), LoginError> {
        let mut refusal = self.renewing.lock().await;
        if let Some(error) = refusal.as_ref() {
            return Err(error.clone());
        }
        if self.token().1 != refused {
            return Ok(());
        }
        if self.fruitless_renewals.fetch_add(1, Ordering::Relaxed) >= MAX_FRUITLESS_RENEWALS {
            return Err(LoginError::Refused {
                status: 401,
                message: "the JLP refuses every newly issued token for RTS events".into(),
            });
        }

        let tokens = match self.refreshed().await {
            Some(tokens) => tokens,
            None => {
                self.logins.fetch_add(1, Ordering::Relaxed);
                match login_with_retries(&self.client, &self.username, &self.password).await {
                    Ok((tokens, _account)) => tokens,
                    Err(error) => {
                        if !error.is_transient() {
                            *refusal = Some(error.clone());
                        }
                        return Err(error);
                    }
                }
            }
        };

        let mut current = self.current.write().expect("token lock poisoned");
        *current = Current::from(tokens, refused + 1);
        info!(generation = current.generation, "login renewed");
        Ok(())
    }

    /// New tokens from the configured refresh call, if there is one and it
    /// works.
    async fn refreshed(&self) -> Option<Tokens> {
        let path = self.refresh_path.as_deref()?;
        let refresh = self
            .current
            .read()
            .expect("token lock poisoned")
            .refresh
            .clone()?;
        match self.client.refresh(path, &refresh).await {
            Ok(tokens) => Some(tokens),
            Err(error) => {
                warn!(%error, "refresh call failed; logging in again instead");
                None
            }
        }
    }
}

impl Current {
    fn from(tokens: Tokens, generation: u64) -> Current {
        Current {
            access: Arc::new(tokens.access),
            refresh: tokens.refresh,
            generation,
        }
    }
}

async fn login_with_retries(
    client: &Client,
    username: &str,
    password: &Secret,
) -> Result<(Tokens, Account), LoginError> {
    let mut attempt = 1;
    loop {
        match client.login(username, password).await {
            Err(error) if error.is_transient() && attempt < LOGIN_ATTEMPTS => {
                let wait = match &error {
                    LoginError::Unexpected {
                        retry_after: Some(wait),
                        ..
                    } => *wait,
                    _ => Duration::from_secs(1 << attempt),
                };
                debug!(%error, attempt, ?wait, "login failed; trying again");
                tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// `jlp-rts login`: logs in once and shows who we are.
pub async fn check(connection: crate::settings::Connection) -> Result<u8, crate::Failure> {
    let (base_url, _sandbox) = crate::sandbox::reach(&connection.target).await?;
    let client = Client::new(&base_url, &connection.client).map_err(crate::Failure::Usage)?;
    let (_, account) = login_with_retries(&client, &connection.username, &connection.password)
        .await
        .map_err(crate::Failure::login)?;
    let mut out = format!(
        "Logged in to {base_url} as {} <{}>\n",
        account.name, account.email
    );
    out += &format!(
        "The account may record RTS events ({}).\n",
        crate::jlp::RTS_CAPABILITY
    );
    for channel in &account.channels {
        let default = if channel.is_default { " (default)" } else { "" };
        out += &format!(
            "  channel {}: {}{default}\n",
            channel.channel_key, channel.channel_name
        );
    }
    crate::say(&out);
    Ok(0)
}
