//! The phone number's answer: its fields, read leniently, and the series they become. Every text
//! kept is one of the documented values (or [`OTHER`]): nothing Graph invents becomes a label.

use serde::Deserialize;
use serde_json::Value;

use super::CloudApiFamily;
use crate::error::PollError;
use crate::exposition::FragmentWriter;
use crate::json::{lenient, lenient_list};
use crate::number_state::{Problem, Problems};
use crate::providers::shape::Observation;

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

impl Observation for Status {
    fn connected(&self) -> bool {
        self.status == "CONNECTED"
    }

    /// Sending limited or blocked for any entity, or a standing health error, limits a connected
    /// number; so does a RED quality rating.
    fn number_evidence(&self) -> (bool, Problems) {
        let mut p = Problems::default();
        if let Some(h) = &self.health {
            let limited = h.can_send.iter().any(|(_, s)| *s != "AVAILABLE");
            if limited || !h.errors.is_empty() {
                p.add(Problem::SendLimited);
            }
        }
        if self.quality_rating == Some("RED") {
            p.add(Problem::QualityLow);
        }
        (self.connected(), p)
    }

    fn write(&self, w: &mut FragmentWriter) {
        w.state_set(
            CloudApiFamily::Status,
            &[],
            "status",
            &PHONE_STATUSES,
            self.status,
        );
        if let Some(q) = self.quality_rating {
            w.state_set(
                CloudApiFamily::QualityRating,
                &[],
                "rating",
                &QUALITY_RATINGS,
                q,
            );
        }
        if let Some(limit) = self.messaging_limit {
            w.sample(CloudApiFamily::MessagingLimit, &[], limit);
        }
        if let Some(level) = self.throughput_level {
            w.state_set(
                CloudApiFamily::ThroughputLevel,
                &[],
                "level",
                &THROUGHPUT_LEVELS,
                level,
            );
        }
        if let Some(n) = self.name_status {
            w.state_set(CloudApiFamily::NameStatus, &[], "status", &NAME_STATUSES, n);
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
                CloudApiFamily::CanSendMessage,
                &[("entity_type", ty)],
                "state",
                &SEND_STATES,
                state,
            );
        }
        for (ty, code) in &self.errors {
            w.sample(
                CloudApiFamily::HealthError,
                &[("entity_type", ty), ("error_code", code)],
                1.0,
            );
        }
    }
}
