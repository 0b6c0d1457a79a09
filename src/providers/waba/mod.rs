//! WhatsApp Business API, on-premises client: `GET /v1/support` and `GET /v1/health` of one
//! deployment, polled together.
//!
//! Both answers come in two shapes: a single node (`{"support":{...fields...}}`) or a
//! multi-connect/HA deployment whose nodes are keyed by `hostname:container-id`. The shape is told
//! by what the values hold, not by the look of the keys.
//!
//! `/v1/support` also holds the environment (`env`), the phone number (`debug_info`), encryption
//! (`e2e`) and database (`db_info`) details: those are skipped unread by the field-by-field reader
//! below, so they never exist in memory as values we keep.
//!
//! With `auth: login` the token comes from `POST /v1/users/login`; it is kept between polls,
//! replaced before it expires or at once when the gateway answers 401, and a refused login is not
//! tried again before the next poll.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};

use crate::config::{GatewayConfig, WabaAuth, WabaConfig};
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::http::fetch;
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
mod login;
mod render;
pub mod send;
mod support;

use login::Login;
pub use login::{parse_login, parse_utc, Issued, TokenLife};
pub use support::{parse, GatewayStatus, Node, SocketState, Status, VOLUMES};

crate::exposition::families! {
    /// WhatsApp Business API series, per node (`node` is empty on a single node).
    pub enum WabaFamily in FAMILIES {
        SocketState => "whatsapp_waba_socket_state", Gauge, "WhatsApp Business API: socket_conn of each node, as a state set.";
        GatewayStatus => "whatsapp_waba_gateway_status", Gauge, "WhatsApp Business API: gateway_status from /v1/health, as a state set.";
        FreeSpace => "whatsapp_waba_free_space_bytes", Gauge, "WhatsApp Business API: bytes free on each volume.";
        BuildExpiry => "whatsapp_waba_build_expiry_timestamp_seconds", Gauge, "WhatsApp Business API: when the client build expires (Unix time).";
        BuildInfo => "whatsapp_waba_build_info", Gauge, "WhatsApp Business API: build information, value 1.";
        NodeInfo => "whatsapp_waba_node_info", Gauge, "WhatsApp Business API: multi-connect node and its role, value 1.";
        Shards => "whatsapp_waba_shards", Gauge, "WhatsApp Business API: shards the node owns.";
        TokenExpiry => "whatsapp_waba_token_expiry_timestamp_seconds", Gauge, "WhatsApp Business API: when the login token expires (Unix time).";
    }
}

/// A token whose answer gives no expiry is assumed to live this long, as the API's default.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// A token is replaced when less than this, or a tenth of its life, is left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(3_600);
/// Nodes beyond this many in one answer are ignored: the label set stays bounded.
pub const MAX_NODES: usize = 64;

/// The client's health is not fresher than this: `/v1/health` answers from a cache that is
/// refreshed every few minutes (every 5 minutes on hosted deployments, whose providers ask not to
/// call it more often), so a shorter interval repeats the same answer.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
pub const MIN_INTERVAL_WHY: &str =
    "/v1/health answers from a cache refreshed every few minutes (every 5 minutes on hosted deployments)";

pub struct Source {
    client: reqwest::Client,
    support_url: String,
    health_url: String,
    auth: Auth,
}

enum Auth {
    /// The whole `Authorization` value: `Bearer TOKEN` or `Apikey KEY`.
    Fixed(Secret),
    Login(Box<Login>),
}

impl Source {
    pub fn new(gw: &GatewayConfig, cfg: &WabaConfig, client: reqwest::Client) -> Self {
        let fixed = |scheme: &str, token: &Secret| {
            Auth::Fixed(Secret::new(format!("{scheme} {}", token.expose())))
        };
        let auth = match &cfg.auth {
            WabaAuth::Bearer(token) => fixed("Bearer", token),
            WabaAuth::Apikey(key) => fixed("Apikey", key),
            WabaAuth::Login { username, password } => {
                Auth::Login(Box::new(Login::new(gw, username, password)))
            }
        };
        Source {
            client,
            support_url: format!("{}/v1/support", gw.url),
            health_url: format!("{}/v1/health", gw.url),
            auth,
        }
    }
}

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        let status = match &self.auth {
            Auth::Fixed(header) => self.fetch_status(header, timeout).await?,
            Auth::Login(login) => self.poll_logged_in(login, timeout).await?,
        };
        Ok(Box::new(status))
    }

    /// The login token's expiry outlives any one poll's outcome.
    fn write_kept(&self, w: &mut FragmentWriter) {
        if let Auth::Login(login) = &self.auth {
            if let Some(expiry) = login.kept_expiry() {
                w.sample(WabaFamily::TokenExpiry, &[], expiry);
            }
        }
    }
}

impl Source {
    async fn poll_logged_in(&self, login: &Login, timeout: Duration) -> Result<Status, PollError> {
        let (token, fresh) = login.token(&self.client, timeout).await?;
        match self.fetch_status(&token, timeout).await {
            // The token expired early or was revoked: one new login, one more try. A token just
            // issued that is refused is not a matter of expiry, and is not retried.
            Err(PollError::Unauthorized(401, _)) if !fresh => {
                login.forget(&token).await;
                let (token, _) = login.token(&self.client, timeout).await?;
                self.fetch_status(&token, timeout).await
            }
            other => other,
        }
    }

    async fn fetch_status(&self, auth: &Secret, timeout: Duration) -> Result<Status, PollError> {
        let (support, health) = tokio::join!(
            self.get(&self.support_url, auth, timeout),
            self.get(&self.health_url, auth, timeout)
        );
        let (support, health) = match (support, health) {
            (Ok(s), Ok(h)) => (s, h),
            // A 401 from either drives the new login, so it wins over other failures.
            (Err(e @ PollError::Unauthorized(401, _)), _)
            | (_, Err(e @ PollError::Unauthorized(401, _)))
            | (Err(e), _)
            | (_, Err(e)) => return Err(e),
        };
        parse(&support, &health)
    }

    async fn get(&self, url: &str, auth: &Secret, timeout: Duration) -> Result<Bytes, PollError> {
        let req = self
            .client
            .get(url)
            .timeout(timeout)
            .header(ACCEPT, "application/json")
            .header(AUTHORIZATION, header_value(auth)?);
        let answer = fetch(req, timeout).await?;
        answer.check_status()?;
        Ok(answer.body)
    }
}

/// An `Authorization` value, marked sensitive so that no debug output of the request shows it.
fn header_value(v: &Secret) -> Result<HeaderValue, PollError> {
    let mut h = HeaderValue::from_str(v.expose()).map_err(|_| {
        PollError::InvalidResponse("the token holds characters a header cannot carry".into())
    })?;
    h.set_sensitive(true);
    Ok(h)
}
