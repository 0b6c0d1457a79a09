//! `/probe` as Prometheus drives it: within the scrape's own timeout, and with `debug=true` for a
//! person who wants to know how the poll went.

mod common;

use std::time::Duration;

use common::{reply, sample, Exporter, Mock};

const TOKEN: &str = "probe-secret-token-771";

fn config(url: &str) -> String {
    format!(
        "global:\n  interval: 1h\n  timeout: 8s\ngateways:\n  - name: gw\n    provider: zapi\n    url: {url}\n    instance: I1\n    token: {TOKEN}\n    client_token: client-secret-992\n"
    )
}

#[tokio::test]
async fn a_slow_gateway_reads_down_within_the_scrape_timeout() {
    let mock = Mock::start(|_| async {
        tokio::time::sleep(Duration::from_secs(4)).await;
        reply(200, r#"{"connected":true}"#)
    })
    .await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let resp = common::client()
        .get(ex.url("/probe?target=gw"))
        .header("X-Prometheus-Scrape-Timeout-Seconds", "1.5")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "a slow gateway is a down gateway, not a failed scrape"
    );
    let body = resp.text().await.unwrap();
    let gw = [("gateway", "gw"), ("provider", "zapi")];
    assert_eq!(sample(&body, "whatsapp_up", &gw), Some(0.0), "{body}");
    let timeouts = [
        ("gateway", "gw"),
        ("provider", "zapi"),
        ("reason", "timeout"),
    ];
    assert_eq!(
        sample(&body, "whatsapp_poll_failures_total", &timeouts),
        Some(1.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn debug_tells_the_poll_with_secrets_masked() {
    let mock = Mock::start(|s| async move {
        if s.path.contains("/I1/") {
            reply(
                200,
                r#"{"connected":true,"session":true,"smartphoneConnected":false}"#,
            )
        } else {
            reply(401, r#"{"error":"Unauthorized"}"#)
        }
    })
    .await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let (code, body) = ex.get("/probe?target=gw&debug=true").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("GET http://")
            && body.contains("/instances/I1/token/<redacted>/status -> HTTP 200"),
        "{body}"
    );
    assert!(body.contains("succeeded"), "{body}");
    assert!(
        body.contains("Metrics that would have been returned:"),
        "{body}"
    );
    assert!(
        body.contains("whatsapp_up{gateway=\"gw\",provider=\"zapi\"} 1"),
        "{body}"
    );
    assert!(
        !body.contains(TOKEN) && !body.contains("client-secret-992"),
        "{body}"
    );

    // The failing case tells the reason, still with nothing secret.
    ex.write_config(&config(&mock.url()).replace("I1", "I2"));
    let (code, _) = common::client()
        .post(ex.url("/-/reload"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(code, 200);
    let (_, body) = ex.get("/probe?target=gw&debug=true").await;
    assert!(
        body.contains("HTTP 401") && body.contains("reason unauthorized"),
        "{body}"
    );
    assert!(!body.contains(TOKEN), "{body}");
    ex.stop().await;
}
