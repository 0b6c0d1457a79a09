//! Discovered instances keep their names as the server spells them (issue 25): an Evolution
//! server on 127.0.0.1 lists instances named as real Brazilian ones are ("Loja Centro",
//! "Atendimento São Paulo"), one with a quote and a backslash, one with a control character and
//! one of 129 characters. The first three are exported under `gateway="evo/<name>"` (escaped as
//! the text format requires), probed with their names percent-encoded, and reached by their
//! pushes; the last two are skipped and counted.

mod common;

use common::{fixture_body, hourly, reply, sample, Exporter, Mock};
use serde_json::Value;

const KEY: &str = "evo-GLOBAL-KEY-4b7e1d93";
const SECRET: &str = "evolution-webhook-secret-0123456789";

const LOJA: &str = "Loja Centro";
const SP: &str = "Atendimento São Paulo";
/// `Filial "Sul" \ 2`, which the text format writes `Filial \"Sul\" \\ 2`.
const QUOTED: &str = "Filial \"Sul\" \\ 2";
const QUOTED_ESCAPED: &str = "Filial \\\"Sul\\\" \\\\ 2";
const CONTROL: &str = "Loja\u{7}Norte";

fn too_long() -> String {
    "ç".repeat(129)
}

/// A server listing the names above, each with a token and a number as real rows carry.
async fn server() -> Mock {
    let names: Vec<(String, &str)> = vec![
        (LOJA.into(), "open"),
        (SP.into(), "close"),
        (QUOTED.into(), "open"),
        (CONTROL.into(), "open"),
        (too_long(), "open"),
    ];
    Mock::start(move |s| {
        let names = names.clone();
        async move {
            if s.path != "/instance/fetchInstances" {
                return reply(404, r#"{"status":404,"error":"Not Found"}"#);
            }
            let rows: Vec<Value> = names
                .iter()
                .map(|(n, st)| {
                    serde_json::json!({"name": n, "connectionStatus": st,
                        "token": "B3844804-481D-47A4-B69C-F14B4206EB56",
                        "number": "5511999999999"})
                })
                .collect();
            reply(200, Value::Array(rows).to_string())
        }
    })
    .await
}

fn config(url: &str) -> String {
    hourly(&format!(
        "  - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: all\n    webhooks:\n      secret: {SECRET}\n"
    ))
}

fn connected(m: &str, escaped: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_connected",
        &[("gateway", &format!("evo/{escaped}")), ("server", "evo")],
    )
}

#[tokio::test]
async fn names_with_spaces_accents_and_quotes_are_exported_as_they_are() {
    let mock = server().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(connected(&m, LOJA), Some(1.0), "{m}");
    assert_eq!(connected(&m, SP), Some(0.0), "{m}");
    assert_eq!(connected(&m, QUOTED_ESCAPED), Some(1.0), "{m}");
    let evo = [("gateway", "evo")];
    assert_eq!(sample(&m, "whatsapp_discovered_instances", &evo), Some(3.0));
    assert_eq!(
        sample(&m, "whatsapp_discovery_skipped_instances", &evo),
        Some(2.0),
        "a control character and 129 characters are skipped"
    );
    assert!(!m.contains("Norte") && !m.contains(&"ç".repeat(129)), "{m}");
    // Every sample line is still one line of the text format: nothing broke out of its quotes.
    for line in m.lines().filter(|l| l.contains("Filial")) {
        assert!(line.contains(QUOTED_ESCAPED), "{line}");
    }
    let logs = common::logs();
    assert!(!logs.contains("Norte"), "a skipped name is not logged");
    ex.stop().await;
}

#[tokio::test]
async fn a_discovered_instance_is_probed_by_its_percent_encoded_name() {
    let mock = server().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    for (query, escaped, up) in [
        ("evo/Loja%20Centro", LOJA, 1.0),
        ("evo/Atendimento%20S%C3%A3o%20Paulo", SP, 0.0),
        ("evo%2FLoja+Centro", LOJA, 1.0),
        ("evo/Filial%20%22Sul%22%20%5C%202", QUOTED_ESCAPED, 1.0),
    ] {
        let (code, body) = ex.get(&format!("/probe?target={query}")).await;
        assert_eq!(code, 200, "{query}: {body}");
        assert_eq!(connected(&body, escaped), Some(up), "{query}:\n{body}");
        // Only that instance's series: no other instance, not the server's own.
        let gateway = format!("gateway=\"evo/{escaped}\"");
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.contains(&gateway), "{query}: {line}");
        }
    }
    assert_eq!(
        mock.hits(),
        1,
        "one listing for every probe of its instances"
    );
    let (code, debug) = ex
        .get("/probe?target=evo/Atendimento%20S%C3%A3o%20Paulo&debug=true")
        .await;
    assert_eq!(code, 200);
    assert!(
        debug.starts_with("Discovered instance evo/Atendimento São Paulo"),
        "{debug}"
    );
    assert!(
        !debug.contains(KEY) && !debug.contains("B3844804"),
        "{debug}"
    );
    for unknown in [
        "evo/Loja",
        "evo/Loja%07Norte",
        "evo/",
        "nope/Loja%20Centro",
        "evo/Loja%20Centro/x",
    ] {
        let (code, _) = ex.get(&format!("/probe?target={unknown}")).await;
        assert_eq!(code, 404, "{unknown}");
    }
    ex.stop().await;
}

#[tokio::test]
async fn a_push_for_loja_centro_reaches_its_instance() {
    let mock = server().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    ex.poll("evo").await;
    let mut close: Value = serde_json::from_str(&fixture_body(
        "evolution",
        "connection_update_close_logged_out",
    ))
    .unwrap();
    close["instance"] = Value::from(LOJA);
    close["data"]["instance"] = Value::from(LOJA);
    let status = common::client()
        .post(ex.url(&format!("/webhooks/evo?secret={SECRET}")))
        .header("content-type", "application/json")
        .body(close.to_string())
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
    let m = ex.metrics().await;
    let loja = format!("evo/{LOJA}");
    assert_eq!(connected(&m, LOJA), Some(0.0), "the push set it:\n{m}");
    assert_eq!(
        sample(
            &m,
            "whatsapp_disconnects_total",
            &[("gateway", &loja), ("code", "401")]
        ),
        Some(1.0),
        "{m}"
    );
    let logged = common::logs().lines().any(|l| {
        l.contains("pushed: the number is not connected")
            && l.contains("gateway=\"evo/Loja Centro\"")
    });
    assert!(logged, "told under the instance's gateway name");
    assert_eq!(
        sample(
            &m,
            "whatsapp_disconnects_total",
            &[("gateway", "evo"), ("code", "401")]
        )
        .unwrap_or(0.0),
        0.0,
        "not counted on the server: {m}"
    );
    ex.stop().await;
}

#[tokio::test]
async fn the_demo_exports_loja_centro() {
    let running = common::start_demo().await;
    let url = format!("http://{}/metrics", running.addr);
    let mut m = String::new();
    for _ in 0..100 {
        m = common::client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if m.contains("gateway=\"evo/Loja Centro\"") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        m.contains("whatsapp_connected{gateway=\"evo/Loja Centro\""),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_discovery_skipped_instances",
            &[("gateway", "evo")]
        ),
        Some(0.0)
    );
    running.shutdown().await;
}
