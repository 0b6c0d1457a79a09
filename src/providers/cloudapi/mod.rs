//! WhatsApp Cloud API (Meta Graph API): the health of one business phone number, read with
//! `GET {url}/{api_version}/{phone_number_id}?fields=...` and a system-user token as a bearer.
//!
//! Only fields that tell the number's health are asked for: `display_phone_number` and
//! `verified_name` are private, so they are never requested and never kept. A Graph error is told
//! by its numeric code, subcode, type and `fbtrace_id` alone: its `message` and
//! `error_data.details` can echo the request, a malformed token included.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::config::{CloudApiConfig, GatewayConfig};
use crate::error::PollError;
use crate::http::fetch;
use crate::providers::shape::{Observation, Poller};
use crate::secret::Secret;

pub mod demo;
mod graph;
mod phone;
pub mod send;
pub mod webhook;

pub use graph::{graph_error, graph_poll_error, judge, GraphError};
pub use phone::{limit_value, parse, Health, Status};

crate::exposition::families! {
    /// Cloud API series of one phone number.
    pub enum CloudApiFamily in FAMILIES {
        QualityRating => "whatsapp_cloudapi_quality_rating", Gauge, "Cloud API: the number's quality rating, as a state set.";
        CanSendMessage => "whatsapp_cloudapi_can_send_message", Gauge, "Cloud API: health_status can_send_message per entity, as a state set.";
        MessagingLimit => "whatsapp_cloudapi_messaging_limit", Gauge, "Cloud API: the messaging limit as a number of unique users per 24 hours (+Inf when unlimited).";
        ThroughputLevel => "whatsapp_cloudapi_throughput_level", Gauge, "Cloud API: the throughput level, as a state set.";
        HealthError => "whatsapp_cloudapi_health_error", Gauge, "Cloud API: 1 for each health_status error that stands, by entity and error code.";
        NameStatus => "whatsapp_cloudapi_name_status", Gauge, "Cloud API: the display name's review status, as a state set.";
        Status => "whatsapp_cloudapi_status", Gauge, "Cloud API: the phone number's status (CONNECTED, FLAGGED, RESTRICTED...), as a state set.";
    }
}

/// Fields that every supported Graph API version knows.
pub const CORE_FIELDS: &str =
    "status,quality_rating,name_status,code_verification_status,throughput,health_status";

/// The portfolio-wide messaging limit. Since October 2025 Meta sets limits per business portfolio
/// and has deprecated the per-number [`TIER_LIMIT_FIELD`]; Graph knows this field from v24.0.
pub const PORTFOLIO_LIMIT_FIELD: &str = "whatsapp_business_manager_messaging_limit";
/// The per-number messaging limit tier, deprecated but still answered where the portfolio field
/// is not.
pub const TIER_LIMIT_FIELD: &str = "messaging_limit_tier";
/// The first Graph API version that knows [`PORTFOLIO_LIMIT_FIELD`].
pub const PORTFOLIO_LIMIT_SINCE: (u32, u32) = (24, 0);
/// The fields that may be dropped when a Graph version refuses them, as bits of a mask.
pub const OPTIONAL_FIELDS: [&str; 2] = [PORTFOLIO_LIMIT_FIELD, TIER_LIMIT_FIELD];
/// Every field the exporter may ask for, core and optional.
pub const ASKED_FIELDS: [&str; 8] = [
    "status",
    "quality_rating",
    "name_status",
    "code_verification_status",
    "throughput",
    "health_status",
    PORTFOLIO_LIMIT_FIELD,
    TIER_LIMIT_FIELD,
];

/// Polling faster than this spends the app's Graph budget for nothing: Business Management calls
/// are limited per app and WhatsApp Business Account (200 an hour by default, 5,000 for an
/// active account), shared with everything else the app does, and the number's quality and
/// limits change over hours, not seconds.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
pub const MIN_INTERVAL_WHY: &str =
    "Graph API calls are limited per app and WhatsApp Business Account (200 an hour by default)";

pub struct Source {
    client: reqwest::Client,
    /// `{url}/{api_version}/{phone_number_id}`: ids only, no secret.
    endpoint: String,
    token: Secret,
    gateway: String,
    /// Bits of [`OPTIONAL_FIELDS`] not to ask for: unknown to the configured Graph version, or
    /// refused once. A field is never asked again once refused.
    skipped: AtomicU8,
    /// Code and subcode of the Graph error the last poll got, so a new one is logged once.
    last_graph_error: Mutex<Option<(Option<i64>, Option<i64>)>>,
}

impl Source {
    /// The id and the version were checked by the configuration: the path is what it should be.
    pub fn new(gw: &GatewayConfig, cfg: &CloudApiConfig, client: reqwest::Client) -> Self {
        Source {
            client,
            endpoint: format!("{}/{}/{}", gw.url, cfg.api_version, cfg.phone_number_id),
            token: cfg.token.clone(),
            gateway: gw.name.clone(),
            skipped: AtomicU8::new(initial_skips(&cfg.api_version)),
            last_graph_error: Mutex::new(None),
        }
    }
}

/// `v24.0` as `(24, 0)`; the configuration checked the shape.
pub fn graph_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.strip_prefix('v')?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The optional fields a Graph version is known not to have, so that no start spends a refused
/// call on them: below v24.0 the portfolio limit does not exist.
pub fn initial_skips(api_version: &str) -> u8 {
    match graph_version(api_version) {
        Some(v) if v < PORTFOLIO_LIMIT_SINCE => bit(PORTFOLIO_LIMIT_FIELD),
        _ => 0,
    }
}

fn bit(field: &str) -> u8 {
    OPTIONAL_FIELDS
        .iter()
        .position(|f| *f == field)
        .map_or(0, |i| 1 << i)
}

/// The optional fields to drop after a refusal, given those already skipped: the one Graph named
/// if it is optional and was asked; without a name, every optional field still asked. None (0)
/// when there is nothing left to drop, and the refusal is the poll's failure.
pub fn to_drop(g: &GraphError, skipped: u8) -> u8 {
    let asked = !skipped & ((1 << OPTIONAL_FIELDS.len()) - 1);
    match g.refused_field {
        Some(f) => bit(f) & asked,
        None => asked,
    }
}

impl Poller for Source {
    async fn poll(&self, timeout: Duration) -> Result<Box<dyn Observation>, PollError> {
        let mut skipped = self.skipped.load(Ordering::Relaxed);
        // Each round drops at least one optional field: a bounded loop, and only until this
        // gateway's Graph version has refused all it will.
        loop {
            let answer = fetch(self.request(skipped, timeout), timeout).await?;
            let graph = graph_error(&answer.body);
            match &graph {
                Some(g) if g.refuses_a_field && to_drop(g, skipped) != 0 => {
                    skipped |= to_drop(g, skipped);
                    // Remembered at once: even if the next call fails, the field is not asked
                    // again.
                    self.skipped.fetch_or(skipped, Ordering::Relaxed);
                    tracing::info!(gateway = %self.gateway, fields = %fields_query(skipped), "the Graph API version refuses a messaging limit field; asking without it from now on");
                    continue;
                }
                Some(g) => self.log_graph_error(g, answer.status.as_u16()),
                None => *self.last_error() = None,
            }
            let status = judge(&answer, graph.as_ref())?;
            return Ok(Box::new(status));
        }
    }
}

impl Source {
    fn request(&self, skipped: u8, timeout: Duration) -> reqwest::RequestBuilder {
        // The token goes in the header only: a query string ends up in proxy and access logs.
        self.client
            .get(format!(
                "{}?fields={}",
                self.endpoint,
                fields_query(skipped)
            ))
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json")
            .bearer_auth(self.token.expose())
    }

    fn last_error(&self) -> std::sync::MutexGuard<'_, Option<(Option<i64>, Option<i64>)>> {
        crate::sync::lock(&self.last_graph_error)
    }

    /// A new Graph error at warn level (its `fbtrace_id` is what Meta support asks for), the same
    /// one again at debug level.
    fn log_graph_error(&self, g: &GraphError, http_status: u16) {
        let new = self.last_error().replace((g.code, g.subcode)) != Some((g.code, g.subcode));
        // Graph echoes text of the request at times: no piece of the token leaves in it.
        let scrubber = crate::secret::Scrubber::new([self.token.expose()]);
        let clean = |s: &Option<String>| match s {
            Some(s) => scrubber.scrub(s).into_owned(),
            None => "-".to_string(),
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

/// The `fields` query parameter, without the optional fields whose bits are in `skipped`.
pub fn fields_query(skipped: u8) -> String {
    let mut q = CORE_FIELDS.to_string();
    for (i, f) in OPTIONAL_FIELDS.iter().enumerate() {
        if skipped & (1 << i) == 0 {
            q.push(',');
            q.push_str(f);
        }
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::FragmentWriter;
    use crate::http::Answer;
    use crate::providers::shape::Observation;
    use bytes::Bytes;
    use phone::*;
    use reqwest::StatusCode;
    use serde_json::Value;

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
        let mut w = FragmentWriter::new(&[], &FAMILIES);
        s.write(&mut w);
        let f = w.finish();
        let mut out = Vec::new();
        crate::exposition::render(&mut out, &[&FAMILIES], std::iter::once(&f)).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
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
                refused_field: None,
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
        let g = graph_error(body).unwrap();
        assert!(g.refuses_a_field);
        assert_eq!(g.refused_field, Some(TIER_LIMIT_FIELD));
        let other = br#"{"error":{"message":"(#100) Tried accessing nonexisting field (secret_field_EAAG) on node type (X)","code":100}}"#;
        let g = graph_error(other).unwrap();
        assert!(g.refuses_a_field);
        assert_eq!(g.refused_field, None, "only fields we ask are kept");
        let missing = br#"{"error":{"message":"Unsupported get request. Object with ID '1' does not exist, cannot be loaded due to missing permissions, or does not support this operation.","type":"GraphMethodException","code":100,"error_subcode":33}}"#;
        assert!(!graph_error(missing).unwrap().refuses_a_field);
        assert_eq!(graph_error(HEALTHY.as_bytes()), None);
        assert_eq!(graph_error(b"<html>"), None);
    }

    #[test]
    fn logged_error_fields_are_sanitised() {
        let g = graph_error(br#"{"error":{"type":"OAuth\"Exception\nlevel=error","code":"190","error_subcode":"x","fbtrace_id":"A b=c\"d"}}"#).unwrap();
        assert_eq!(g.kind.as_deref(), Some("OAuth_Exception_level_error"));
        assert_eq!(g.fbtrace_id.as_deref(), Some("A_b_c_d"));
        assert_eq!(g.code, Some(190));
        assert_eq!(g.subcode, None);
    }

    #[test]
    fn graph_versions() {
        use crate::config::check_api_version as check;
        for v in ["v26.0", "v23.0", "v19.0", "v100.12"] {
            assert!(check(v).is_ok(), "{v}");
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
            assert!(check(v).is_err(), "{v}");
        }
        assert_eq!(
            fields_query(0),
            "status,quality_rating,name_status,code_verification_status,throughput,health_status,whatsapp_business_manager_messaging_limit,messaging_limit_tier"
        );
        assert_eq!(graph_version("v24.0"), Some((24, 0)));
        assert_eq!(graph_version("v9.12"), Some((9, 12)));
        // A version before v24.0 never asks for the portfolio limit, so no start spends a refusal.
        for v in ["v23.0", "v19.0", "v9.99"] {
            assert!(
                !fields_query(initial_skips(v)).contains(PORTFOLIO_LIMIT_FIELD),
                "{v}"
            );
            assert!(
                fields_query(initial_skips(v)).contains(TIER_LIMIT_FIELD),
                "{v}"
            );
        }
        for v in ["v24.0", "v26.0", crate::config::DEFAULT_GRAPH_API_VERSION] {
            assert_eq!(initial_skips(v), 0, "{v}");
        }
        assert!(!fields_query(0).contains("display_phone_number"));
        assert!(!fields_query(0).contains("verified_name"));
    }

    #[test]
    fn refused_fields_are_dropped_one_by_one_and_never_asked_again() {
        let refusal = |field: &str| {
            graph_error(format!(r#"{{"error":{{"message":"(#100) Tried accessing nonexisting field ({field}) on node type (WhatsAppBusinessPhoneNumber)","type":"OAuthException","code":100}}}}"#).as_bytes()).unwrap()
        };
        let portfolio = refusal(PORTFOLIO_LIMIT_FIELD);
        let tier = refusal(TIER_LIMIT_FIELD);
        // The named field goes, the other stays.
        let skipped = to_drop(&portfolio, 0);
        assert_eq!(
            fields_query(skipped),
            format!("{CORE_FIELDS},{TIER_LIMIT_FIELD}")
        );
        assert_eq!(
            to_drop(&portfolio, skipped),
            0,
            "already dropped: nothing to retry"
        );
        let skipped = skipped | to_drop(&tier, skipped);
        assert_eq!(fields_query(skipped), CORE_FIELDS);
        // A refusal of a core field, or with nothing left to drop, fails the poll.
        assert_eq!(to_drop(&refusal("health_status"), 0), 0);
        assert_eq!(to_drop(&tier, skipped), 0);
        // Unnamed: every optional field still asked goes at once, so one retry is enough.
        let unnamed = GraphError {
            code: Some(100),
            refuses_a_field: true,
            ..GraphError::default()
        };
        assert_eq!(fields_query(to_drop(&unnamed, 0)), CORE_FIELDS);
    }

    #[test]
    fn a_missing_number_is_not_found() {
        // facebook/openapi business-messaging-api: 404 phone_not_found and deleted_phone.
        for body in [
            r#"{"error":{"message":"Phone number not found","type":"GraphMethodException","code":803,"fbtrace_id":"AXsgnV2Cm3ZMGF3dF_cfYIn"}}"#,
            r#"{"error":{"message":"(#803) Some of the aliases you requested do not exist: 106540352242922","type":"OAuthException","code":803}}"#,
        ] {
            let e = read(404, body).unwrap_err();
            assert_eq!(e.reason(), "not_found", "{body}");
            assert!(!e.to_string().contains("106540352242922"), "{e}");
        }
    }
}
