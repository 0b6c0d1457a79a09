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

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use crate::config::{GatewayConfig, WabaAuth};
use crate::error::PollError;
use crate::exposition::{Family, FragmentWriter};
use crate::gateway::unix_seconds;
use crate::http::fetch;
use crate::secret::Secret;

/// A token whose answer gives no expiry is assumed to live this long, as the API's default.
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(7 * 86_400);
/// A token is replaced when less than this, or a tenth of its life, is left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(3_600);
/// Nodes beyond this many in one answer are ignored: the label set stays bounded.
pub const MAX_NODES: usize = 64;

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
    pub fn new(cfg: &GatewayConfig, client: reqwest::Client) -> Result<Self, String> {
        let auth = match cfg.auth {
            WabaAuth::Bearer | WabaAuth::Apikey => {
                let token = cfg.token.as_ref().ok_or("needs token or token_file")?;
                let scheme = if cfg.auth == WabaAuth::Bearer {
                    "Bearer"
                } else {
                    "Apikey"
                };
                let value = Secret::new(format!("{scheme} {}", token.expose()));
                header_value(&value)
                    .map_err(|_| "token: holds characters an HTTP header cannot carry")?;
                Auth::Fixed(value)
            }
            WabaAuth::Login => Auth::Login(Box::new(Login::new(cfg)?)),
        };
        Ok(Source {
            client,
            support_url: format!("{}/v1/support", cfg.url),
            health_url: format!("{}/v1/health", cfg.url),
            auth,
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        let status = match &self.auth {
            Auth::Fixed(header) => self.fetch_status(header, timeout).await?,
            Auth::Login(login) => self.poll_logged_in(login, timeout).await?,
        };
        Ok(Box::new(status))
    }

    /// The login token's expiry outlives any one poll's outcome.
    pub fn write_kept(&self, w: &mut FragmentWriter) {
        if let Auth::Login(login) = &self.auth {
            if let Some(expiry) = login.kept_expiry() {
                w.sample(Family::WabaTokenExpiry, &[], expiry);
            }
        }
    }

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

// ---- login ----

struct Login {
    gateway: String,
    url: String,
    username: String,
    password: Secret,
    /// After a failed login, no new attempt for this long: about one poll interval.
    retry_gap: Duration,
    /// Held across a login, so that a poll and a `/probe` at the same moment log in once.
    session: tokio::sync::Mutex<Session>,
    /// The current token's expiry (Unix seconds), for `write_kept`, which cannot wait.
    expiry: Mutex<Option<f64>>,
}

#[derive(Default)]
struct Session {
    token: Option<Token>,
    failed: Option<(Instant, PollError)>,
}

struct Token {
    /// `Bearer TOKEN`.
    header: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

impl Login {
    fn new(cfg: &GatewayConfig) -> Result<Self, String> {
        let (Some(username), Some(password)) = (&cfg.username, &cfg.password) else {
            return Err("auth: login needs username and password".into());
        };
        // Polls start one interval apart, give or take the scheduler's lateness.
        let retry_gap = cfg.interval - cfg.interval / 10;
        Ok(Login {
            gateway: cfg.name.clone(),
            url: format!("{}/v1/users/login", cfg.url),
            username: username.clone(),
            password: password.clone(),
            retry_gap,
            session: tokio::sync::Mutex::new(Session::default()),
            expiry: Mutex::new(None),
        })
    }

    fn kept_expiry(&self) -> Option<f64> {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_expiry(&self, v: Option<f64>) {
        *self.expiry.lock().unwrap_or_else(|p| p.into_inner()) = v;
    }

    /// The `Authorization` value to use, and whether it was issued by this call.
    async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<(Secret, bool), PollError> {
        let mut s = self.session.lock().await;
        let now = Instant::now();
        if let Some(t) = s.token.as_ref().filter(|t| now < t.refresh_at) {
            return Ok((t.header.clone(), false));
        }
        let still_valid = s
            .token
            .as_ref()
            .filter(|t| now < t.expires_at)
            .map(|t| t.header.clone());
        if let Some((at, e)) = &s.failed {
            if now.duration_since(*at) < self.retry_gap {
                return still_valid.map(|h| (h, false)).ok_or_else(|| e.clone());
            }
        }
        match self.login(client, timeout).await {
            Ok(t) => {
                let header = t.header.clone();
                s.token = Some(t);
                s.failed = None;
                Ok((header, true))
            }
            Err(e) => {
                s.failed = Some((now, e.clone()));
                if let Some(h) = still_valid {
                    tracing::warn!(gateway = %self.gateway, reason = e.reason(), error = %e,
                        "cannot renew the login token; the current one is used until it expires");
                    return Ok((h, false));
                }
                s.token = None;
                self.set_expiry(None);
                Err(e)
            }
        }
    }

    /// Drops a token the gateway refused, unless another poll has replaced it already.
    async fn forget(&self, header: &Secret) {
        let mut s = self.session.lock().await;
        if s.token.as_ref().is_some_and(|t| t.header == *header) {
            s.token = None;
            self.set_expiry(None);
        }
    }

    async fn login(&self, client: &reqwest::Client, timeout: Duration) -> Result<Token, PollError> {
        let req = client
            .post(&self.url)
            .timeout(timeout)
            .header(ACCEPT, "application/json")
            .basic_auth(&self.username, Some(self.password.expose()));
        let answer = fetch(req, timeout).await?;
        answer.check_status().map_err(|e| match e {
            PollError::Unauthorized(code, _) => PollError::Unauthorized(code, ", login refused"),
            e => e,
        })?;
        let issued = parse_login(&answer.body)?;
        let header = Secret::new(format!("Bearer {}", issued.token.expose()));
        header_value(&header)?;
        let now = SystemTime::now();
        let life = TokenLife::new(issued.expires_after, unix_seconds(now));
        self.set_expiry(Some(life.expiry));
        tracing::debug!(gateway = %self.gateway, expiry = life.expiry, "logged in to the WhatsApp Business API");
        let start = Instant::now();
        Ok(Token {
            header,
            refresh_at: start + life.refresh_after,
            expires_at: start + life.lifetime,
        })
    }
}

/// What `POST /v1/users/login` gave.
#[derive(Debug)]
pub struct Issued {
    pub token: Secret,
    /// Unix seconds, when the answer told.
    pub expires_after: Option<i64>,
}

#[derive(Deserialize)]
struct LoginAnswer {
    #[serde(default)]
    users: Option<Vec<LoginUser>>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct LoginUser {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    expires_after: Option<Value>,
}

/// Parses a login answer: `{"users":[{"token":"...","expires_after":"2018-03-01 15:29:26+00:00"}]}`.
pub fn parse_login(body: &[u8]) -> Result<Issued, PollError> {
    let a: Option<LoginAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the login answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let user = a.users.unwrap_or_default().into_iter().next();
    let Some(LoginUser {
        token: Some(token),
        expires_after,
    }) = user.filter(|u| u.token.as_deref().is_some_and(|t| !t.is_empty()))
    else {
        return Err(PollError::InvalidResponse(
            "the login answer has no token".into(),
        ));
    };
    Ok(Issued {
        token: Secret::new(token),
        expires_after: expires_after
            .as_ref()
            .and_then(Value::as_str)
            .and_then(parse_utc),
    })
}

/// When a token expires and when to replace it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenLife {
    /// Unix seconds, as the gateway told it (or assumed).
    pub expiry: f64,
    pub lifetime: Duration,
    pub refresh_after: Duration,
}

impl TokenLife {
    pub fn new(expires_after: Option<i64>, now: f64) -> Self {
        let told = expires_after.map(|e| e as f64);
        let left = told.map(|e| e - now).filter(|s| s.is_finite() && *s > 0.0);
        // An expiry already past says more about the clocks than about the token: plan on the
        // default life then, and let a 401 tell when it really ends.
        let lifetime = left.map_or(DEFAULT_TOKEN_LIFETIME, Duration::from_secs_f64);
        let margin = REFRESH_MARGIN.min(lifetime / 10);
        TokenLife {
            expiry: told.unwrap_or(now + DEFAULT_TOKEN_LIFETIME.as_secs_f64()),
            lifetime,
            refresh_after: lifetime - margin,
        }
    }
}

// ---- the status ----

/// `socket_conn`: the node's connection to the WhatsApp servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    Up,
    Down,
    Connecting,
    UpReceivingOffline,
    Unknown,
}

pub const SOCKET_STATES: [&str; 5] = [
    "up",
    "down",
    "connecting",
    "up_receiving_offline",
    "unknown",
];

impl SocketState {
    pub fn from_text(s: &str) -> Self {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.join(" ").to_ascii_uppercase().as_str() {
            "UP" => SocketState::Up,
            "DN" => SocketState::Down,
            "SC" => SocketState::Connecting,
            "UP RECEIVING OFFLINE" => SocketState::UpReceivingOffline,
            _ => SocketState::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        SOCKET_STATES[self as usize]
    }

    pub fn is_up(self) -> bool {
        matches!(self, SocketState::Up | SocketState::UpReceivingOffline)
    }
}

/// `gateway_status` from `/v1/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayStatus {
    Connected,
    Connecting,
    Disconnected,
    Uninitialized,
    Unregistered,
    Unknown,
}

pub const GATEWAY_STATES: [&str; 6] = [
    "connected",
    "connecting",
    "disconnected",
    "uninitialized",
    "unregistered",
    "unknown",
];

impl GatewayStatus {
    pub fn from_text(s: &str) -> Self {
        match s.trim().to_ascii_lowercase().as_str() {
            "connected" => GatewayStatus::Connected,
            "connecting" => GatewayStatus::Connecting,
            "disconnected" => GatewayStatus::Disconnected,
            "uninitialized" => GatewayStatus::Uninitialized,
            "unregistered" => GatewayStatus::Unregistered,
            _ => GatewayStatus::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        GATEWAY_STATES[self as usize]
    }
}

/// The volumes of `free_space_*`, in the order of [`Node::free_space`].
pub const VOLUMES: [&str; 4] = ["data", "logs", "media_incoming", "media_outgoing"];

/// What one node tells; every field may be missing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Node {
    /// `hostname:container-id` (sanitised) on multi-connect, empty on a single node.
    pub name: String,
    pub socket: Option<SocketState>,
    pub gateway_status: Option<GatewayStatus>,
    pub multi_connect: Option<bool>,
    pub role: Option<String>,
    pub shards: Option<u64>,
    pub version: Option<String>,
    pub db_engine: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    /// `expire_timestamp`, in Unix seconds.
    pub build_expiry: Option<i64>,
    pub free_space: [Option<f64>; 4],
}

/// The fields read from a node; everything else, `env` and `debug_info` first, is skipped unread.
const NODE_FIELDS: [&str; 13] = [
    "socket_conn",
    "multi_connect",
    "role",
    "shards",
    "version",
    "db_engine",
    "os_name",
    "os_version",
    "expire_timestamp",
    "free_space_data",
    "free_space_logs",
    "free_space_media_incoming",
    "free_space_media_outgoing",
];

impl Node {
    /// Reads the value of `key` if it is one we export; `false` leaves it for the caller.
    fn read_field<'de, A: MapAccess<'de>>(
        &mut self,
        key: &str,
        map: &mut A,
    ) -> Result<bool, A::Error> {
        if !NODE_FIELDS.contains(&key) {
            return Ok(false);
        }
        // Read as a JSON value first, so that a field of an unexpected type is absent rather
        // than the whole answer refused.
        let v: Value = map.next_value()?;
        let text = |max| v.as_str().map(|s| label_value(s, max));
        match key {
            "socket_conn" => self.socket = v.as_str().map(SocketState::from_text),
            "multi_connect" => self.multi_connect = super::lenient_bool(&v).ok().flatten(),
            "role" => self.role = text(32),
            "shards" => self.shards = count_shards(&v),
            "version" => self.version = text(64),
            "db_engine" => self.db_engine = text(16),
            "os_name" => self.os_name = text(64),
            "os_version" => self.os_version = text(32),
            "expire_timestamp" => self.build_expiry = v.as_str().and_then(parse_utc),
            _ => {
                if let Some(i) = VOLUMES
                    .iter()
                    .position(|vol| key.strip_prefix("free_space_") == Some(*vol))
                {
                    self.free_space[i] = number(&v);
                }
            }
        }
        Ok(true)
    }

    /// Whether an object is a node of a multi-connect answer rather than, say, `e2e`.
    fn looks_like_node(&self) -> bool {
        self.socket.is_some()
            || self.multi_connect.is_some()
            || self.role.is_some()
            || self.shards.is_some()
            || self.version.is_some()
    }

    fn has_build_info(&self) -> bool {
        self.version.is_some()
            || self.db_engine.is_some()
            || self.os_name.is_some()
            || self.os_version.is_some()
            || self.multi_connect.is_some()
    }
}

/// `shards` is a list of `[first, last]` ranges of shard ids (`[[-1, -1], [0, 0]]` on a primary
/// master owning the master shard and shard 0): the node owns the ids they cover. An entry of
/// another shape counts as one shard.
fn count_shards(v: &Value) -> Option<u64> {
    let ranges = v.as_array()?;
    Some(
        ranges
            .iter()
            .map(|r| match r.as_array().map(|a| a.as_slice()) {
                Some([a, b]) => match (a.as_i64(), b.as_i64()) {
                    (Some(a), Some(b)) if b >= a => b.abs_diff(a).saturating_add(1),
                    _ => 1,
                },
                _ => 1,
            })
            .fold(0u64, u64::saturating_add),
    )
}

/// A number, or a number written as a string; free space near 2^63 stays as f64 prints it.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

/// A label value from the gateway: a bounded length and a plain alphabet, whatever it sent.
pub fn label_value(s: &str, max: usize) -> String {
    s.trim()
        .chars()
        .take(max)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._:+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The `support` object: a node's fields at the top, or nodes keyed by `hostname:container-id`.
#[derive(Default)]
struct SupportBody {
    top: Node,
    nodes: Vec<Node>,
    /// Nodes beyond [`MAX_NODES`].
    dropped: usize,
}

impl<'de> Deserialize<'de> for SupportBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(SupportVisitor)
    }
}

struct SupportVisitor;

impl<'de> Visitor<'de> for SupportVisitor {
    type Value = SupportBody;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the support object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SupportBody, A::Error> {
        let mut body = SupportBody::default();
        while let Some(key) = map.next_key::<String>()? {
            if body.top.read_field(&key, &mut map)? {
                continue;
            }
            let Some(mut node) = map.next_value::<MaybeNode>()?.0 else {
                continue;
            };
            if !node.looks_like_node() {
                continue;
            }
            if body.nodes.len() >= MAX_NODES {
                body.dropped += 1;
                continue;
            }
            node.name = label_value(&key, 128);
            body.nodes.push(node);
        }
        Ok(body)
    }
}

/// Any JSON value: an object is read as a node, anything else skipped unread.
struct MaybeNode(Option<Node>);

impl<'de> Deserialize<'de> for MaybeNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeNodeVisitor)
    }
}

struct MaybeNodeVisitor;

impl<'de> Visitor<'de> for MaybeNodeVisitor {
    type Value = MaybeNode;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeNode, A::Error> {
        let mut node = Node::default();
        while let Some(key) = map.next_key::<String>()? {
            if !node.read_field(&key, &mut map)? {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(MaybeNode(Some(node)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeNode, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeNode(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<MaybeNode, E> {
        Ok(MaybeNode(None))
    }
}

#[derive(Deserialize)]
struct SupportAnswer {
    #[serde(default)]
    support: Option<SupportBody>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

#[derive(Deserialize)]
struct HealthAnswer {
    #[serde(default)]
    health: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    errors: Option<Vec<ApiError>>,
}

/// An entry of the API's `errors` list; its `title` and `details` are free text and stay unread.
#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<Value>,
}

/// Errors in a 200 answer mean it is not the status asked for; only their codes are told.
fn api_errors(errors: Option<&[ApiError]>) -> Result<(), PollError> {
    let errors = errors.unwrap_or_default();
    if errors.is_empty() {
        return Ok(());
    }
    let codes: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| match e.code.as_ref().and_then(Value::as_i64) {
            Some(c) => c.to_string(),
            None => "?".into(),
        })
        .collect();
    Err(PollError::InvalidResponse(format!(
        "the gateway answered with errors (codes {})",
        codes.join(", ")
    )))
}

/// What one poll of a deployment saw: its nodes, sorted by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    pub nodes: Vec<Node>,
    pub multi_connect: bool,
}

/// Parses the answers of `/v1/support` and `/v1/health` into one status.
pub fn parse(support: &[u8], health: &[u8]) -> Result<Status, PollError> {
    let mut status = parse_support(support)?;
    for (name, gateway_status, role) in parse_health(health)? {
        if let Some(node) = status.nodes.iter_mut().find(|n| n.name == name) {
            node.gateway_status = gateway_status;
            if node.role.is_none() {
                node.role = role;
            }
        } else if status.nodes.len() < MAX_NODES {
            // A node that only `/v1/health` knows of, such as one whose support call failed.
            status.nodes.push(Node {
                name,
                gateway_status,
                role,
                ..Node::default()
            });
        }
    }
    status.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(status)
}

fn parse_support(body: &[u8]) -> Result<Status, PollError> {
    let a: Option<SupportAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the support answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let body = a
        .support
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `support` object".into()))?;
    if body.dropped > 0 {
        tracing::debug!(
            ignored = body.dropped,
            "multi-connect answer with more nodes than exported"
        );
    }
    let multi_connect = body.top.socket.is_none() && !body.nodes.is_empty();
    let nodes = if multi_connect {
        body.nodes
    } else {
        vec![body.top]
    };
    if nodes.iter().all(|n| n.socket.is_none()) {
        return Err(PollError::InvalidResponse(
            "the support answer has no `socket_conn`".into(),
        ));
    }
    Ok(Status {
        nodes,
        multi_connect,
    })
}

type HealthEntry = (String, Option<GatewayStatus>, Option<String>);

/// `{"health":{"gateway_status":S}}`, or per node `{"health":{"host:container":{...}}}`.
fn parse_health(body: &[u8]) -> Result<Vec<HealthEntry>, PollError> {
    let a: Option<HealthAnswer> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let a = a.ok_or_else(|| PollError::InvalidResponse("the health answer is null".into()))?;
    api_errors(a.errors.as_deref())?;
    let health = a
        .health
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `health` object".into()))?;
    let entry = |name: String, obj: &serde_json::Map<String, Value>| {
        let status = obj
            .get("gateway_status")
            .and_then(Value::as_str)
            .map(GatewayStatus::from_text);
        let role = obj
            .get("role")
            .and_then(Value::as_str)
            .map(|r| label_value(r, 32));
        (name, status, role)
    };
    if health.contains_key("gateway_status") {
        return Ok(vec![entry(String::new(), &health)]);
    }
    Ok(health
        .iter()
        .filter_map(|(k, v)| v.as_object().map(|o| (k, o)))
        .filter(|(_, o)| o.contains_key("gateway_status") || o.contains_key("role"))
        .take(MAX_NODES)
        .map(|(k, o)| entry(label_value(k, 128), o))
        .collect())
}

impl super::Observation for Status {
    /// Every node that tells its socket has it up.
    fn connected(&self) -> bool {
        let mut sockets = self.nodes.iter().filter_map(|n| n.socket).peekable();
        sockets.peek().is_some() && sockets.all(SocketState::is_up)
    }

    fn write(&self, w: &mut FragmentWriter) {
        for n in &self.nodes {
            write_node(n, w);
        }
    }

    fn summary(&self) -> String {
        let socket = |n: &Node| n.socket.map_or("?", SocketState::as_str);
        if !self.multi_connect {
            let n = self.nodes.iter().find(|n| n.name.is_empty());
            return format!(
                "socket {}, gateway {}",
                n.map_or("?", socket),
                n.and_then(|n| n.gateway_status)
                    .map_or("?", GatewayStatus::as_str)
            );
        }
        let up = self
            .nodes
            .iter()
            .filter(|n| n.socket.is_some_and(SocketState::is_up))
            .count();
        format!("{} nodes, {up} with socket up", self.nodes.len())
    }
}

fn write_node(n: &Node, w: &mut FragmentWriter) {
    let node = [("node", n.name.as_str())];
    if let Some(s) = n.socket {
        w.state_set(
            Family::WabaSocketState,
            &node,
            "state",
            &SOCKET_STATES,
            s.as_str(),
        );
    }
    if let Some(g) = n.gateway_status {
        w.state_set(
            Family::WabaGatewayStatus,
            &node,
            "status",
            &GATEWAY_STATES,
            g.as_str(),
        );
    }
    for (volume, free) in VOLUMES.iter().zip(n.free_space) {
        if let Some(bytes) = free {
            w.sample(
                Family::WabaFreeSpace,
                &[("node", &n.name), ("volume", volume)],
                bytes,
            );
        }
    }
    if let Some(t) = n.build_expiry {
        w.sample(Family::WabaBuildExpiry, &node, t as f64);
    }
    if n.has_build_info() {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let multi = n
            .multi_connect
            .map_or("", |m| if m { "true" } else { "false" });
        w.sample(
            Family::WabaBuildInfo,
            &[
                ("node", &n.name),
                ("version", &s(&n.version)),
                ("db_engine", &s(&n.db_engine)),
                ("os_name", &s(&n.os_name)),
                ("os_version", &s(&n.os_version)),
                ("multi_connect", multi),
            ],
            1.0,
        );
    }
    if let Some(role) = &n.role {
        w.sample(
            Family::WabaNodeInfo,
            &[("node", &n.name), ("role", role)],
            1.0,
        );
    }
    if let Some(shards) = n.shards {
        w.sample(Family::WabaShards, &node, shards as f64);
    }
}

// ---- dates ----

/// A civil date and time as the API writes them, in Unix seconds: `2018-09-27T14:26:07` (no
/// zone: UTC), `2018-03-01 15:29:26+00:00`; also `Z`, `+hhmm`, `+hh` and fractions of a second.
pub fn parse_utc(s: &str) -> Option<i64> {
    let mut c = Cursor(s.trim().as_bytes());
    let year = c.digits(4)?;
    c.expect(b'-')?;
    let month = c.digits(2)?;
    c.expect(b'-')?;
    let day = c.digits(2)?;
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    if c.eat(b'T') || c.eat(b't') || c.eat(b' ') {
        hour = c.digits(2)?;
        c.expect(b':')?;
        minute = c.digits(2)?;
        if c.eat(b':') {
            second = c.digits(2)?;
            if c.eat(b'.') || c.eat(b',') {
                c.fraction()?;
            }
        }
    }
    let offset = c.zone()?;
    let valid = (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour < 24
        && minute < 60
        && second <= 60;
    valid.then(|| {
        days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second - offset
    })
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn eat(&mut self, b: u8) -> bool {
        match self.0.split_first() {
            Some((&first, rest)) if first == b => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, b: u8) -> Option<()> {
        self.eat(b).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<i64> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        if !head.iter().all(u8::is_ascii_digit) {
            return None;
        }
        self.0 = rest;
        Some(head.iter().fold(0, |v, d| v * 10 + i64::from(d - b'0')))
    }

    fn fraction(&mut self) -> Option<()> {
        let n = self.0.iter().take_while(|b| b.is_ascii_digit()).count();
        self.0 = self.0.get(n..)?;
        (n > 0).then_some(())
    }

    /// The zone's offset east of UTC, in seconds; none means UTC.
    fn zone(&mut self) -> Option<i64> {
        if self.0.is_empty() || self.0 == b"Z" || self.0 == b"z" {
            return Some(0);
        }
        let sign = if self.eat(b'+') {
            1
        } else if self.eat(b'-') {
            -1
        } else {
            return None;
        };
        let hours = self.digits(2)?;
        let minutes = match self.0 {
            [] => 0,
            _ => {
                self.eat(b':');
                self.digits(2)?
            }
        };
        (self.0.is_empty() && hours < 24 && minutes < 60)
            .then_some(sign * (hours * 3_600 + minutes * 60))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Observation;

    /// The seed's single-node answer, its `#` comments removed and its placeholders filled in.
    const SINGLE: &str = r#"{ "support": { "context": "healthcheck", "db_engine": "MYSQL",
        "db_info": [ "mysql-driver-8.0.19" ], "debug_info": "+5511999998888",
        "description": "whatsapp-build-version", "device_iso8601": "2018-09-20T10:00:00",
        "e2e": { "identity_timestamp": "id-timestamp", "registration_id": 12345 },
        "env": [ "WA_DB_PASSWORD=env-SECRET-pw" ], "expire_timestamp": "2018-09-27T14:26:07",
        "free_space_data": 9223372036853727000, "free_space_logs": 14269902848,
        "free_space_media_incoming": 9223372036853727000,
        "free_space_media_outgoing": 9223372036853727000, "lc": "en", "lg": "US",
        "multi_connect": false, "os_name": "ubuntu-x86_64", "os_version": "16.04",
        "schema": { "axolotl": 1, "callback": 2, "cluster": 3, "config": 4, "contact": 5,
        "jobqueue": 6, "message": 7 }, "socket_conn": "UP", "version": "v2.41.3" } }"#;

    /// The seed's multi-connect answer, with three nodes.
    const MULTI: &str = r#"{ "support": {
        "waba-master-1:3f2a9c1b7d4e": { "multi_connect": true, "role": "primary_master",
            "shards": [[-1, -1]], "context": "healthcheck", "db_engine": "PGSQL",
            "db_info": [ "pg" ], "debug_info": "+5511999998888", "description": "build",
            "env": ["A=env-SECRET-pw"], "socket_conn": "UP", "version": "v2.41.3" },
        "waba-core-1:1a2b3c4d5e6f": { "multi_connect": true, "role": "coreapp",
            "shards": [[0, 0]], "db_engine": "PGSQL", "debug_info": "+5511999998888",
            "socket_conn": "DN", "version": "v2.41.3" },
        "waba-core-2:6f5e4d3c2b1a": { "multi_connect": true, "role": "coreapp",
            "shards": [[1, 1]], "socket_conn": "UP receiving offline", "version": "v2.41.3",
            "free_space_data": 1024 } },
        "meta": { "api_status": "stable", "version": "2.41.3" } }"#;

    const HEALTH_SINGLE: &str = r#"{"health":{"gateway_status":"connected"}}"#;
    const HEALTH_MULTI: &str = r#"{"health":{
        "waba-master-1:3f2a9c1b7d4e":{"gateway_status":"connected","role":"primary_master"},
        "waba-core-1:1a2b3c4d5e6f":{"gateway_status":"disconnected","role":"coreapp"},
        "waba-core-2:6f5e4d3c2b1a":{"gateway_status":"connecting","role":"coreapp"}}}"#;

    fn render(s: &Status) -> String {
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        let f = w.finish();
        crate::exposition::Family::ALL
            .iter()
            .map(|fam| f.family(*fam).to_string())
            .collect()
    }

    #[test]
    fn single_node_seed() {
        let s = parse(SINGLE.as_bytes(), HEALTH_SINGLE.as_bytes()).unwrap();
        assert!(!s.multi_connect);
        assert_eq!(
            s.nodes,
            vec![Node {
                name: String::new(),
                socket: Some(SocketState::Up),
                gateway_status: Some(GatewayStatus::Connected),
                multi_connect: Some(false),
                role: None,
                shards: None,
                version: Some("v2.41.3".into()),
                db_engine: Some("MYSQL".into()),
                os_name: Some("ubuntu-x86_64".into()),
                os_version: Some("16.04".into()),
                build_expiry: Some(1_538_058_367),
                free_space: [
                    Some(9223372036853727000.0),
                    Some(14269902848.0),
                    Some(9223372036853727000.0),
                    Some(9223372036853727000.0)
                ],
            }]
        );
        assert!(s.connected());
        let text = render(&s);
        assert!(text.contains(
            "whatsapp_waba_free_space_bytes{node=\"\",volume=\"data\"} 9223372036853727000\n"
        ));
        assert!(text.contains("whatsapp_waba_socket_state{node=\"\",state=\"up\"} 1\n"));
        assert!(text.contains("whatsapp_waba_build_info{node=\"\",version=\"v2.41.3\",db_engine=\"MYSQL\",os_name=\"ubuntu-x86_64\",os_version=\"16.04\",multi_connect=\"false\"} 1\n"));
        assert!(
            text.contains("whatsapp_waba_build_expiry_timestamp_seconds{node=\"\"} 1538058367\n")
        );
        assert!(!text.contains("whatsapp_waba_node_info"));
        assert!(!text.contains("whatsapp_waba_shards"));
        assert_eq!(s.summary(), "socket up, gateway connected");
    }

    #[test]
    fn multi_connect_seed() {
        let s = parse(MULTI.as_bytes(), HEALTH_MULTI.as_bytes()).unwrap();
        assert!(s.multi_connect);
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "waba-core-1:1a2b3c4d5e6f",
                "waba-core-2:6f5e4d3c2b1a",
                "waba-master-1:3f2a9c1b7d4e"
            ]
        );
        assert_eq!(s.nodes[0].socket, Some(SocketState::Down));
        assert_eq!(s.nodes[1].socket, Some(SocketState::UpReceivingOffline));
        assert_eq!(s.nodes[0].gateway_status, Some(GatewayStatus::Disconnected));
        assert_eq!(s.nodes[2].role.as_deref(), Some("primary_master"));
        assert_eq!(s.nodes[2].shards, Some(1));
        assert!(!s.connected(), "one node is down");
        let text = render(&s);
        assert!(text.contains(
            "whatsapp_waba_socket_state{node=\"waba-core-1:1a2b3c4d5e6f\",state=\"down\"} 1\n"
        ));
        assert!(text.contains(
            "whatsapp_waba_node_info{node=\"waba-master-1:3f2a9c1b7d4e\",role=\"primary_master\"} 1\n"
        ));
        assert!(text.contains(
            "whatsapp_waba_gateway_status{node=\"waba-core-2:6f5e4d3c2b1a\",status=\"connecting\"} 1\n"
        ));
        assert!(text.contains("whatsapp_waba_free_space_bytes{node=\"waba-core-2:6f5e4d3c2b1a\",volume=\"data\"} 1024\n"));
        assert_eq!(s.summary(), "3 nodes, 2 with socket up");
    }

    #[test]
    fn private_fields_are_not_kept() {
        for (support, health) in [(SINGLE, HEALTH_SINGLE), (MULTI, HEALTH_MULTI)] {
            let s = parse(support.as_bytes(), health.as_bytes()).unwrap();
            let all = format!("{s:?}{}{}", render(&s), s.summary());
            for private in [
                "5511999998888",
                "env-SECRET-pw",
                "registration",
                "12345",
                "mysql-driver",
                "healthcheck",
            ] {
                assert!(!all.contains(private), "{private} in {all}");
            }
        }
    }

    #[test]
    fn shards_count_the_ids_their_ranges_cover() {
        let n = |v: &str| count_shards(&serde_json::from_str(v).unwrap());
        assert_eq!(n("[[-1, -1], [0, 0]]"), Some(2));
        assert_eq!(n("[[-1, -1]]"), Some(1));
        assert_eq!(n("[]"), Some(0));
        assert_eq!(n("[[0, 3]]"), Some(4));
        assert_eq!(n("[[3, 0], \"x\"]"), Some(2));
        assert_eq!(n("null"), None);
    }

    #[test]
    fn every_socket_conn_value() {
        for (text, want) in [
            ("UP", SocketState::Up),
            ("DN", SocketState::Down),
            ("SC", SocketState::Connecting),
            ("UP receiving offline", SocketState::UpReceivingOffline),
            ("up  Receiving OFFLINE", SocketState::UpReceivingOffline),
            ("UNK", SocketState::Unknown),
            ("UP | DN", SocketState::Unknown),
            ("", SocketState::Unknown),
        ] {
            assert_eq!(SocketState::from_text(text), want, "{text:?}");
        }
    }

    #[test]
    fn gateway_status_values() {
        for s in GATEWAY_STATES {
            assert_eq!(GatewayStatus::from_text(s).as_str(), s);
        }
        assert_eq!(GatewayStatus::from_text("banned"), GatewayStatus::Unknown);
    }

    #[test]
    fn missing_fields_are_absent_and_odd_types_ignored() {
        let s = parse(
            br#"{"support":{"socket_conn":"SC","free_space_logs":"12","free_space_data":true,"multi_connect":"true","expire_timestamp":"soon","new_field":{"x":1}}}"#,
            br#"{"health":{"gateway_status":"uninitialized"},"meta":{}}"#,
        )
        .unwrap();
        let n = &s.nodes[0];
        assert_eq!(n.free_space, [None, Some(12.0), None, None]);
        assert_eq!(n.multi_connect, Some(true));
        assert_eq!(n.build_expiry, None);
        assert_eq!(n.version, None);
        assert!(!s.connected());
        let text = render(&s);
        assert!(!text.contains("build_expiry"));
        assert!(!text.contains("volume=\"data\""));
    }

    #[test]
    fn label_values_are_bounded_and_plain() {
        assert_eq!(label_value("v2.41.3", 64), "v2.41.3");
        assert_eq!(label_value("a\"b\nc{d}", 64), "a_b_c_d_");
        assert_eq!(label_value(&"x".repeat(500), 16).len(), 16);
        let s = parse(
            br#"{"support":{"host\"1:c":{"socket_conn":"UP","version":"2.0 <b>beta</b>"}}}"#,
            br#"{"health":{}}"#,
        )
        .unwrap();
        assert_eq!(s.nodes[0].name, "host_1:c");
        assert_eq!(s.nodes[0].version.as_deref(), Some("2.0__b_beta__b_"));
    }

    #[test]
    fn node_count_is_capped() {
        let nodes: Vec<String> = (0..100)
            .map(|i| format!("\"h{i}:c\":{{\"socket_conn\":\"UP\"}}"))
            .collect();
        let body = format!("{{\"support\":{{{}}}}}", nodes.join(","));
        let s = parse(body.as_bytes(), br#"{"health":{}}"#).unwrap();
        assert_eq!(s.nodes.len(), MAX_NODES);
    }

    #[test]
    fn errors_and_broken_answers_are_invalid_responses() {
        let err = br#"{"meta":{"version":"v2.41.3","api_status":"stable"},"errors":[{"code":1005,"title":"Access denied","details":"phone +5511999998888 secret-detail"}]}"#;
        let e = parse(err, HEALTH_SINGLE.as_bytes()).unwrap_err();
        assert_eq!(e.reason(), "invalid_response");
        assert!(e.to_string().contains("1005"), "{e}");
        assert!(!e.to_string().contains("secret-detail"));
        assert!(!e.to_string().contains("Access denied"));
        assert_eq!(
            parse(SINGLE.as_bytes(), err).unwrap_err().reason(),
            "invalid_response"
        );
        for body in [
            &b"null"[..],
            b"",
            b"<html><body>502 Bad Gateway</body></html>",
            b"{\"support\":",
            b"{\"support\":null}",
            b"{\"support\":\"UP\"}",
            b"{\"support\":{}}",
            b"{\"support\":{\"version\":\"v2\"}}",
            b"[]",
            b"{}",
        ] {
            let e = parse(body, HEALTH_SINGLE.as_bytes()).unwrap_err();
            assert_eq!(
                e.reason(),
                "invalid_response",
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        for health in [&b"null"[..], b"{}", b"{\"health\":[1]}", b"oops"] {
            assert!(parse(SINGLE.as_bytes(), health).is_err());
        }
    }

    #[test]
    fn login_answer() {
        let i = parse_login(br#"{"users":[{"token":"eyJhbGciOi.tok","expires_after":"2018-03-01 15:29:26+00:00"}],"meta":{}}"#).unwrap();
        assert_eq!(i.token.expose(), "eyJhbGciOi.tok");
        assert_eq!(i.expires_after, Some(1_519_918_166));
        let i = parse_login(br#"{"users":[{"token":"t"}]}"#).unwrap();
        assert_eq!(i.expires_after, None);
        for body in [
            &br#"{"users":[]}"#[..],
            br#"{"users":[{"token":""}]}"#,
            br#"{"errors":[{"code":1005,"title":"Access denied"}]}"#,
            b"null",
            b"<html>",
        ] {
            assert_eq!(parse_login(body).unwrap_err().reason(), "invalid_response");
        }
    }

    #[test]
    fn token_life_and_refresh() {
        let now = 1_700_000_000.0;
        let week = TokenLife::new(None, now);
        assert_eq!(week.expiry, now + 7.0 * 86_400.0);
        assert_eq!(week.lifetime, DEFAULT_TOKEN_LIFETIME);
        assert_eq!(
            week.refresh_after,
            DEFAULT_TOKEN_LIFETIME - Duration::from_secs(3_600)
        );
        let short = TokenLife::new(Some(1_700_000_600), now);
        assert_eq!(short.expiry, 1_700_000_600.0);
        assert_eq!(short.refresh_after, Duration::from_secs(540));
        let skewed = TokenLife::new(Some(1_600_000_000), now);
        assert_eq!(skewed.expiry, 1_600_000_000.0);
        assert_eq!(skewed.lifetime, DEFAULT_TOKEN_LIFETIME);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(parse_utc("1970-01-01T00:00:00"), Some(0));
        assert_eq!(parse_utc("2018-09-27T14:26:07"), Some(1_538_058_367));
        assert_eq!(parse_utc("2018-03-01 15:29:26+00:00"), Some(1_519_918_166));
        assert_eq!(parse_utc("2018-03-01 17:29:26+02:00"), Some(1_519_918_166));
        assert_eq!(parse_utc("2018-03-01T12:29:26-0300"), Some(1_519_918_166));
        assert_eq!(
            parse_utc("2018-03-01T15:29:26.123456Z"),
            Some(1_519_918_166)
        );
        assert_eq!(parse_utc(" 2018-03-01 15:29 "), Some(1_519_918_140));
        assert_eq!(parse_utc("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse_utc("2000-03-01T00:00:00"), Some(951_868_800));
        assert_eq!(parse_utc("1969-12-31T23:59:59"), Some(-1));
        assert_eq!(parse_utc("2100-02-28T00:00:00"), Some(4_107_456_000));
        for bad in [
            "",
            "2018",
            "2018-13-01",
            "2023-02-29",
            "2018-09-31",
            "2018-09-27T24:00:00",
            "2018-09-27T14:26:07+",
            "2018-09-27T14:26:07 UTC",
            "2018-09-27T14:26:07.",
            "2018-٠٩-27",
            "soon",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad:?}");
        }
    }
}
