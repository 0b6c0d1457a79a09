//! WhatsApp Cloud API (Meta Graph API): the health of one business phone number, read with
//! `GET {url}/{api_version}/{phone_number_id}?fields=...` and a system-user token as a bearer.
//!
//! Only fields that tell the number's health are asked for: `display_phone_number` and
//! `verified_name` are private, so they are never requested and never kept. A Graph error is told
//! by its numeric code, subcode, type and `fbtrace_id` alone: its `message` and
//! `error_data.details` can echo the request, a malformed token included.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::config::{GatewayConfig, DEFAULT_GRAPH_API_VERSION};
use crate::error::PollError;
use crate::exposition::{Family, FragmentWriter};
use crate::http::{fetch, Answer};
use crate::secret::Secret;

/// Fields that every supported Graph API version knows.
pub const CORE_FIELDS: &str =
    "status,quality_rating,name_status,code_verification_status,throughput,health_status";

/// The messaging limit fields to add, tried in this order. Since October 2025 Meta sets limits per
/// business portfolio (`whatsapp_business_manager_messaging_limit`) and has deprecated the
/// per-number `messaging_limit_tier`; a Graph version that refuses one of them must not cost us
/// the whole poll, so it is asked again without it.
pub const LIMIT_FIELD_SETS: [&str; 4] = [
    ",whatsapp_business_manager_messaging_limit,messaging_limit_tier",
    ",whatsapp_business_manager_messaging_limit",
    ",messaging_limit_tier",
    "",
];

/// At most this many `whatsapp_cloudapi_health_error` series per gateway.
pub const MAX_HEALTH_ERRORS: usize = 20;

pub const PHONE_STATUSES: [&str; 12] = [
    "CONNECTED",
    "DISCONNECTED",
    "FLAGGED",
    "RESTRICTED",
    "RATE_LIMITED",
    "PENDING",
    "OFFLINE",
    "UNVERIFIED",
    "MIGRATED",
    "DELETED",
    "BANNED",
    "UNKNOWN",
];
pub const QUALITY_RATINGS: [&str; 4] = ["GREEN", "YELLOW", "RED", "UNKNOWN"];
pub const SEND_STATES: [&str; 3] = ["AVAILABLE", "LIMITED", "BLOCKED"];
pub const THROUGHPUT_LEVELS: [&str; 3] = ["STANDARD", "HIGH", "NOT_APPLICABLE"];
pub const NAME_STATUSES: [&str; 6] = [
    "APPROVED",
    "AVAILABLE_WITHOUT_REVIEW",
    "PENDING_REVIEW",
    "DECLINED",
    "EXPIRED",
    "NONE",
];
pub const CODE_VERIFICATION_STATUSES: [&str; 3] = ["VERIFIED", "NOT_VERIFIED", "EXPIRED"];
/// `health_status` entity types; `OVERALL` is the top-level verdict, `OTHER` any type Meta adds.
pub const ENTITY_TYPES: [&str; 7] = [
    "OVERALL",
    "PHONE_NUMBER",
    "WABA",
    "BUSINESS",
    "APP",
    "MESSAGE_TEMPLATE",
    "OTHER",
];
/// A value outside the documented set: matches no state of a state set, so all read 0.
pub const OTHER: &str = "OTHER";

pub struct Source {
    client: reqwest::Client,
    /// `{url}/{api_version}/{phone_number_id}`: ids only, no secret.
    endpoint: String,
    token: Secret,
    gateway: String,
    /// The index in [`LIMIT_FIELD_SETS`] of the last set this Graph version accepted.
    limit_fields: AtomicUsize,
    /// Code and subcode of the Graph error the last poll got, so a new one is logged once.
    last_graph_error: Mutex<Option<(Option<i64>, Option<i64>)>>,
}

impl Source {
    pub fn new(cfg: &GatewayConfig, client: reqwest::Client) -> Result<Self, String> {
        let (Some(id), Some(token)) = (&cfg.phone_number_id, &cfg.token) else {
            return Err("needs phone_number_id and token".into());
        };
        // Both go into the URL path: checking their shape keeps the path what it should be.
        check_phone_number_id(id).map_err(|e| format!("phone_number_id: {e}"))?;
        check_api_version(&cfg.api_version).map_err(|e| format!("api_version: {e}"))?;
        Ok(Source {
            client,
            endpoint: format!("{}/{}/{}", cfg.url, cfg.api_version, id),
            token: token.clone(),
            gateway: cfg.name.clone(),
            limit_fields: AtomicUsize::new(0),
            last_graph_error: Mutex::new(None),
        })
    }

    pub async fn poll(&self, timeout: Duration) -> Result<Box<dyn super::Observation>, PollError> {
        let mut set = self.limit_fields.load(Ordering::Relaxed);
        loop {
            let answer = fetch(self.request(set, timeout), timeout).await?;
            let graph = graph_error(&answer.body);
            match &graph {
                Some(g) if g.refuses_a_field && set + 1 < LIMIT_FIELD_SETS.len() => {
                    set += 1;
                    tracing::info!(gateway = %self.gateway, fields = %fields_query(set), "the Graph API version refuses a messaging limit field; asking without it");
                    continue;
                }
                Some(g) => self.log_graph_error(g, answer.status.as_u16()),
                None => *self.last_error() = None,
            }
            let status = judge(&answer, graph.as_ref())?;
            self.limit_fields.store(set, Ordering::Relaxed);
            return Ok(Box::new(status));
        }
    }

    fn request(&self, set: usize, timeout: Duration) -> reqwest::RequestBuilder {
        // The token goes in the header only: a query string ends up in proxy and access logs.
        self.client
            .get(format!("{}?fields={}", self.endpoint, fields_query(set)))
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(self.token.expose())
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<(Option<i64>, Option<i64>)>> {
        self.last_graph_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A new Graph error at warn level (its `fbtrace_id` is what Meta support asks for), the same
    /// one again at debug level.
    fn log_graph_error(&self, g: &GraphError, http_status: u16) {
        let new = self.last_error().replace((g.code, g.subcode)) != Some((g.code, g.subcode));
        let token = self.token.expose();
        let clean = |s: &Option<String>| match s {
            Some(s) if token.len() < 4 || !s.contains(token) => s.clone(),
            _ => "-".to_string(),
        };
        let (kind, trace) = (clean(&g.kind), clean(&g.fbtrace_id));
        let code = g.code.map_or("-".to_string(), |c| c.to_string());
        let subcode = g.subcode.map_or("-".to_string(), |c| c.to_string());
        if new {
            tracing::warn!(gateway = %self.gateway, http_status, graph_code = %code, graph_subcode = %subcode, graph_type = %kind, fbtrace_id = %trace, "the Graph API answered an error");
        } else {
            tracing::debug!(gateway = %self.gateway, http_status, graph_code = %code, graph_subcode = %subcode, graph_type = %kind, fbtrace_id = %trace, "the Graph API answered an error");
        }
    }
}

/// The `fields` query parameter asked with limit field set `set`.
pub fn fields_query(set: usize) -> String {
    format!(
        "{CORE_FIELDS}{}",
        LIMIT_FIELD_SETS.get(set).copied().unwrap_or("")
    )
}

/// The configuration check of `phone_number_id`: a Graph node id, never the number itself.
pub fn check_phone_number_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(
            "must be the numeric Phone number ID shown in WhatsApp Manager, not the phone number",
        );
    }
    Ok(())
}

/// The configuration check of `api_version`.
pub fn check_api_version(v: &str) -> Result<(), String> {
    if is_graph_version(v) {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a Graph API version such as {DEFAULT_GRAPH_API_VERSION}"
        ))
    }
}

/// `v23.0` and the like.
fn is_graph_version(v: &str) -> bool {
    let Some((major, minor)) = v.strip_prefix('v').and_then(|r| r.split_once('.')) else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

// ---- Graph API errors ----

/// A Graph API error object, reduced to what may be logged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphError {
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// `type`, such as `OAuthException`: letters and digits only.
    pub kind: Option<String>,
    /// Meta's id of the failed request, for its support; not secret.
    pub fbtrace_id: Option<String>,
    /// "(#100) Tried accessing nonexisting field": this API version does not know a field we ask.
    pub refuses_a_field: bool,
}

/// The error object of a Graph answer, if the body is one. Graph sends it with 4xx and 5xx, and
/// now and then with 200.
pub fn graph_error(body: &[u8]) -> Option<GraphError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Option<Value>,
    }
    let err = serde_json::from_slice::<Envelope>(body).ok()?.error?;
    let Value::Object(e) = err else {
        // `"error": "..."` from something in front of Graph: an error, with nothing to read.
        return Some(GraphError::default());
    };
    let code = e.get("code").and_then(int);
    // The message is read here only to recognise a refused field; it is never kept or logged.
    let refuses_a_field = code == Some(100)
        && e.get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| m.to_ascii_lowercase().contains("nonexisting field"));
    Some(GraphError {
        code,
        subcode: e.get("error_subcode").and_then(int),
        kind: e
            .get("type")
            .and_then(Value::as_str)
            .map(|s| keep(s, 40, b"")),
        fbtrace_id: e
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .map(|s| keep(s, 64, b"_-")),
        refuses_a_field,
    })
}

/// A number that may come as a JSON number or a string of digits.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Keeps ASCII letters, digits and `extra`, at most `max` of them.
fn keep(s: &str, max: usize, extra: &[u8]) -> String {
    s.bytes()
        .filter(|b| b.is_ascii_alphanumeric() || extra.contains(b))
        .take(max)
        .map(char::from)
        .collect()
}

/// The error a Graph error stands for: Graph's own code says more than the HTTP status.
pub fn graph_poll_error(g: &GraphError, http: u16, retry_after: Option<Duration>) -> PollError {
    match g.code {
        Some(190) => PollError::Unauthorized(
            http,
            ", Graph error 190: the access token is invalid or expired",
        ),
        Some(0 | 3 | 10 | 102 | 200..=299) => PollError::Unauthorized(
            http,
            ", Graph permission error: the token needs whatsapp_business_management for this number",
        ),
        Some(4 | 17 | 32 | 613 | 80007 | 130429) => PollError::RateLimited(retry_after),
        _ => match http {
            401 | 403 => PollError::Unauthorized(http, ""),
            429 => PollError::RateLimited(retry_after),
            200..=299 => PollError::InvalidResponse(format!(
                "a Graph API error (code {}) in an HTTP {http} answer",
                g.code.map_or("none".to_string(), |c| c.to_string())
            )),
            other => PollError::HttpStatus(other),
        },
    }
}

/// What an answer means: the number's status, or why the poll failed.
pub fn judge(answer: &Answer, graph: Option<&GraphError>) -> Result<Status, PollError> {
    if let Some(g) = graph {
        return Err(graph_poll_error(
            g,
            answer.status.as_u16(),
            answer.retry_after,
        ));
    }
    answer.check_status()?;
    parse(&answer.body)
}

// ---- the phone number ----

#[derive(Debug, Deserialize)]
struct PhoneNumberResponse {
    #[serde(default, deserialize_with = "lenient")]
    status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    quality_rating: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    messaging_limit_tier: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    whatsapp_business_manager_messaging_limit: Option<Value>,
    #[serde(default, deserialize_with = "lenient")]
    name_status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    code_verification_status: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    throughput: Option<ThroughputResponse>,
    #[serde(default, deserialize_with = "lenient")]
    health_status: Option<HealthResponse>,
}

#[derive(Debug, Deserialize)]
struct ThroughputResponse {
    #[serde(default, deserialize_with = "lenient")]
    level: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HealthResponse {
    #[serde(default, deserialize_with = "lenient")]
    can_send_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    entities: Vec<EntityResponse>,
}

#[derive(Debug, Deserialize)]
struct EntityResponse {
    #[serde(default, deserialize_with = "lenient")]
    entity_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    can_send_message: Option<String>,
    #[serde(default, deserialize_with = "lenient_list")]
    errors: Vec<EntityErrorResponse>,
}

#[derive(Debug, Deserialize)]
struct EntityErrorResponse {
    #[serde(default)]
    error_code: Option<Value>,
}

/// A field of an unexpected type is absent rather than a failed poll.
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let v = Option::<Value>::deserialize(d)?;
    Ok(v.and_then(|v| T::deserialize(v).ok()))
}

/// A list whose malformed items are skipped.
fn lenient_list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|v| T::deserialize(v).ok())
            .collect(),
        _ => Vec::new(),
    })
}

/// The health of one phone number. Every text is one of the documented values (or [`OTHER`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// One of [`PHONE_STATUSES`]; an undocumented status reads `UNKNOWN`.
    pub status: &'static str,
    /// One of [`QUALITY_RATINGS`]; anything else reads `UNKNOWN`.
    pub quality_rating: Option<&'static str>,
    /// Unique users the business may message in 24 h; `+Inf` when unlimited.
    pub messaging_limit: Option<f64>,
    pub name_status: Option<&'static str>,
    pub code_verification_status: Option<&'static str>,
    pub throughput_level: Option<&'static str>,
    pub health: Option<Health>,
}

/// `health_status`, one verdict per entity type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    /// `(entity_type, can_send_message)`, `OVERALL` first, one per type: the worst of its
    /// entities.
    pub can_send: Vec<(&'static str, &'static str)>,
    /// `(entity_type, error_code)` of the standing errors, sorted, without duplicates, at most
    /// [`MAX_HEALTH_ERRORS`].
    pub errors: Vec<(&'static str, String)>,
}

/// The documented value `raw` stands for, or [`OTHER`].
fn known(states: &[&'static str], raw: &str) -> &'static str {
    let raw = raw.trim();
    states
        .iter()
        .find(|s| s.eq_ignore_ascii_case(raw))
        .copied()
        .unwrap_or(OTHER)
}

/// Like [`known`], with the set's own `UNKNOWN` for anything undocumented.
fn known_or_unknown(states: &[&'static str], raw: &str) -> &'static str {
    match known(states, raw) {
        OTHER => "UNKNOWN",
        s => s,
    }
}

/// Parses the phone number answer. Without `status` it is not a phone number's answer.
pub fn parse(body: &[u8]) -> Result<Status, PollError> {
    let r: Option<PhoneNumberResponse> =
        serde_json::from_slice(body).map_err(|e| PollError::from_json(&e))?;
    let r = r.ok_or_else(|| PollError::InvalidResponse("the answer is null".into()))?;
    let status = r
        .status
        .ok_or_else(|| PollError::InvalidResponse("the answer has no `status` field".into()))?;
    // The portfolio-wide limit is the one Meta enforces since October 2025.
    let messaging_limit = r
        .whatsapp_business_manager_messaging_limit
        .as_ref()
        .and_then(limit_value)
        .or_else(|| r.messaging_limit_tier.as_ref().and_then(limit_value));
    Ok(Status {
        status: known_or_unknown(&PHONE_STATUSES, &status),
        quality_rating: r
            .quality_rating
            .map(|q| known_or_unknown(&QUALITY_RATINGS, &q)),
        messaging_limit,
        name_status: r.name_status.map(|n| known(&NAME_STATUSES, &n)),
        code_verification_status: r
            .code_verification_status
            .map(|c| known(&CODE_VERIFICATION_STATUSES, &c)),
        throughput_level: r
            .throughput
            .and_then(|t| t.level)
            .map(|l| known(&THROUGHPUT_LEVELS, &l)),
        health: r.health_status.map(health),
    })
}

/// A messaging limit as a number: `TIER_1K` is 1000, `TIER_UNLIMITED` is `+Inf`; webhooks and
/// proxies also give plain numbers, with -1 for unlimited. `TIER_NOT_SET` (never sent) is absent.
pub fn limit_value(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => match n.as_f64()? {
            n if n < 0.0 => Some(f64::INFINITY),
            n if n > 0.0 => Some(n),
            _ => None,
        },
        Value::String(s) => tier_value(s),
        _ => None,
    }
}

fn tier_value(s: &str) -> Option<f64> {
    let s = s.trim().to_ascii_uppercase();
    let s = s.strip_prefix("TIER_").unwrap_or(&s);
    if s == "UNLIMITED" {
        return Some(f64::INFINITY);
    }
    let (digits, scale) = match s.as_bytes().last()? {
        b'K' => (&s[..s.len() - 1], 1e3),
        b'M' => (&s[..s.len() - 1], 1e6),
        _ => (s, 1.0),
    };
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: f64 = digits.parse().ok()?;
    (n > 0.0).then_some(n * scale)
}

fn health(h: HealthResponse) -> Health {
    let mut can_send: Vec<(&'static str, &'static str)> = Vec::new();
    if let Some(s) = &h.can_send_message {
        can_send.push(("OVERALL", known(&SEND_STATES, s)));
    }
    let mut errors = Vec::new();
    for e in &h.entities {
        let ty = match e.entity_type.as_deref().map(|t| known(&ENTITY_TYPES, t)) {
            None | Some("OVERALL") => OTHER,
            Some(t) => t,
        };
        if let Some(s) = &e.can_send_message {
            let state = known(&SEND_STATES, s);
            match can_send.iter_mut().find(|(t, _)| *t == ty) {
                Some(slot) if severity(state) > severity(slot.1) => slot.1 = state,
                Some(_) => {}
                None => can_send.push((ty, state)),
            }
        }
        errors.extend(
            e.errors
                .iter()
                .filter_map(|x| x.error_code.as_ref().and_then(error_code))
                .map(|code| (ty, code)),
        );
    }
    can_send.sort_by_key(|(t, _)| ENTITY_TYPES.iter().position(|x| x == t));
    errors.sort_by(|a, b| {
        let rank = |t: &str| ENTITY_TYPES.iter().position(|x| *x == t);
        (rank(a.0), &a.1).cmp(&(rank(b.0), &b.1))
    });
    errors.dedup();
    errors.truncate(MAX_HEALTH_ERRORS);
    Health { can_send, errors }
}

/// How bad a send state is: an entity type is as bad as its worst entity.
fn severity(state: &str) -> u8 {
    match state {
        "AVAILABLE" => 0,
        "LIMITED" => 2,
        "BLOCKED" => 3,
        _ => 1,
    }
}

/// The digits of an error code, which is a label value: never the description.
fn error_code(v: &Value) -> Option<String> {
    let digits: String = match v {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) => s.chars().filter(char::is_ascii_digit).take(12).collect(),
        _ => return None,
    };
    (!digits.is_empty()).then_some(digits)
}

impl super::Observation for Status {
    fn connected(&self) -> bool {
        self.status == "CONNECTED"
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.state_set(
            Family::CloudApiStatus,
            &[],
            "status",
            &PHONE_STATUSES,
            self.status,
        );
        if let Some(q) = self.quality_rating {
            w.state_set(
                Family::CloudApiQualityRating,
                &[],
                "rating",
                &QUALITY_RATINGS,
                q,
            );
        }
        if let Some(limit) = self.messaging_limit {
            w.sample(Family::CloudApiMessagingLimit, &[], limit);
        }
        if let Some(level) = self.throughput_level {
            w.state_set(
                Family::CloudApiThroughputLevel,
                &[],
                "level",
                &THROUGHPUT_LEVELS,
                level,
            );
        }
        if let Some(n) = self.name_status {
            w.state_set(Family::CloudApiNameStatus, &[], "status", &NAME_STATUSES, n);
        }
        if let Some(h) = &self.health {
            h.write(w);
        }
    }

    fn summary(&self) -> String {
        let overall = self.health.as_ref().and_then(|h| {
            h.can_send
                .iter()
                .find(|(t, _)| *t == "OVERALL")
                .map(|(_, s)| *s)
        });
        let limit = match self.messaging_limit {
            Some(l) if l.is_infinite() => "unlimited".to_string(),
            Some(l) => format!("{l}"),
            None => "?".to_string(),
        };
        format!(
            "status {}, quality {}, can send {}, limit {}, throughput {}, name {}, verification {}",
            self.status,
            self.quality_rating.unwrap_or("?"),
            overall.unwrap_or("?"),
            limit,
            self.throughput_level.unwrap_or("?"),
            self.name_status.unwrap_or("?"),
            self.code_verification_status.unwrap_or("?"),
        )
    }
}

impl Health {
    fn write(&self, w: &mut FragmentWriter) {
        for (ty, state) in &self.can_send {
            w.state_set(
                Family::CloudApiCanSendMessage,
                &[("entity_type", ty)],
                "state",
                &SEND_STATES,
                state,
            );
        }
        for (ty, code) in &self.errors {
            w.sample(
                Family::CloudApiHealthError,
                &[("entity_type", ty), ("error_code", code)],
                1.0,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::Observation;
    use bytes::Bytes;
    use reqwest::StatusCode;

    /// A healthy number as Graph answers the fields we ask for.
    const HEALTHY: &str = r#"{
        "status": "CONNECTED",
        "quality_rating": "GREEN",
        "name_status": "APPROVED",
        "code_verification_status": "VERIFIED",
        "throughput": {"level": "STANDARD"},
        "messaging_limit_tier": "TIER_1K",
        "health_status": {
            "can_send_message": "AVAILABLE",
            "entities": [
                {"entity_type": "PHONE_NUMBER", "id": "106540352242922", "can_send_message": "AVAILABLE"},
                {"entity_type": "WABA", "id": "102290129340398", "can_send_message": "AVAILABLE"},
                {"entity_type": "BUSINESS", "id": "506914307656634", "can_send_message": "AVAILABLE"},
                {"entity_type": "APP", "id": "634974688087057", "can_send_message": "AVAILABLE"}
            ]
        },
        "id": "106540352242922"
    }"#;

    const BLOCKED: &str = r#"{
        "status": "CONNECTED",
        "quality_rating": "RED",
        "health_status": {
            "can_send_message": "BLOCKED",
            "entities": [
                {"entity_type": "PHONE_NUMBER", "id": "1", "can_send_message": "LIMITED",
                 "additional_info": ["Your number's messaging limit is lowered because of low quality."]},
                {"entity_type": "WABA", "id": "2", "can_send_message": "BLOCKED",
                 "errors": [
                    {"error_code": 141006, "error_description": "There is an error with the payment method for +55 11 99999-8888.", "possible_solution": "Update the payment method."},
                    {"error_code": "141010", "error_description": "The business is not verified."},
                    {"error_code": 141006, "error_description": "duplicate"},
                    {"error_description": "no code at all"}
                 ]},
                {"entity_type": "BUSINESS", "id": "3", "can_send_message": "AVAILABLE"},
                {"entity_type": "APP", "id": "4", "can_send_message": "AVAILABLE"}
            ]
        },
        "id": "1"
    }"#;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            body: Bytes::copy_from_slice(body.as_bytes()),
            retry_after: None,
        }
    }

    fn read(status: u16, body: &str) -> Result<Status, PollError> {
        let a = answer(status, body);
        judge(&a, graph_error(&a.body).as_ref())
    }

    fn rendered(s: &Status) -> String {
        let mut w = FragmentWriter::new(&[]);
        s.write(&mut w);
        let f = w.finish();
        Family::ALL.iter().map(|&x| f.family(x)).collect()
    }

    #[test]
    fn healthy_number() {
        let s = parse(HEALTHY.as_bytes()).unwrap();
        assert!(s.connected());
        assert_eq!(s.quality_rating, Some("GREEN"));
        assert_eq!(s.messaging_limit, Some(1000.0));
        assert_eq!(s.name_status, Some("APPROVED"));
        assert_eq!(s.code_verification_status, Some("VERIFIED"));
        assert_eq!(s.throughput_level, Some("STANDARD"));
        let h = s.health.as_ref().unwrap();
        assert_eq!(
            h.can_send,
            vec![
                ("OVERALL", "AVAILABLE"),
                ("PHONE_NUMBER", "AVAILABLE"),
                ("WABA", "AVAILABLE"),
                ("BUSINESS", "AVAILABLE"),
                ("APP", "AVAILABLE")
            ]
        );
        assert!(h.errors.is_empty());
        let text = rendered(&s);
        assert!(text.contains("whatsapp_cloudapi_quality_rating{rating=\"GREEN\"} 1\n"));
        assert!(text.contains("whatsapp_cloudapi_quality_rating{rating=\"RED\"} 0\n"));
        assert!(text.contains("whatsapp_cloudapi_messaging_limit{} 1000\n"));
        assert!(text.contains(
            "whatsapp_cloudapi_can_send_message{entity_type=\"OVERALL\",state=\"AVAILABLE\"} 1\n"
        ));
        assert!(text.contains("whatsapp_cloudapi_status{status=\"CONNECTED\"} 1\n"));
        assert!(text.contains("whatsapp_cloudapi_throughput_level{level=\"STANDARD\"} 1\n"));
        assert!(text.contains("whatsapp_cloudapi_name_status{status=\"APPROVED\"} 1\n"));
        assert!(!text.contains("health_error"));
        assert!(
            !text.contains("106540352242922"),
            "entity ids are not labels"
        );
        assert_eq!(
            s.summary(),
            "status CONNECTED, quality GREEN, can send AVAILABLE, limit 1000, throughput STANDARD, name APPROVED, verification VERIFIED"
        );
    }

    #[test]
    fn blocked_entities_and_their_errors() {
        let s = parse(BLOCKED.as_bytes()).unwrap();
        let h = s.health.as_ref().unwrap();
        assert_eq!(h.can_send[0], ("OVERALL", "BLOCKED"));
        assert!(h.can_send.contains(&("PHONE_NUMBER", "LIMITED")));
        assert!(h.can_send.contains(&("WABA", "BLOCKED")));
        assert_eq!(
            h.errors,
            vec![
                ("WABA", "141006".to_string()),
                ("WABA", "141010".to_string())
            ]
        );
        let text = rendered(&s);
        assert!(text.contains(
            "whatsapp_cloudapi_health_error{entity_type=\"WABA\",error_code=\"141006\"} 1\n"
        ));
        assert!(text.contains(
            "whatsapp_cloudapi_can_send_message{entity_type=\"PHONE_NUMBER\",state=\"LIMITED\"} 1\n"
        ));
        for private in ["payment", "99999", "verified", "messaging limit is lowered"] {
            assert!(!text.contains(private), "{private} leaked into {text}");
        }
    }

    #[test]
    fn entities_of_one_type_report_the_worst() {
        let s = parse(br##"{"status":"CONNECTED","health_status":{"entities":[
            {"entity_type":"MESSAGE_TEMPLATE","can_send_message":"AVAILABLE"},
            {"entity_type":"MESSAGE_TEMPLATE","can_send_message":"BLOCKED","errors":[{"error_code":"#1 3 2 0 1 5"}]},
            {"entity_type":"MESSAGE_TEMPLATE","can_send_message":"LIMITED"},
            {"entity_type":"SOMETHING_NEW","can_send_message":"WHATEVER"},
            "not an entity"
        ]}}"##)
        .unwrap();
        let h = s.health.unwrap();
        assert_eq!(
            h.can_send,
            vec![("MESSAGE_TEMPLATE", "BLOCKED"), ("OTHER", OTHER)]
        );
        assert_eq!(h.errors, vec![("MESSAGE_TEMPLATE", "132015".to_string())]);
    }

    #[test]
    fn health_errors_are_bounded() {
        let errors: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"error_code":{}}}"#, 141000 + i))
            .collect();
        let body = format!(
            r#"{{"status":"CONNECTED","health_status":{{"can_send_message":"BLOCKED","entities":[{{"entity_type":"WABA","can_send_message":"BLOCKED","errors":[{}]}}]}}}}"#,
            errors.join(",")
        );
        let s = parse(body.as_bytes()).unwrap();
        assert_eq!(s.health.unwrap().errors.len(), MAX_HEALTH_ERRORS);
    }

    #[test]
    fn messaging_limits() {
        for (v, want) in [
            (r#""TIER_50""#, Some(50.0)),
            (r#""TIER_250""#, Some(250.0)),
            (r#""TIER_1K""#, Some(1000.0)),
            (r#""TIER_2K""#, Some(2000.0)),
            (r#""TIER_10K""#, Some(10_000.0)),
            (r#""TIER_100K""#, Some(100_000.0)),
            (r#""TIER_UNLIMITED""#, Some(f64::INFINITY)),
            (r#""UNLIMITED""#, Some(f64::INFINITY)),
            (r#""tier_10k""#, Some(10_000.0)),
            (r#""TIER_NOT_SET""#, None),
            (r#""TIER_""#, None),
            (r#""TIER_K""#, None),
            (r#""soon""#, None),
            ("2000", Some(2000.0)),
            ("-1", Some(f64::INFINITY)),
            ("0", None),
            ("{}", None),
        ] {
            let value: Value = serde_json::from_str(v).unwrap();
            assert_eq!(limit_value(&value), want, "{v}");
        }
    }

    #[test]
    fn portfolio_limit_wins_over_the_deprecated_tier() {
        let s = parse(br#"{"status":"CONNECTED","messaging_limit_tier":"TIER_1K","whatsapp_business_manager_messaging_limit":"TIER_UNLIMITED"}"#).unwrap();
        assert_eq!(s.messaging_limit, Some(f64::INFINITY));
        assert!(rendered(&s).contains("whatsapp_cloudapi_messaging_limit{} +Inf\n"));
        let s = parse(br#"{"status":"CONNECTED","messaging_limit_tier":"TIER_250","whatsapp_business_manager_messaging_limit":"TIER_NOT_SET"}"#).unwrap();
        assert_eq!(s.messaging_limit, Some(250.0));
    }

    #[test]
    fn missing_fields_are_absent_and_unknown_values_are_not_labels() {
        let s = parse(br#"{"status":"FLAGGED","id":"1","new_field":{"x":1}}"#).unwrap();
        assert!(!s.connected());
        assert_eq!(s.quality_rating, None);
        assert_eq!(s.messaging_limit, None);
        assert_eq!(s.health, None);
        let text = rendered(&s);
        assert!(!text.contains("quality_rating"), "absent, not 0: {text}");
        assert!(!text.contains("messaging_limit"));
        assert!(text.contains("whatsapp_cloudapi_status{status=\"FLAGGED\"} 1\n"));

        let s = parse(br#"{"status":"SUSPENDED_FOR_FUN","quality_rating":"NA","name_status":"RENAMED","throughput":{"level":"TURBO"},"health_status":{"can_send_message":"MAYBE"}}"#).unwrap();
        assert_eq!(s.status, "UNKNOWN");
        assert_eq!(s.quality_rating, Some("UNKNOWN"));
        assert_eq!(s.name_status, Some(OTHER));
        let text = rendered(&s);
        for free in ["SUSPENDED", "NA\"", "RENAMED", "TURBO", "MAYBE"] {
            assert!(!text.contains(free), "{free} became a label: {text}");
        }
        assert!(text.contains("whatsapp_cloudapi_name_status{status=\"APPROVED\"} 0\n"));
        assert!(!text.contains("whatsapp_cloudapi_name_status{status=\"OTHER\"}"));
    }

    #[test]
    fn fields_of_unexpected_types_are_absent() {
        let s = parse(br#"{"status":"CONNECTED","quality_rating":7,"throughput":"HIGH","health_status":{"can_send_message":null,"entities":{"a":1}},"messaging_limit_tier":null}"#).unwrap();
        assert_eq!(s.quality_rating, None);
        assert_eq!(s.throughput_level, None);
        assert_eq!(s.health, Some(Health::default()));
        assert!(s.connected());
    }

    #[test]
    fn answers_that_are_not_a_phone_number() {
        for body in [
            "null",
            "",
            "[]",
            "{}",
            r#"{"id":"1"}"#,
            "<!DOCTYPE html><html><body>Sorry, something went wrong.</body></html>",
            r#"{"status":"CONNECTED","quality_rating":"GRE"#,
        ] {
            let e = read(200, body).unwrap_err();
            assert_eq!(e.reason(), "invalid_response", "{body}");
        }
    }

    #[test]
    fn graph_errors_map_to_reasons() {
        let err = |code: &str| {
            format!(
                r#"{{"error":{{"message":"(#{code}) something","type":"OAuthException","code":{code},"fbtrace_id":"AbC-12_x"}}}}"#
            )
        };
        for (http, code, reason) in [
            (401, "190", "unauthorized"),
            (400, "190", "unauthorized"),
            (403, "10", "unauthorized"),
            (403, "200", "unauthorized"),
            (400, "80007", "rate_limited"),
            (400, "130429", "rate_limited"),
            (403, "4", "rate_limited"),
            (400, "613", "rate_limited"),
            (400, "17", "rate_limited"),
            (400, "32", "rate_limited"),
            (400, "100", "http_status"),
            (500, "1", "http_status"),
            (503, "2", "http_status"),
            (200, "2", "invalid_response"),
            (200, "190", "unauthorized"),
            (403, "368", "unauthorized"),
            (429, "1", "rate_limited"),
        ] {
            let e = read(http, &err(code)).unwrap_err();
            assert_eq!(e.reason(), reason, "HTTP {http} code {code}");
        }
    }

    #[test]
    fn expired_token_is_told_by_code_only() {
        let body = r#"{"error":{"message":"Error validating access token: Session has expired on Tuesday, 01-Jul-25. The current time is Wednesday. Token EAAG-SECRET-XYZ","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"A1b2C3d4E5f6-_G7"}}"#;
        let g = graph_error(body.as_bytes()).unwrap();
        assert_eq!(
            g,
            GraphError {
                code: Some(190),
                subcode: Some(463),
                kind: Some("OAuthException".into()),
                fbtrace_id: Some("A1b2C3d4E5f6-_G7".into()),
                refuses_a_field: false,
            }
        );
        let e = read(400, body).unwrap_err();
        assert_eq!(
            e,
            PollError::Unauthorized(
                400,
                ", Graph error 190: the access token is invalid or expired"
            )
        );
        assert!(!e.to_string().contains("SECRET"));
        assert!(!e.to_string().contains("Session"));
    }

    #[test]
    fn statuses_without_a_graph_body() {
        assert_eq!(read(401, "").unwrap_err().reason(), "unauthorized");
        assert_eq!(read(403, "Forbidden").unwrap_err().reason(), "unauthorized");
        assert_eq!(read(429, "").unwrap_err().reason(), "rate_limited");
        assert_eq!(
            read(502, "<html>Bad Gateway</html>").unwrap_err(),
            PollError::HttpStatus(502)
        );
        let e = read(200, r#"{"error":"upstream said no"}"#).unwrap_err();
        assert_eq!(e.reason(), "invalid_response");
        assert!(!e.to_string().contains("upstream"));
    }

    #[test]
    fn refused_fields_are_recognised() {
        let body = br#"{"error":{"message":"(#100) Tried accessing nonexisting field (messaging_limit_tier) on node type (WhatsAppBusinessPhoneNumber)","type":"OAuthException","code":100,"fbtrace_id":"x"}}"#;
        assert!(graph_error(body).unwrap().refuses_a_field);
        let missing = br#"{"error":{"message":"Unsupported get request. Object with ID '1' does not exist, cannot be loaded due to missing permissions, or does not support this operation.","type":"GraphMethodException","code":100,"error_subcode":33}}"#;
        assert!(!graph_error(missing).unwrap().refuses_a_field);
        assert_eq!(graph_error(HEALTHY.as_bytes()), None);
        assert_eq!(graph_error(b"<html>"), None);
    }

    #[test]
    fn logged_error_fields_are_sanitised() {
        let g = graph_error(br#"{"error":{"type":"OAuth\"Exception\nlevel=error","code":"190","error_subcode":"x","fbtrace_id":"A b=c\"d"}}"#).unwrap();
        assert_eq!(g.kind.as_deref(), Some("OAuthExceptionlevelerror"));
        assert_eq!(g.fbtrace_id.as_deref(), Some("Abcd"));
        assert_eq!(g.code, Some(190));
        assert_eq!(g.subcode, None);
    }

    #[test]
    fn graph_versions() {
        for v in ["v23.0", "v19.0", "v100.12"] {
            assert!(is_graph_version(v), "{v}");
        }
        for v in [
            "23.0",
            "v23",
            "v23.0/../x",
            "latest",
            "",
            "v.0",
            "v23.0?x=1",
        ] {
            assert!(!is_graph_version(v), "{v}");
        }
        assert_eq!(
            fields_query(0),
            "status,quality_rating,name_status,code_verification_status,throughput,health_status,whatsapp_business_manager_messaging_limit,messaging_limit_tier"
        );
        assert!(!fields_query(0).contains("display_phone_number"));
        assert!(!fields_query(0).contains("verified_name"));
    }
}
