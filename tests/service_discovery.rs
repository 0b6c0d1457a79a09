//! `GET /sd`: every gateway this replica owns, discovered instances included, as Prometheus'
//! `http_sd_configs` probe targets; and `/probe` answering each of those targets, each series in
//! exactly one of them.

mod common;

use std::collections::BTreeSet;

use common::{fixture, reply, Exporter, Mock};
use serde_json::{json, Value};
use whatsapp_exporter::shard::{owner, Shard};
use whatsapp_exporter::Polling;

/// The Evolution server's global key and what its listing's rows carry: none may show.
const KEY: &str = "evo-GLOBAL-KEY-sd-5c1f";
const ROW_TOKEN: &str = "B3844804-481D-47A4-B69C-F14B4206EB56";
const ZAPI_TOKEN: &str = "zapi-token-sd-7d2e";

/// A Z-API status endpoint and an Evolution API server listing two instances, on one mock.
async fn gateways_mock() -> Mock {
    let (_, body) = fixture("evolution/fetch_instances.json", "/instance/fetchInstances");
    let template: Vec<Value> = serde_json::from_str(&body).unwrap();
    let rows: Vec<Value> = ["alpha", "beta"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let mut row = template[0].clone();
            row["id"] = Value::from(format!("cm2inst{i:018}"));
            row["name"] = Value::from(*name);
            row["connectionStatus"] = Value::from("open");
            row
        })
        .collect();
    let listing = Value::Array(rows).to_string();
    Mock::start(move |s| {
        let listing = listing.clone();
        async move {
            if s.path == "/instance/fetchInstances" {
                reply(200, listing)
            } else {
                reply(
                    200,
                    r#"{"connected":true,"session":true,"error":"","smartphoneConnected":true}"#,
                )
            }
        }
    })
    .await
}

/// Polled once an hour: the test polls each gateway itself; a scheduled poll during the test
/// changes values, never which series there are.
fn config(url: &str) -> String {
    format!(
        "global:\n  interval: 1h\n  timeout: 5s\ngateways:\n{}",
        format_args!(
        "  - name: sales\n    provider: zapi\n    url: {url}\n    instance: I\n    token: {ZAPI_TOKEN}\n\
         \x20 - name: brand\n    provider: plugzapi\n    url: {url}\n    instance: I\n    token: {ZAPI_TOKEN}\n\
         \x20 - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: all\n"
        )
    )
}

async fn sd(ex: &Exporter) -> Value {
    let r = common::client().get(ex.url("/sd")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.text().await.unwrap();
    for private in [KEY, ROW_TOKEN, ZAPI_TOKEN, "127.0.0.1"] {
        assert!(!body.contains(private), "{private} in /sd: {body}");
    }
    serde_json::from_str(&body).unwrap()
}

/// The probe URL Prometheus builds for a target: `?target=` and every `__param_` label.
fn probe_path(target: &str, labels: &Value) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("target", target);
    for (k, v) in labels.as_object().unwrap() {
        if let Some(p) = k.strip_prefix("__param_") {
            q.append_pair(p, v.as_str().unwrap());
        }
    }
    format!("/probe?{}", q.finish())
}

/// `name{labels}` of every sample that carries a gateway label.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains("gateway=\""))
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

#[tokio::test]
async fn every_gateway_and_discovered_instance_is_a_target_probed_once() {
    let mock = gateways_mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    for g in ["sales", "brand", "evo"] {
        ex.poll(g).await;
    }
    let groups = sd(&ex).await;
    assert_eq!(
        groups,
        json!([
            {"targets": ["evo"], "labels": {"provider": "evolution", "__param_instances": "false"}},
            {"targets": ["evo/alpha", "evo/beta"], "labels": {"provider": "evolution", "server": "evo"}},
            {"targets": ["brand"], "labels": {"provider": "plugzapi"}},
            {"targets": ["sales"], "labels": {"provider": "zapi"}},
        ])
    );

    // Prometheus' probe job over these targets holds every gateway series of /metrics, once.
    let mut probed = Vec::new();
    for g in groups.as_array().unwrap() {
        for t in g["targets"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            let (code, body) = ex.get(&probe_path(t, &g["labels"])).await;
            assert_eq!(code, 200, "{t}: {body}");
            let mine = series(&body);
            assert!(!mine.is_empty(), "{t}");
            assert!(
                mine.iter().all(|s| s.contains(&format!("gateway=\"{t}\""))),
                "{t} answers its own series alone:\n{body}"
            );
            probed.extend(mine);
        }
    }
    let all: BTreeSet<String> = series(&ex.metrics().await).into_iter().collect();
    assert_eq!(probed.len(), all.len(), "no series twice: {probed:#?}");
    assert_eq!(probed.into_iter().collect::<BTreeSet<_>>(), all);

    // An instance's probe tells its connection; one the listing does not have is unknown.
    let (_, alpha) = ex.get("/probe?target=evo/alpha").await;
    assert!(
        alpha.contains(
            "whatsapp_connected{gateway=\"evo/alpha\",provider=\"evolution\",server=\"evo\"} 1"
        ),
        "{alpha}"
    );
    assert_eq!(ex.get("/probe?target=evo/gamma").await.0, 404);
    assert_eq!(
        ex.get("/probe?target=sales/alpha").await.0,
        404,
        "sales is no server"
    );
    assert_eq!(ex.get("/probe?target=evo/").await.0, 404);
    // Without the parameter a server's probe still carries its instances, as before.
    let (_, evo) = ex.get("/probe?target=evo").await;
    assert!(evo.contains("gateway=\"evo/beta\""));
    ex.stop().await;
}

#[tokio::test]
async fn a_replica_lists_only_the_gateways_it_owns() {
    let mock = gateways_mock().await;
    let mut yaml = String::from("global:\n  interval: 1h\n  timeout: 5s\ngateways:\n");
    let names: Vec<String> = (0..30).map(|i| format!("gw-{i}")).collect();
    for n in &names {
        yaml.push_str(&format!(
            "  - name: {n}\n    provider: zapi\n    url: {}\n    instance: I\n    token: {ZAPI_TOKEN}\n",
            mock.url()
        ));
    }
    let mut seen = BTreeSet::new();
    for index in 0..3 {
        let polling = Polling {
            shard: Some(Shard { index, count: 3 }),
            no_background: true,
        };
        let ex = Exporter::try_start_full(&yaml, None, polling)
            .await
            .unwrap();
        let groups = sd(&ex).await;
        let targets: BTreeSet<String> = groups[0]["targets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect();
        assert_eq!(groups.as_array().unwrap().len(), 1);
        let mine: BTreeSet<String> = names
            .iter()
            .filter(|n| owner(n, 3) == index)
            .cloned()
            .collect();
        assert_eq!(targets, mine, "shard {index}/3");
        seen.extend(targets);
        ex.stop().await;
    }
    assert_eq!(seen.len(), names.len(), "every gateway on one replica");
}

#[tokio::test]
async fn sd_is_read_only_and_behind_basic_auth() {
    let hash = bcrypt::hash("pa55-W0rd-sd", 4).unwrap();
    let web = format!("basic_auth_users:\n  prometheus: {hash}\n");
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let c = common::client();
    let r = c.get(ex.url("/sd")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = c
        .get(ex.url("/sd"))
        .basic_auth("prometheus", Some("pa55-W0rd-sd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
    let r = c
        .post(ex.url("/sd"))
        .basic_auth("prometheus", Some("pa55-W0rd-sd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    ex.stop().await;
}
