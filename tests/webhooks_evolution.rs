//! Evolution API webhooks, black-box: the envelopes of `tests/fixtures/webhooks/evolution/`
//! posted to `/webhooks/<gateway>?secret=S`, for a gateway of one instance and for a server whose
//! instances are discovered, against a mock Evolution server on 127.0.0.1.

mod common;

use std::sync::{Arc, Mutex};

use common::{fixture_body, hourly, reply, sample, unix_now, Exporter, Mock};
use serde_json::Value;

const SECRET: &str = "evolution-webhook-secret-0123456789";
const KEY: &str = "evo-GLOBAL-KEY-4b7e1d93";
/// What the fixtures carry that must never show.
const PRIVATE: [&str; 8] = [
    SECRET,
    "B3844804-481D-47A4-B69C-F14B4206EB56",
    "5511999999999",
    "5511988887777",
    "BAE594145F4C59B4",
    "3A5FD0A1C2B3D4E5F607",
    "Contact Name",
    "secret-unlisted-name",
];

/// The mock server: the listing's rows (name, connectionStatus) and the one instance's state.
struct Evo {
    rows: Mutex<Vec<(String, String)>>,
    single: Mutex<String>,
}

impl Evo {
    fn new(rows: &[(&str, &str)]) -> Arc<Self> {
        Arc::new(Evo {
            rows: Mutex::new(
                rows.iter()
                    .map(|(n, s)| (n.to_string(), s.to_string()))
                    .collect(),
            ),
            single: Mutex::new("open".into()),
        })
    }

    async fn mock(self: &Arc<Self>) -> Mock {
        let evo = self.clone();
        Mock::start(move |s| {
            let evo = evo.clone();
            async move {
                match s.path.as_str() {
                    "/instance/fetchInstances" => {
                        let rows: Vec<Value> = evo
                            .rows
                            .lock()
                            .unwrap()
                            .iter()
                            .map(|(n, st)| {
                                serde_json::json!({"name": n, "connectionStatus": st,
                                    "token": "B3844804-481D-47A4-B69C-F14B4206EB56",
                                    "number": "5511999999999"})
                            })
                            .collect();
                        reply(200, serde_json::to_string(&rows).unwrap())
                    }
                    p if p.starts_with("/instance/connectionState/") => {
                        let state = evo.single.lock().unwrap().clone();
                        reply(
                            200,
                            format!(r#"{{"instance":{{"instanceName":"my-instance","state":"{state}"}}}}"#),
                        )
                    }
                    _ => reply(404, r#"{"status":404,"error":"Not Found"}"#),
                }
            }
        })
        .await
    }
}

fn config(url: &str) -> String {
    hourly(&format!(
        "  - name: evo-one\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instance: my-instance\n    webhooks:\n      secret: {SECRET}\n  - name: evo\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instances: all\n    max_instances: 2\n    webhooks:\n      secret: {SECRET}\n  - name: evo-quiet\n    provider: evolution\n    url: {url}\n    token: {KEY}\n    instance: my-instance\n"
    ))
}

async fn post(ex: &Exporter, path: &str, body: &str) -> u16 {
    common::client()
        .post(ex.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn hook(ex: &Exporter, gateway: &str, body: &str) -> u16 {
    post(ex, &format!("/webhooks/{gateway}?secret={SECRET}"), body).await
}

/// A fixture's envelope for another instance, with its times set to now.
fn body_for(name: &str, instance: &str) -> String {
    let mut v: Value = serde_json::from_str(&fixture_body("evolution", name)).unwrap();
    v["instance"] = Value::from(instance);
    if v["data"].get("instance").is_some() {
        v["data"]["instance"] = Value::from(instance);
    }
    if v["data"].get("messageTimestamp").is_some() {
        v["data"]["messageTimestamp"] = Value::from(unix_now().floor());
    }
    v.to_string()
}

fn events(m: &str, gateway: &str, event: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_events_total",
        &[("gateway", gateway), ("event", event)],
    )
}

fn status(m: &str, gateway: &str, s: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_message_status_total",
        &[("gateway", gateway), ("status", s)],
    )
}

fn disconnects(m: &str, gateway: &str, code: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_disconnects_total",
        &[("gateway", gateway), ("code", code)],
    )
}

#[tokio::test]
async fn documented_envelopes_are_counted_from_zero() {
    let evo = Evo::new(&[("a", "open")]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let m = ex.metrics().await;
    for e in [
        "connection.update",
        "status.instance",
        "qrcode.updated",
        "messages.upsert",
        "messages.update",
        "send.message",
        "other",
        "unparsed",
    ] {
        assert_eq!(events(&m, "evo-one", e), Some(0.0), "{e}");
    }
    for code in ["401", "403", "428", "515", "other"] {
        assert_eq!(disconnects(&m, "evo-one", code), Some(0.0), "{code}");
    }
    assert!(
        !m.lines().any(|l| l.contains("gateway=\"evo-quiet\"")
            && (l.starts_with("whatsapp_webhook_") || l.starts_with("whatsapp_disconnects"))),
        "no webhooks, no message-flow series"
    );
    for f in [
        "connection_update_open",
        "connection_update_connecting",
        "connection_update_jwt_header",
        "connection_update_refused",
        "connection_update_close_logged_out",
        "status_instance_closed",
        "qrcode_updated",
        "qrcode_limit_reached",
        "messages_upsert_text",
        "send_message",
        "messages_update_server_ack",
        "messages_update_delivery_ack",
        "messages_update_read",
        "messages_update_played",
    ] {
        assert_eq!(
            hook(&ex, "evo-one", &fixture_body("evolution", f)).await,
            200,
            "{f}"
        );
    }
    let m = ex.metrics().await;
    assert_eq!(events(&m, "evo-one", "connection.update"), Some(5.0));
    assert_eq!(events(&m, "evo-one", "status.instance"), Some(1.0));
    assert_eq!(events(&m, "evo-one", "qrcode.updated"), Some(2.0));
    assert_eq!(events(&m, "evo-one", "messages.update"), Some(4.0));
    assert_eq!(status(&m, "evo-one", "sent"), Some(1.0));
    assert_eq!(status(&m, "evo-one", "delivered"), Some(1.0));
    assert_eq!(status(&m, "evo-one", "read"), Some(1.0));
    assert_eq!(status(&m, "evo-one", "played"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_received_total",
            &[("gateway", "evo-one")]
        ),
        Some(1.0)
    );
    assert_eq!(
        disconnects(&m, "evo-one", "401"),
        Some(1.0),
        "the close, once"
    );
    assert_eq!(disconnects(&m, "evo-one", "428"), Some(1.0), "refused");
    // send.message then its acks: the delivery time of that message.
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_delivery_seconds_count",
            &[("gateway", "evo-one")]
        ),
        Some(1.0)
    );
    // Upper-case event names, as in the webhook's events list, are the same events.
    let upper = r#"{"event":"MESSAGES_UPDATE","instance":"my-instance","data":{"keyId":"X","fromMe":true,"status":"ERROR"}}"#;
    assert_eq!(hook(&ex, "evo-one", upper).await, 200);
    let m = ex.metrics().await;
    assert_eq!(events(&m, "evo-one", "messages.update"), Some(5.0));
    assert_eq!(status(&m, "evo-one", "failed"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_message_errors_total",
            &[("gateway", "evo-one"), ("code", "ERROR")]
        ),
        Some(1.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn wrong_or_missing_secret_and_broken_bodies() {
    let evo = Evo::new(&[]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let body = fixture_body("evolution", "connection_update_open");
    let rejected = |m: &str, reason: &str| {
        sample(
            m,
            "whatsapp_webhook_rejected_total",
            &[("gateway", "evo-one"), ("reason", reason)],
        )
    };
    assert_eq!(post(&ex, "/webhooks/evo-one", &body).await, 401);
    assert_eq!(
        post(
            &ex,
            "/webhooks/evo-one?secret=wrong-but-long-0123456789",
            &body
        )
        .await,
        401
    );
    assert_eq!(hook(&ex, "evo-one", "{\"event\":").await, 400);
    assert_eq!(hook(&ex, "evo-one", "{\"no\":\"event\"}").await, 422);
    assert_eq!(
        hook(&ex, "evo-quiet", &body).await,
        404,
        "no webhooks configured"
    );
    let m = ex.metrics().await;
    assert_eq!(rejected(&m, "unauthorized"), Some(2.0));
    assert_eq!(rejected(&m, "invalid_json"), Some(1.0));
    assert_eq!(rejected(&m, "unknown_event"), Some(1.0));
    assert_eq!(events(&m, "evo-one", "connection.update"), Some(0.0));
    // A batch with entries that cannot be read keeps the good ones.
    let mixed = format!(
        "[{}, 7, {{\"event\":\"contacts.update\"}}, {{\"data\":{{}}}}]",
        fixture_body("evolution", "messages_update_read")
    );
    assert_eq!(hook(&ex, "evo-one", &mixed).await, 200);
    let m = ex.metrics().await;
    assert_eq!(events(&m, "evo-one", "messages.update"), Some(1.0));
    assert_eq!(events(&m, "evo-one", "other"), Some(1.0));
    assert_eq!(events(&m, "evo-one", "unparsed"), Some(2.0));
    ex.stop().await;
}

#[tokio::test]
async fn out_of_order_acks_and_a_late_message() {
    let evo = Evo::new(&[]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    let now = unix_now().floor();
    let update = |id: &str, s: &str| {
        format!(
            r#"{{"event":"messages.update","instance":"my-instance","data":{{"keyId":"{id}","fromMe":true,"status":"{s}"}}}}"#
        )
    };
    // READ before DELIVERY_ACK before SERVER_ACK: every status is counted once.
    for s in ["READ", "DELIVERY_ACK", "SERVER_ACK"] {
        assert_eq!(hook(&ex, "evo-one", &update("M1", s)).await, 200);
    }
    // A message sent ten minutes ago, pushed now.
    let late = format!(
        r#"{{"event":"messages.upsert","instance":"my-instance","data":{{"key":{{"fromMe":false,"id":"M2"}},"messageTimestamp":{}}}}}"#,
        now - 600.0
    );
    assert_eq!(hook(&ex, "evo-one", &late).await, 200);
    let m = ex.metrics().await;
    for s in ["read", "delivered", "sent"] {
        assert_eq!(status(&m, "evo-one", s), Some(1.0), "{s}");
    }
    let lag = |le: &str| {
        sample(
            &m,
            "whatsapp_webhook_lag_seconds_bucket",
            &[("gateway", "evo-one"), ("le", le)],
        )
    };
    assert_eq!(lag("300"), Some(0.0));
    assert_eq!(lag("1800"), Some(1.0), "ten minutes late");
    ex.stop().await;
}

#[tokio::test]
async fn a_pushed_disconnection_is_seen_at_once_and_the_next_poll_corrects_it() {
    let evo = Evo::new(&[]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    ex.poll("evo-one").await;
    let connected = |m: &str| sample(m, "whatsapp_connected", &[("gateway", "evo-one")]);
    let state = |m: &str, s: &str| {
        sample(
            m,
            "whatsapp_evolution_state",
            &[("gateway", "evo-one"), ("state", s)],
        )
    };
    assert_eq!(connected(&ex.metrics().await), Some(1.0));
    let close = fixture_body("evolution", "connection_update_close_logged_out");
    assert_eq!(hook(&ex, "evo-one", &close).await, 200);
    let m = ex.metrics().await;
    assert_eq!(connected(&m), Some(0.0), "at once, before any poll");
    assert_eq!(state(&m, "close"), Some(1.0));
    // Pushes of another instance (a global webhook) do not touch this one's connection.
    assert_eq!(
        hook(
            &ex,
            "evo-one",
            &body_for("connection_update_open", "secret-unlisted-name")
        )
        .await,
        200
    );
    assert_eq!(connected(&ex.metrics().await), Some(0.0));
    // The server says open: the poll corrects the push.
    ex.poll("evo-one").await;
    let m = ex.metrics().await;
    assert_eq!(connected(&m), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "evo-one")]
        ),
        Some(2.0)
    );
    assert_eq!(disconnects(&m, "evo-one", "401"), Some(1.0));
    ex.stop().await;
}

#[tokio::test]
async fn a_server_routes_each_push_to_its_listed_instance() {
    // max_instances 2: a and b are exported, c is not.
    let evo = Evo::new(&[("a", "open"), ("b", "open"), ("c", "open")]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    ex.poll("evo").await;
    let inst = |name: &str| format!("evo/{name}");
    let m = ex.metrics().await;
    assert_eq!(
        events(&m, &inst("a"), "messages.update"),
        Some(0.0),
        "from zero"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_disconnects_total",
            &[
                ("gateway", "evo/b"),
                ("server", "evo"),
                ("provider", "evolution"),
                ("code", "401")
            ]
        ),
        Some(0.0)
    );
    assert_eq!(
        events(&m, "evo", "unparsed"),
        Some(0.0),
        "the server's own series"
    );

    let batch = format!(
        "[{}, {}, {}, {}, {}]",
        body_for("messages_update_read", "a"),
        body_for("messages_upsert_text", "a"),
        body_for("connection_update_close_logged_out", "b"),
        body_for("messages_update_read", "c"),
        body_for("connection_update_close_logged_out", "secret-unlisted-name"),
    );
    assert_eq!(hook(&ex, "evo", &batch).await, 200);
    let m = ex.metrics().await;
    assert_eq!(status(&m, &inst("a"), "read"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_messages_received_total",
            &[("gateway", "evo/a")]
        ),
        Some(1.0)
    );
    assert_eq!(status(&m, &inst("b"), "read"), Some(0.0));
    let connected = |m: &str, g: &str| sample(m, "whatsapp_connected", &[("gateway", g)]);
    assert_eq!(connected(&m, "evo/b"), Some(0.0), "pushed, at once");
    assert_eq!(connected(&m, "evo/a"), Some(1.0));
    assert_eq!(disconnects(&m, &inst("b"), "401"), Some(1.0));
    // c is beyond max_instances, and the other name is not listed: the server's series.
    assert_eq!(status(&m, "evo", "read"), Some(1.0));
    assert_eq!(disconnects(&m, "evo", "401"), Some(1.0));
    assert!(
        !m.contains("evo/c"),
        "an instance over the cap gets no series"
    );
    assert!(!m.contains("secret-unlisted-name"));

    // The next listing corrects b, and drops a: a loses its flow series.
    evo.rows.lock().unwrap().retain(|(n, _)| n != "a");
    ex.poll("evo").await;
    let m = ex.metrics().await;
    assert_eq!(
        connected(&m, "evo/b"),
        Some(1.0),
        "the poll corrects the push"
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_connected_changes_total",
            &[("gateway", "evo/b")]
        ),
        Some(2.0)
    );
    assert!(!m.contains("gateway=\"evo/a\""), "a left the listing");
    assert_eq!(events(&m, "evo/c", "other"), Some(0.0), "c is listed now");
    ex.stop().await;
}

#[tokio::test]
async fn nothing_private_leaves() {
    let evo = Evo::new(&[("a", "open")]);
    let mock = evo.mock().await;
    let ex = Exporter::start(&config(&mock.url())).await;
    ex.poll("evo").await;
    for f in [
        "messages_upsert_text",
        "send_message",
        "status_instance_closed",
        "connection_update_open",
        "messages_update_read",
    ] {
        assert_eq!(
            hook(&ex, "evo-one", &fixture_body("evolution", f)).await,
            200
        );
        assert_eq!(
            hook(&ex, "evo", &body_for(f, "secret-unlisted-name")).await,
            200
        );
    }
    post(&ex, "/webhooks/evo?secret=wrong-but-long-0123456789", "{}").await;
    let m = ex.metrics().await;
    let (_, page) = ex.get("/").await;
    let logs = common::logs();
    for (what, text) in [("/metrics", &m), ("/", &page), ("logs", &logs)] {
        for private in PRIVATE.iter().chain(&["wrong-but-long"]) {
            assert!(!text.contains(private), "{private} in {what}");
        }
    }
    ex.stop().await;
}
