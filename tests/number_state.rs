//! Is this number working, black-box: each state of `whatsapp_number_state` and its problems from
//! the evidence each provider can give (a poll, pushes, their absence), against mock gateways on
//! 127.0.0.1, and the hysteresis that keeps a flapping session's story steady.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::{reply, sample, unix_now, Exporter, Mock};

const SECRET: &str = "number-state-secret-0123456789";

/// Every gateway's answer, by the path the exporter asks; `FLAP` alternates at every poll.
async fn gateways_mock() -> Mock {
    let flips = Arc::new(AtomicU64::new(0));
    Mock::start(move |s| {
        let flips = flips.clone();
        async move {
            let zapi = |connected: bool, session: bool| {
                format!(r#"{{"connected":{connected},"session":{session},"error":"","smartphoneConnected":true}}"#)
            };
            let p = s.path.as_str();
            if p.starts_with("/instances/OK/") {
                reply(200, zapi(true, true))
            } else if p.starts_with("/instances/OFF/") {
                reply(200, zapi(false, false))
            } else if p.starts_with("/instances/DOWN/") {
                reply(500, "upstream gone")
            } else if p.starts_with("/instances/FLAP/") {
                let up = flips.fetch_add(1, Ordering::Relaxed) % 2 == 0;
                reply(200, zapi(up, true))
            } else if p.contains("getStateInstance") {
                reply(200, r#"{"stateInstance":"yellowCard"}"#)
            } else if p.starts_with("/instance/connectionState/") {
                reply(200, r#"{"instance":{"instanceName":"lost","state":"close"}}"#)
            } else if p.contains("106540352242922") {
                reply(200, r#"{"status":"CONNECTED","quality_rating":"RED","messaging_limit_tier":"TIER_1K","health_status":{"can_send_message":"AVAILABLE","entities":[]},"id":"106540352242922"}"#)
            } else if p.starts_with("/api/sessions/") {
                reply(200, r#"{"name":"default","status":"SCAN_QR_CODE"}"#)
            } else {
                reply(404, "{}")
            }
        }
    })
    .await
}

fn zapi(name: &str, instance: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    provider: zapi\n    url: {url}\n    instance: {instance}\n    token: zapi-token-for-tests\n{extra}")
}

fn config(url: &str) -> String {
    let hooks = format!("    webhooks:\n      secret: {SECRET}\n");
    let mut gateways = String::new();
    for (name, instance, extra) in [
        ("ok", "OK", String::new()),
        ("works", "OK", hooks.clone()),
        ("stuck", "OK", hooks.clone()),
        ("off", "OFF", String::new()),
        ("down", "DOWN", String::new()),
        (
            "flap",
            "FLAP",
            "    interval: 100ms\n    timeout: 90ms\n".to_string(),
        ),
    ] {
        gateways.push_str(&zapi(name, instance, url, &extra));
    }
    gateways.push_str(&format!("  - name: yellow\n    provider: greenapi\n    url: {url}\n    instance: \"1101000001\"\n    token: green-token-for-tests\n"));
    gateways.push_str(&format!("  - name: qr\n    provider: waha\n    url: {url}\n    instance: default\n    token: waha-key-for-tests\n"));
    gateways.push_str(&format!("  - name: evo\n    provider: evolution\n    url: {url}\n    instance: lost\n    token: evo-key-for-tests\n"));
    gateways.push_str(&format!("  - name: brand\n    provider: cloudapi\n    url: {url}\n    phone_number_id: \"106540352242922\"\n    token: meta-token-for-tests\n"));
    format!(
        "global:\n  interval: 1h\n  timeout: 5s\n  number_state:\n    for: 600ms\n    acks_stuck_after: 500ms\ngateways:\n{gateways}"
    )
}

fn state(m: &str, gateway: &str) -> Option<String> {
    [
        "working",
        "connected",
        "unknown",
        "restricted",
        "zombie",
        "disconnected",
    ]
    .into_iter()
    .find(|s| {
        sample(
            m,
            "whatsapp_number_state",
            &[("gateway", gateway), ("state", s)],
        ) == Some(1.0)
    })
    .map(str::to_string)
}

fn problems(m: &str, gateway: &str) -> Vec<String> {
    m.lines()
        .filter(|l| l.starts_with("whatsapp_number_problem{"))
        .filter(|l| l.contains(&format!("gateway=\"{gateway}\"")))
        .filter_map(|l| {
            l.split("problem=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(String::from)
        })
        .collect()
}

async fn push(ex: &Exporter, gateway: &str, body: String) {
    let r = common::client()
        .post(ex.url(&format!("/webhooks/{gateway}?secret={SECRET}")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

fn ms_now() -> u64 {
    (unix_now() * 1000.0) as u64
}

fn received(id: &str) -> String {
    format!(
        r#"{{"type":"ReceivedCallback","instanceId":"OK","messageId":"{id}","phone":"5544999999999","fromMe":false,"momment":{},"text":{{"message":"oi"}}}}"#,
        ms_now()
    )
}

fn acknowledged(id: &str) -> String {
    format!(
        r#"{{"type":"MessageStatusCallback","instanceId":"OK","status":"RECEIVED","ids":["{id}"],"phone":"5544999999999","momment":{}}}"#,
        ms_now()
    )
}

fn sent(id: &str) -> String {
    format!(
        r#"{{"type":"DeliveryCallback","instanceId":"OK","messageId":"{id}","zaapId":"Z{id}","phone":"5544999999999","momment":{}}}"#,
        ms_now()
    )
}

#[tokio::test]
async fn every_state_from_the_evidence_each_provider_gives() {
    let mock = gateways_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    for g in [
        "ok", "works", "stuck", "off", "down", "yellow", "qr", "evo", "brand",
    ] {
        ex.poll(g).await;
    }
    // What the polls alone tell, shown as soon as the first answer comes.
    let m = ex
        .wait_for(10, |m| {
            ["ok", "off", "down", "yellow", "qr", "evo", "brand"]
                .iter()
                .all(|g| state(m, g).is_some_and(|s| s != "unknown" || *g == "down"))
        })
        .await;
    assert_eq!(state(&m, "ok").as_deref(), Some("connected"));
    assert!(problems(&m, "ok").is_empty());
    assert_eq!(state(&m, "off").as_deref(), Some("disconnected"));
    assert_eq!(problems(&m, "off"), ["logged_out"]);
    assert_eq!(state(&m, "down").as_deref(), Some("unknown"));
    assert_eq!(problems(&m, "down"), ["api_unreadable"]);
    assert_eq!(state(&m, "yellow").as_deref(), Some("restricted"));
    assert_eq!(problems(&m, "yellow"), ["send_limited"]);
    assert_eq!(state(&m, "qr").as_deref(), Some("disconnected"));
    assert_eq!(problems(&m, "qr"), ["logged_out"]);
    assert_eq!(state(&m, "evo").as_deref(), Some("disconnected"));
    assert_eq!(problems(&m, "evo"), ["logged_out"]);
    assert_eq!(state(&m, "brand").as_deref(), Some("restricted"));
    assert_eq!(problems(&m, "brand"), ["quality_low"]);

    // Pushes: a received message is positive evidence, shown once it has held for `for`.
    push(&ex, "works", received("IN1")).await;
    // The stuck number usually gets its acknowledgements, then one message gets none.
    push(&ex, "stuck", sent("OUT1")).await;
    push(&ex, "stuck", acknowledged("OUT1")).await;
    push(&ex, "stuck", sent("OUT2")).await;
    let m = ex
        .wait_for(10, |m| {
            state(m, "works").as_deref() == Some("working")
                && state(m, "stuck").as_deref() == Some("zombie")
        })
        .await;
    assert_eq!(problems(&m, "stuck"), ["acks_stuck"]);
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_unacknowledged",
            &[("gateway", "stuck")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_unacknowledged",
            &[("gateway", "works")]
        ),
        Some(0.0)
    );
    // Its acknowledgement comes: the problem goes at once, the state after `for`.
    push(&ex, "stuck", acknowledged("OUT2")).await;
    let m = ex
        .wait_for(10, |m| state(m, "stuck").as_deref() == Some("working"))
        .await;
    assert!(problems(&m, "stuck").is_empty());
    let changes = sample(
        &m,
        "whatsapp_number_state_changes_total",
        &[("gateway", "stuck")],
    );
    assert!(
        changes.is_some_and(|n| n >= 2.0),
        "to zombie and back to working: {changes:?}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn a_flapping_session_shows_one_story() {
    let mock = gateways_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    // The session flips at every poll (every 100 ms): more than `for` of flaps.
    let m = ex
        .wait_for(10, |m| {
            sample(
                m,
                "whatsapp_connected_changes_total",
                &[("gateway", "flap")],
            )
            .is_some_and(|n| n >= 20.0)
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_number_state_changes_total",
            &[("gateway", "flap")]
        ),
        Some(0.0),
        "one story: the first answer's"
    );
    let first = state(&m, "flap");
    assert!(
        matches!(first.as_deref(), Some("connected" | "disconnected")),
        "{first:?}"
    );
    ex.stop().await;
}
