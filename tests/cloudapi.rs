//! Black-box tests of WhatsApp Cloud API polling against a mock Graph API on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use common::{reply, sample, samples, Exporter, Mock, Seen};

/// Looks like a system-user token, so that a leak is easy to spot.
const TOKEN: &str = "EAAGm0PX4ZCpsBAcloudSECRETtoken7f3a9c";
const PHONE_ID: &str = "106540352242922";
/// The Graph API version the exporter asks when none is configured: the current one.
const DEFAULT_VERSION: &str = "v26.0";
const GW: [(&str, &str); 2] = [("gateway", "brand"), ("provider", "cloudapi")];

fn config(url: &str, extra: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: brand\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"{PHONE_ID}\"\n    token: {TOKEN}\n{extra}"
    )
}

/// A phone number as Graph answers for the fields the exporter asks.
fn number(status: &str, quality: &str, tier: &str, health: &str) -> String {
    format!(
        r#"{{"status":"{status}","quality_rating":"{quality}","name_status":"APPROVED","code_verification_status":"VERIFIED","throughput":{{"level":"STANDARD"}},"messaging_limit_tier":"{tier}","health_status":{health},"id":"{PHONE_ID}"}}"#
    )
}

fn health(overall: &str, phone: &str, waba: &str) -> String {
    format!(
        r#"{{"can_send_message":"{overall}","entities":[{{"entity_type":"PHONE_NUMBER","id":"{PHONE_ID}","can_send_message":"{phone}"}},{waba},{{"entity_type":"BUSINESS","id":"506914307656634","can_send_message":"AVAILABLE"}},{{"entity_type":"APP","id":"634974688087057","can_send_message":"AVAILABLE"}}]}}"#
    )
}

const WABA_OK: &str =
    r#"{"entity_type":"WABA","id":"102290129340398","can_send_message":"AVAILABLE"}"#;

fn healthy() -> String {
    number(
        "CONNECTED",
        "GREEN",
        "TIER_1K",
        &health("AVAILABLE", "AVAILABLE", WABA_OK),
    )
}

fn graph_error(code: u32, subcode: Option<u32>, message: &str) -> String {
    let sub = subcode.map_or(String::new(), |s| format!(r#","error_subcode":{s}"#));
    format!(
        r#"{{"error":{{"message":"{message}","type":"OAuthException","code":{code}{sub},"fbtrace_id":"AbCdEfGh-_123"}}}}"#
    )
}

/// A Graph API that checks the path and the bearer token like the real one, then answers what
/// the test has put in `answer`.
async fn graph(answer: Arc<Mutex<(u16, String)>>) -> Mock {
    Mock::start(move |s: Seen| {
        let answer = answer.lock().unwrap().clone();
        async move {
            let bearer = s.headers.get("authorization").and_then(|v| v.to_str().ok());
            if bearer != Some(&format!("Bearer {TOKEN}")) {
                return reply(
                    401,
                    graph_error(
                        190,
                        None,
                        "Invalid OAuth access token - Cannot parse access token",
                    ),
                );
            }
            if s.path != format!("/{DEFAULT_VERSION}/{PHONE_ID}") {
                return reply(400, graph_error(100, Some(33), "Unsupported get request."));
            }
            reply(answer.0, answer.1)
        }
    })
    .await
}

fn answer(status: u16, body: impl Into<String>) -> Arc<Mutex<(u16, String)>> {
    Arc::new(Mutex::new((status, body.into())))
}

fn set(a: &Arc<Mutex<(u16, String)>>, status: u16, body: impl Into<String>) {
    *a.lock().unwrap() = (status, body.into());
}

fn failures(m: &str, reason: &str) -> f64 {
    sample(
        m,
        "whatsapp_poll_failures_total",
        &[("gateway", "brand"), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

fn state(m: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = vec![("gateway", "brand")];
    all.extend_from_slice(labels);
    sample(m, name, &all)
}

/// Neither the token nor anything private may show on any page.
async fn assert_nothing_leaks(ex: &Exporter) {
    let (_, probe) = ex.get("/probe?target=brand").await;
    let (_, page) = ex.get("/").await;
    let metrics = ex.metrics().await;
    for (what, text) in [
        ("/metrics", metrics),
        ("/", page),
        ("/probe", probe),
        ("logs", common::logs()),
    ] {
        assert!(!text.contains(TOKEN), "the token leaked into {what}");
        assert!(
            !text.contains("98888-7777"),
            "a phone number leaked into {what}"
        );
        assert!(
            !text.contains("payment method"),
            "free text leaked into {what}"
        );
    }
}

#[tokio::test]
async fn healthy_number_becomes_metrics() {
    let mock = graph(answer(200, healthy())).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &GW), Some(1.0));
    let quality = "whatsapp_cloudapi_quality_rating";
    assert_eq!(state(&m, quality, &[("rating", "GREEN")]), Some(1.0));
    assert_eq!(state(&m, quality, &[("rating", "RED")]), Some(0.0));
    assert_eq!(state(&m, quality, &[("rating", "UNKNOWN")]), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_cloudapi_messaging_limit", &GW),
        Some(1000.0)
    );
    let send = "whatsapp_cloudapi_can_send_message";
    for entity in ["OVERALL", "PHONE_NUMBER", "WABA", "BUSINESS", "APP"] {
        let at = |s| state(&m, send, &[("entity_type", entity), ("state", s)]);
        assert_eq!(at("AVAILABLE"), Some(1.0), "{entity}");
        assert_eq!(at("LIMITED"), Some(0.0), "{entity}");
        assert_eq!(at("BLOCKED"), Some(0.0), "{entity}");
    }
    assert_eq!(
        state(
            &m,
            "whatsapp_cloudapi_throughput_level",
            &[("level", "STANDARD")]
        ),
        Some(1.0)
    );
    assert_eq!(
        state(
            &m,
            "whatsapp_cloudapi_name_status",
            &[("status", "APPROVED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        state(&m, "whatsapp_cloudapi_status", &[("status", "CONNECTED")]),
        Some(1.0)
    );
    assert_eq!(
        state(&m, "whatsapp_cloudapi_status", &[("status", "FLAGGED")]),
        Some(0.0)
    );
    assert!(!m.contains("whatsapp_cloudapi_health_error{"));
    assert!(!m.contains(PHONE_ID), "entity ids are not labels");

    let seen = &mock.seen()[0];
    assert_eq!(seen.path, format!("/{DEFAULT_VERSION}/{PHONE_ID}"));
    let fields = seen.query.strip_prefix("fields=").unwrap();
    for f in [
        "status",
        "quality_rating",
        "health_status",
        "throughput",
        "name_status",
        "messaging_limit_tier",
        "whatsapp_business_manager_messaging_limit",
    ] {
        assert!(fields.split(',').any(|x| x == f), "{f} not asked: {fields}");
    }
    for private in ["display_phone_number", "verified_name"] {
        assert!(!fields.contains(private), "{private} must not be asked");
    }
    let (_, page) = ex.get("/").await;
    assert!(page.contains("quality GREEN"), "{page}");
    ex.stop().await;
}

#[tokio::test]
async fn quality_drop_flags_the_number() {
    let a = answer(200, healthy());
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let quality = "whatsapp_cloudapi_quality_rating";
    ex.wait_for(5, |m| {
        state(m, quality, &[("rating", "GREEN")]) == Some(1.0)
    })
    .await;

    set(
        &a,
        200,
        number(
            "CONNECTED",
            "YELLOW",
            "TIER_1K",
            &health("AVAILABLE", "AVAILABLE", WABA_OK),
        ),
    );
    ex.wait_for(5, |m| {
        state(m, quality, &[("rating", "YELLOW")]) == Some(1.0)
    })
    .await;

    let limited = r#"{"can_send_message":"LIMITED","entities":[{"entity_type":"PHONE_NUMBER","id":"106540352242922","can_send_message":"LIMITED","additional_info":["Your business phone number's quality is low."]},{"entity_type":"WABA","id":"102290129340398","can_send_message":"AVAILABLE"}]}"#;
    set(&a, 200, number("FLAGGED", "RED", "TIER_250", limited));
    let m = ex
        .wait_for(5, |m| state(m, quality, &[("rating", "RED")]) == Some(1.0))
        .await;
    assert_eq!(state(&m, quality, &[("rating", "GREEN")]), Some(0.0));
    assert_eq!(state(&m, quality, &[("rating", "YELLOW")]), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_connected", &GW),
        Some(0.0),
        "FLAGGED is not CONNECTED"
    );
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    assert_eq!(
        state(&m, "whatsapp_cloudapi_status", &[("status", "FLAGGED")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_connected_changes_total", &GW),
        Some(1.0)
    );
    let send = "whatsapp_cloudapi_can_send_message";
    assert_eq!(
        state(
            &m,
            send,
            &[("entity_type", "OVERALL"), ("state", "LIMITED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        state(
            &m,
            send,
            &[("entity_type", "PHONE_NUMBER"), ("state", "LIMITED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_cloudapi_messaging_limit", &GW),
        Some(250.0)
    );
    assert!(
        !m.contains("quality is low"),
        "additional_info is free text"
    );
    ex.stop().await;
}

#[tokio::test]
async fn health_errors_appear_and_clear() {
    let blocked_waba = r#"{"entity_type":"WABA","id":"102290129340398","can_send_message":"BLOCKED","errors":[{"error_code":141006,"error_description":"There is an error with the payment method of +55 11 98888-7777.","possible_solution":"Update the payment method in WhatsApp Manager."},{"error_code":"141010","error_description":"The business is not verified."}]}"#;
    let a = answer(
        200,
        number(
            "CONNECTED",
            "GREEN",
            "TIER_10K",
            &health("BLOCKED", "AVAILABLE", blocked_waba),
        ),
    );
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let errors = "whatsapp_cloudapi_health_error";
    let m = ex
        .wait_for(5, |m| {
            !samples(m, errors, &[("gateway", "brand")]).is_empty()
        })
        .await;
    assert_eq!(
        state(
            &m,
            errors,
            &[("entity_type", "WABA"), ("error_code", "141006")]
        ),
        Some(1.0)
    );
    assert_eq!(
        state(
            &m,
            errors,
            &[("entity_type", "WABA"), ("error_code", "141010")]
        ),
        Some(1.0)
    );
    assert_eq!(samples(&m, errors, &[("gateway", "brand")]).len(), 2);
    let send = "whatsapp_cloudapi_can_send_message";
    assert_eq!(
        state(
            &m,
            send,
            &[("entity_type", "OVERALL"), ("state", "BLOCKED")]
        ),
        Some(1.0)
    );
    assert_eq!(
        state(&m, send, &[("entity_type", "WABA"), ("state", "BLOCKED")]),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "whatsapp_connected", &GW),
        Some(1.0),
        "connected, yet blocked from sending"
    );
    assert_nothing_leaks(&ex).await;

    set(&a, 200, healthy());
    let m = ex
        .wait_for(5, |m| {
            state(m, send, &[("entity_type", "WABA"), ("state", "AVAILABLE")]) == Some(1.0)
        })
        .await;
    assert!(
        samples(&m, errors, &[("gateway", "brand")]).is_empty(),
        "a cleared error leaves no series behind:\n{m}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn unlimited_tier_is_infinite() {
    let body = number(
        "CONNECTED",
        "GREEN",
        "TIER_UNLIMITED",
        &health("AVAILABLE", "AVAILABLE", WABA_OK),
    );
    let mock = graph(answer(200, body)).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_cloudapi_messaging_limit{"))
        .await;
    assert!(
        m.contains(
            "whatsapp_cloudapi_messaging_limit{gateway=\"brand\",provider=\"cloudapi\"} +Inf\n"
        ),
        "{m}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn expired_token_is_unauthorized() {
    let expired = graph_error(
        190,
        Some(463),
        "Error validating access token: Session has expired on Tuesday, 01-Jul-25 10:00:00 PDT.",
    );
    let mock = graph(answer(400, expired)).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex.wait_for(5, |m| failures(m, "unauthorized") >= 1.0).await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_connected", &GW),
        None,
        "absent while down"
    );
    assert_eq!(failures(&m, "http_status"), 0.0);
    assert!(!m.contains("whatsapp_cloudapi_quality_rating{gateway=\"brand\""));
    let (_, page) = ex.get("/").await;
    assert!(page.contains("Graph error 190"), "{page}");
    let logs = common::logs();
    assert!(logs.contains("graph_code=190"), "{logs}");
    assert!(logs.contains("graph_subcode=463"));
    assert!(logs.contains("fbtrace_id=AbCdEfGh-_123"));
    for text in [logs, page, m] {
        assert!(
            !text.contains("Session has expired"),
            "the Graph message is never shown"
        );
    }
    ex.stop().await;
}

#[tokio::test]
async fn unauthorized_without_a_body() {
    let a = answer(401, "");
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    ex.wait_for(5, |m| failures(m, "unauthorized") >= 1.0).await;
    set(&a, 403, "Forbidden");
    let before = failures(&ex.metrics().await, "unauthorized");
    let m = ex
        .wait_for(5, |m| failures(m, "unauthorized") > before)
        .await;
    assert_eq!(failures(&m, "http_status"), 0.0);
    ex.stop().await;
}

#[tokio::test]
async fn rate_limits_are_told_apart() {
    let a = answer(
        400,
        graph_error(
            80007,
            Some(2494049),
            "(#80007) There have been too many calls to this WhatsApp Business account.",
        ),
    );
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex.wait_for(5, |m| failures(m, "rate_limited") >= 1.0).await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(0.0));
    assert_eq!(failures(&m, "http_status"), 0.0);

    // The app-level limit comes as 403: still a rate limit, not a refused token.
    set(
        &a,
        403,
        graph_error(4, None, "(#4) Application request limit reached"),
    );
    let m = ex.wait_for(5, |m| failures(m, "rate_limited") >= 2.0).await;
    assert_eq!(failures(&m, "unauthorized"), 0.0);
    assert!(
        common::logs().contains("graph_code=4 "),
        "a new code is logged"
    );

    set(&a, 429, "");
    ex.wait_for(5, |m| failures(m, "rate_limited") >= 3.0).await;
    set(&a, 200, healthy());
    ex.wait_for(5, |m| sample(m, "whatsapp_up", &GW) == Some(1.0))
        .await;
    ex.stop().await;
}

#[tokio::test]
async fn html_and_broken_json_are_failures() {
    let a = answer(
        502,
        "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
    );
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex.wait_for(5, |m| failures(m, "http_status") >= 1.0).await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(0.0));

    set(
        &a,
        200,
        "<html><body>Sorry, something went wrong.</body></html>",
    );
    ex.wait_for(5, |m| failures(m, "invalid_response") >= 1.0)
        .await;

    set(&a, 200, r#"{"status":"CONNECTED","quality_rating":"GRE"#);
    ex.wait_for(5, |m| failures(m, "invalid_response") >= 2.0)
        .await;

    // An error object with HTTP 200.
    set(
        &a,
        200,
        graph_error(2, None, "Service temporarily unavailable"),
    );
    let m = ex
        .wait_for(5, |m| failures(m, "invalid_response") >= 3.0)
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(0.0));
    let (_, page) = ex.get("/").await;
    assert!(!page.contains("temporarily unavailable"), "{page}");
    assert!(!page.contains("Sorry"), "{page}");
    ex.stop().await;
}

#[tokio::test]
async fn token_travels_only_in_the_authorization_header() {
    // Graph echoes a token it cannot parse in its message: that must go nowhere either.
    let a = answer(200, healthy());
    let mock = graph(a.clone()).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    ex.wait_for(5, |m| sample(m, "whatsapp_up", &GW) == Some(1.0))
        .await;
    set(
        &a,
        400,
        graph_error(190, None, &format!("Malformed access token {TOKEN}")),
    );
    ex.wait_for(5, |m| failures(m, "unauthorized") >= 1.0).await;
    assert_nothing_leaks(&ex).await;

    let seen = mock.seen();
    assert!(seen.len() >= 2);
    for s in &seen {
        assert!(!s.query.contains(TOKEN), "token in the query string");
        assert!(!s.query.contains("access_token"));
        assert!(!s.path.contains(TOKEN));
        for (name, value) in &s.headers {
            let v = value.to_str().unwrap_or("");
            if name == "authorization" {
                assert_eq!(v, format!("Bearer {TOKEN}"));
            } else {
                assert!(!v.contains(TOKEN), "token in header {name}");
            }
        }
    }
    ex.stop().await;
}

#[tokio::test]
async fn a_refused_limit_field_is_dropped_not_the_poll() {
    // A Graph version that has removed the deprecated per-number field.
    let mock = Mock::start(|s: Seen| async move {
        if s.query.contains("messaging_limit_tier") {
            return reply(
                400,
                graph_error(100, None, "(#100) Tried accessing nonexisting field (messaging_limit_tier) on node type (WhatsAppBusinessPhoneNumber)"),
            );
        }
        reply(
            200,
            format!(
                r#"{{"status":"CONNECTED","quality_rating":"GREEN","whatsapp_business_manager_messaging_limit":"TIER_2K","id":"{PHONE_ID}"}}"#
            ),
        )
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex
        .wait_for(5, |m| {
            sample(m, "whatsapp_polls_total", &GW).unwrap_or(0.0) >= 3.0
        })
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    assert_eq!(failures(&m, "http_status"), 0.0);
    assert_eq!(
        sample(&m, "whatsapp_cloudapi_messaging_limit", &GW),
        Some(2000.0)
    );
    let refused = mock
        .seen()
        .iter()
        .filter(|s| s.query.contains("messaging_limit_tier"))
        .count();
    assert_eq!(refused, 1, "the refused field is not asked again");
    ex.stop().await;
}

#[tokio::test]
async fn a_refused_portfolio_field_is_asked_once_and_the_tier_kept() {
    // A Graph account that does not know the portfolio-wide field: the named field goes, the
    // per-number tier stays, and the refused field is never asked again.
    let mock = Mock::start(|s: Seen| async move {
        if s.query.contains("whatsapp_business_manager_messaging_limit") {
            return reply(
                400,
                graph_error(100, None, "(#100) Tried accessing nonexisting field (whatsapp_business_manager_messaging_limit) on node type (WhatsAppBusinessPhoneNumber)"),
            );
        }
        reply(200, healthy())
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex
        .wait_for(5, |m| {
            sample(m, "whatsapp_polls_total", &GW).unwrap_or(0.0) >= 3.0
        })
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    assert_eq!(
        sample(&m, "whatsapp_cloudapi_messaging_limit", &GW),
        Some(1000.0),
        "the tier is still asked"
    );
    let seen = mock.seen();
    let refused = seen
        .iter()
        .filter(|s| {
            s.query
                .contains("whatsapp_business_manager_messaging_limit")
        })
        .count();
    assert_eq!(
        refused, 1,
        "the refused field is asked once, then never again"
    );
    assert!(seen
        .iter()
        .all(|s| s.query.contains("messaging_limit_tier")));
    ex.stop().await;
}

#[tokio::test]
async fn a_version_before_v24_never_asks_the_portfolio_field() {
    // The field exists from Graph v24.0: a gateway pinned to v23.0 spends no refused call on it,
    // not even at start.
    let mock = Mock::start(|s: Seen| async move {
        if s.path != format!("/v23.0/{PHONE_ID}") {
            return reply(400, graph_error(100, Some(33), "Unsupported get request."));
        }
        if s.query.contains("whatsapp_business_manager_messaging_limit") {
            return reply(
                400,
                graph_error(100, None, "(#100) Tried accessing nonexisting field (whatsapp_business_manager_messaging_limit) on node type (WhatsAppBusinessPhoneNumber)"),
            );
        }
        reply(200, healthy())
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "    api_version: v23.0\n")).await;
    let m = ex
        .wait_for(5, |m| {
            sample(m, "whatsapp_polls_total", &GW).unwrap_or(0.0) >= 2.0
        })
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    let seen = mock.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert!(
            !s.query
                .contains("whatsapp_business_manager_messaging_limit"),
            "v23.0 was asked for the v24 field: {}",
            s.query
        );
        assert!(s.query.contains("messaging_limit_tier"));
    }
    ex.stop().await;
}

#[tokio::test]
async fn a_missing_number_is_not_found() {
    let a = answer(
        404,
        r#"{"error":{"message":"Phone number not found","type":"GraphMethodException","code":803,"fbtrace_id":"AXsgnV2Cm3ZMGF3dF_cfYIn"}}"#,
    );
    let mock = graph(a).await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex.wait_for(5, |m| failures(m, "not_found") >= 1.0).await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(0.0));
    assert_eq!(failures(&m, "http_status"), 0.0);
    let (_, page) = ex.get("/").await;
    assert!(page.contains("not_found"), "{page}");
    assert_nothing_leaks(&ex).await;
    ex.stop().await;
}

#[tokio::test]
async fn api_version_is_configurable() {
    let mock = Mock::start(|s: Seen| async move {
        if s.path == format!("/v21.0/{PHONE_ID}") {
            reply(200, healthy())
        } else {
            reply(400, graph_error(100, Some(33), "Unsupported get request."))
        }
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "    api_version: v21.0\n")).await;
    let m = ex
        .wait_for(5, |m| m.contains("whatsapp_poll_duration_seconds{"))
        .await;
    assert_eq!(sample(&m, "whatsapp_up", &GW), Some(1.0));
    ex.stop().await;
}

#[tokio::test]
async fn malformed_ids_and_versions_are_refused_at_start() {
    let yaml = config("http://127.0.0.1:9", "").replace(PHONE_ID, "+55 11 98888-7777");
    let err = Exporter::try_start(&yaml).await.err().unwrap();
    // Told by the configuration check, so that --config.check catches it too.
    assert!(
        err.contains("gateways[0] (brand): phone_number_id: must be the numeric"),
        "{err}"
    );
    let yaml = config("http://127.0.0.1:9", "    api_version: latest\n");
    let err = Exporter::try_start(&yaml).await.err().unwrap();
    assert!(
        err.contains("gateways[0] (brand): api_version: \"latest\" is not"),
        "{err}"
    );
    assert!(!err.contains(TOKEN));
    assert!(
        !err.contains("98888"),
        "the phone number is not echoed: {err}"
    );
}
