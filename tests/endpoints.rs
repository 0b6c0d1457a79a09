//! The endpoint flags users script against: `--web.telemetry-path`, `--web.max-requests`, and
//! `--web.listen-address` given more than once.

mod common;

use std::time::Duration;

use common::{reply, Mock, TempDir};
use whatsapp_exporter::server::Endpoints;
use whatsapp_exporter::{ConfigSource, RunOptions};

fn config(url: &str) -> String {
    format!(
        "global:\n  interval: 1h\n  timeout: 5s\ngateways:\n  - name: slow\n    provider: plugzapi\n    url: {url}\n    instance: I\n    token: tok\n"
    )
}

#[tokio::test]
async fn telemetry_path_limits_and_several_listeners() {
    // A gateway that takes a while: a probe of it holds a scrape slot.
    let mock = Mock::start(|_| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        reply(200, r#"{"connected":true}"#)
    })
    .await;
    let dir = TempDir::new();
    let path = dir.0.join("c.yml");
    std::fs::write(&path, config(&mock.url())).unwrap();
    let running = whatsapp_exporter::start(RunOptions {
        config: ConfigSource::File(path),
        listen: vec!["127.0.0.1:0".into(), "127.0.0.1:0".into()],
        demo: false,
        web_config: None,
        polling: whatsapp_exporter::Polling {
            shard: None,
            no_background: true,
        },
        endpoints: Endpoints::new("/custom/metrics".into(), 1),
        storage: None,
    })
    .await
    .unwrap();
    assert_eq!(running.addrs.len(), 2);
    let client = common::client();
    let get = |addr: std::net::SocketAddr, path: &str| {
        let client = client.clone();
        let url = format!("http://{addr}{path}");
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for addr in &running.addrs {
        let (code, body) = get(*addr, "/custom/metrics").await;
        assert_eq!(code, 200, "served on {addr}");
        assert!(body.contains("whatsapp_exporter_build_info"));
        assert_eq!(get(*addr, "/metrics").await.0, 404, "the old path is gone");
    }
    let probe = tokio::spawn(get(running.addrs[0], "/probe?target=slow"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, body) = get(running.addrs[1], "/custom/metrics").await;
    assert_eq!(code, 503, "one scrape at a time: {body}");
    assert!(body.contains("--web.max-requests"));
    let (code, _) = probe.await.unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        get(running.addrs[1], "/custom/metrics").await.0,
        200,
        "the slot is free again"
    );
    running.shutdown().await;
}
