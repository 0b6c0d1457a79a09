//! Black-box tests of PlugzAPI / Z-API polling against mock gateways on 127.0.0.1.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{reply, sample, Exporter, Mock};

const TOKEN: &str = "tok-PLUGZ-7f3a9c1e";

fn config(url: &str, extra: &str) -> String {
    format!(
        "global:\n  interval: 1s\n  timeout: 500ms\ngateways:\n  - name: sales\n    provider: plugzapi\n    url: {url}\n    instance: INST1\n    token: {TOKEN}\n{extra}"
    )
}

#[tokio::test]
async fn seed_answer_becomes_metrics() {
    let mock = Mock::start(|_| async {
        reply(200, r#"{"connected":true,"session":true,"error":"You are already connected.","smartphoneConnected":true}"#)
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    let m = ex.wait_for(5, |m| m.contains("whatsapp_up{")).await;
    let gw = [("gateway", "sales"), ("provider", "plugzapi")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_session_active", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_phone_connected", &gw), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "already_connected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "none")]
        ),
        Some(0.0)
    );
    assert_eq!(sample(&m, "whatsapp_polls_total", &gw), Some(1.0));
    assert!(sample(&m, "whatsapp_last_success_timestamp_seconds", &gw).unwrap() > 1.7e9);
    let seen = mock.seen();
    assert_eq!(
        seen[0].path,
        format!("/instances/INST1/token/{TOKEN}/status")
    );
    ex.stop().await;
}

#[tokio::test]
async fn state_changes_are_picked_up_within_an_interval() {
    let connected = Arc::new(AtomicUsize::new(1));
    let c = connected.clone();
    let mock = Mock::start(move |_| {
        let on = c.load(Ordering::SeqCst) == 1;
        async move {
            reply(200, format!(r#"{{"connected":{on},"session":{on},"error":"{}","smartphoneConnected":{on}}}"#,
                if on { "" } else { "You are not connected" }))
        }
    })
    .await;
    let ex = Exporter::start(&config(&mock.url(), "")).await;
    ex.wait_for(5, |m| {
        sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(1.0)
    })
    .await;
    connected.store(0, Ordering::SeqCst);
    let m = ex
        .wait_for(3, |m| {
            sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(0.0)
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "sales"), ("error", "not_connected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "sales")]
        ),
        Some(1.0)
    );
    connected.store(1, Ordering::SeqCst);
    let m = ex
        .wait_for(3, |m| {
            sample(m, "whatsapp_connected", &[("gateway", "sales")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "sales")]
        ),
        Some(2.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn zapi_sends_client_token_and_uses_its_own_provider_label() {
    let mock = Mock::start(|s| async move {
        match s.headers.get("client-token").and_then(|v| v.to_str().ok()) {
            Some("ct-SECRET-55") => reply(200, r#"{"connected":false,"session":false,"error":"You need to restore the session.","smartphoneConnected":false}"#),
            _ => reply(400, r#"{"error":"your client-token is not configured"}"#),
        }
    })
    .await;
    let yaml = format!(
        "gateways:\n  - name: z\n    provider: zapi\n    url: {}\n    instance: I\n    token: {TOKEN}\n    client_token: ct-SECRET-55\n    interval: 1s\n    timeout: 500ms\n",
        mock.url()
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex.wait_for(5, |m| m.contains("whatsapp_up{")).await;
    let gw = [("gateway", "z"), ("provider", "zapi")];
    assert_eq!(sample(&m, "whatsapp_up", &gw), Some(1.0));
    assert_eq!(sample(&m, "whatsapp_connected", &gw), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_status_error",
            &[("gateway", "z"), ("error", "restore_session")]
        ),
        Some(1.0)
    );
    assert!(!m.contains("ct-SECRET-55"));
    ex.stop().await;
}
