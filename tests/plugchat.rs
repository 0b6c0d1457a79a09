//! Black-box tests of the PlugChat webhook receiver, its metrics, reload, the demo simulator, and
//! the `plugchat-register` command against a mock PlugChat API on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use common::{client, logs, reply, sample, samples, Exporter, Mock, TempDir};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

const STORE_SECRET: &str = "sEcReT-store-4f9a8b7c6d5e";
const BRANCH_SECRET: &str = "sEcReT-branch-1a2b3c4d5e6f";
const API_TOKEN: &str = "tok-PLUGCHAT-1nEFbU3EktLnV7LIIzX";

const EVENTS: [&str; 7] = [
    "finishAttendance",
    "startAttendance",
    "receiveMessage",
    "sendingMessage",
    "messageDeliveryError",
    "messageStatus",
    "whenDisconnecting",
];

/// The seed's finishAttendance, Exemplo-1, as PlugChat documents it (the chat map repeats its key).
const SEED_FINISH_1: &str = r##"{
"attendance": {
"attendanceCategory": {
"color": "#DDDD",
"id": "id da categoria",
"name": "nome da categoria"
},
"attendanceNumber": 1492,
"customer": {
"name": "nome",
"phone": "554499999999"
},
"departament": "Nome do departamento",
"endTime": 1651065481865,
"finishBy": "Nome do operador",
"operatorReport ": "Relato do operador",
"ratingObservation": "Observação do cliente",
"requestTime": 1651065472000,
"startTime": 1651065471166,
"status": "FINISH"
},
"chat": {
"ID_DA_MENSAGEM": {
"broadcast": false,
"chatName": "nome",
"forwarded": false,
"fromMe": false,
"instanceId": "instance id",
"isGroup": false,
"messageId": "ID_DA_MENSAGEM",
"momment": 1651065478000,
"phone": "554499999999",
"photo": "URL_DA_FOTO",
"senderName": "nome",
"status": "RECEIVED",
"text": {
"message": "mensagem enviada"
},
"type": "ReceivedCallback",
"waitingMessage": false
},
"ID_DA_MENSAGEM": {
"fromMe": true,
"isAutomaticMessage": true,
"messageId": "ID_DA_MENSAGEM",
"momment": 1651065479380,
"phone": "554499999999",
"status": "READ",
"text": {
"message": "só um momento"
}
}
}
}"##;

/// The seed's finishAttendance, Exemplo-2: a list of categories.
const SEED_FINISH_2: &str = r##"{
"attendance": {
"attendanceCategories": [
{
"categoryId": "id_categoria",
"categoryName": "Padrão",
"color": "cor_categoria",
"itemId": "id_item_vinculado_na_categoria",
"itemName": "Nome do item"
},
{
"categoryId": "id_categoria",
"categoryName": "nome_categoria",
"color": "cor_categoria",
"itemId": "id_item_vinculado_na_categoria",
"itemName": "Nome do item"
}
],
"attendanceNumber": 1492,
"customer": {
"name": "nome",
"phone": "554499999999"
},
"departament": "Nome do departamento",
"endTime": 1651065481865,
"finishBy": "Nome do operador",
"operatorReport ": "Relato do operador",
"ratingObservation": "Observação do cliente",
"requestTime": 1651065472000,
"startTime": 1651065471166,
"status": "FINISH"
},
"chat": {
"ID_DA_MENSAGEM": {
"fromMe": true,
"isAutomaticMessage": true,
"messageId": "ID_DA_MENSAGEM",
"momment": 1651065479380,
"phone": "554499999999",
"status": "READ",
"text": {
"message": "só um momento"
}
}
}
}"##;

/// The seed's startAttendance.
const SEED_START: &str = r##"{
"attendance": {
"attendanceNumber": 1492,
"customer": {
"name": "nome",
"phone": "554499999999"
},
"departament": "Nome do departamento",
"operator": "Nome do operador",
"momment": 1651065472000,
"startTime": 1651065471166,
"status": "PROGRESS"
},
"chat": {
"ID_DA_MENSAGEM": {
"broadcast": false,
"chatName": "nome",
"forwarded": false,
"fromMe": false,
"instanceId": "instance id",
"isGroup": false,
"messageId": "ID_DA_MENSAGEM",
"momment": 1651065478000,
"phone": "554499999999",
"photo": "URL_DA_FOTO",
"senderName": "nome",
"status": "RECEIVED",
"text": {
"message": "mensagem enviada"
},
"type": "ReceivedCallback",
"waitingMessage": false
}
}
}"##;

fn config(accounts: &[(&str, &str)]) -> String {
    let mut y = String::from("webhooks:\n  plugchat:\n");
    for (account, secret) in accounts {
        y.push_str(&format!(
            "    - account: {account}\n      secret: '{secret}'\n"
        ));
    }
    y
}

async fn two_accounts() -> Exporter {
    Exporter::start(&config(&[
        ("store", STORE_SECRET),
        ("branch", BRANCH_SECRET),
    ]))
    .await
}

fn hook(account: &str, event: &str, secret: &str) -> String {
    format!("/webhooks/plugchat/{account}/{event}?secret={secret}")
}

/// POSTs `body` as application/json; returns the status.
async fn post(ex: &Exporter, account: &str, event: &str, secret: &str, body: &str) -> u16 {
    send(
        ex,
        "POST",
        &hook(account, event, secret),
        Some("application/json"),
        body,
    )
    .await
    .0
}

async fn send(
    ex: &Exporter,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &str,
) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = client().request(method.parse().unwrap(), ex.url(path));
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    let (code, headers) = (r.status().as_u16(), r.headers().clone());
    (code, r.text().await.unwrap(), headers)
}

fn store(labels: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("account", "store")];
    l.extend_from_slice(labels);
    l
}

/// PlugChat's webhooks are counted in the message-flow families every provider shares.
fn webhooks(m: &str, account: &str, event: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_events_total",
        &[
            ("gateway", account),
            ("provider", "plugchat"),
            ("event", event),
        ],
    )
}

fn rejected(m: &str, account: &str, reason: &str) -> Option<f64> {
    sample(
        m,
        "whatsapp_webhook_rejected_total",
        &[
            ("gateway", account),
            ("provider", "plugchat"),
            ("reason", reason),
        ],
    )
}

fn flow(labels: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut l = vec![("gateway", "store"), ("provider", "plugchat")];
    l.extend_from_slice(labels);
    l
}

const DEPT: (&str, &str) = ("department", "Nome do departamento");

#[tokio::test]
async fn every_event_starts_at_zero() {
    let ex = two_accounts().await;
    let m = ex.metrics().await;
    for account in ["store", "branch"] {
        for event in EVENTS {
            assert_eq!(webhooks(&m, account, event), Some(0.0), "{account} {event}");
        }
        for reason in [
            "unauthorized",
            "invalid_json",
            "too_large",
            "unknown_event",
            "unsupported_media_type",
            "method_not_allowed",
        ] {
            assert_eq!(
                rejected(&m, account, reason),
                Some(0.0),
                "{account} {reason}"
            );
        }
        let acc = [("account", account)];
        assert_eq!(
            sample(&m, "whatsapp_plugchat_attendances_open", &acc),
            Some(0.0)
        );
        assert_eq!(
            sample(&m, "whatsapp_plugchat_delivery_errors_total", &acc),
            Some(0.0)
        );
        assert_eq!(
            sample(
                &m,
                "whatsapp_plugchat_last_disconnect_timestamp_seconds",
                &acc
            ),
            None,
            "no disconnection seen yet"
        );
    }
    assert_eq!(rejected(&m, "", "unknown_gateway"), Some(0.0));
    ex.stop().await;
}

#[tokio::test]
async fn seed_finish_attendance_becomes_metrics() {
    let ex = two_accounts().await;
    assert_eq!(
        post(
            &ex,
            "store",
            "finishAttendance",
            STORE_SECRET,
            SEED_FINISH_1
        )
        .await,
        200
    );
    let m = ex.metrics().await;
    assert_eq!(webhooks(&m, "store", "finishAttendance"), Some(1.0));
    assert_eq!(webhooks(&m, "branch", "finishAttendance"), Some(0.0));
    let d = store(&[DEPT]);
    let dur = "whatsapp_plugchat_attendance_duration_seconds";
    assert_eq!(sample(&m, &format!("{dur}_count"), &d), Some(1.0));
    assert!((sample(&m, &format!("{dur}_sum"), &d).unwrap() - 10.699).abs() < 1e-9);
    assert_eq!(
        sample(&m, &format!("{dur}_bucket"), &store(&[DEPT, ("le", "30")])),
        Some(1.0)
    );
    // The seed starts 0.834 s before its request time: the wait is clamped to 0, never negative.
    let wait = "whatsapp_plugchat_attendance_wait_seconds";
    assert_eq!(sample(&m, &format!("{wait}_count"), &d), Some(1.0));
    assert_eq!(sample(&m, &format!("{wait}_sum"), &d), Some(0.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendances_total",
            &store(&[DEPT, ("category", "nome da categoria")])
        ),
        Some(1.0)
    );
    // A finish for an attendance never seen started does not make the gauge negative.
    assert_eq!(
        sample(&m, "whatsapp_plugchat_attendances_open", &store(&[])),
        Some(0.0)
    );
    // The chat transcript of an attendance is not a status change.
    assert!(samples(&m, "whatsapp_message_status_total", &flow(&[]))
        .iter()
        .all(|v| *v == 0.0));

    assert_eq!(
        post(
            &ex,
            "store",
            "finishAttendance",
            STORE_SECRET,
            SEED_FINISH_2
        )
        .await,
        200
    );
    let m = ex.metrics().await;
    for category in ["Padrão", "nome_categoria"] {
        assert_eq!(
            sample(
                &m,
                "whatsapp_plugchat_attendances_total",
                &store(&[DEPT, ("category", category)])
            ),
            Some(1.0),
            "{category}"
        );
    }
    assert_eq!(sample(&m, &format!("{dur}_count"), &d), Some(2.0));
    ex.stop().await;
}

#[tokio::test]
async fn open_attendances_follow_starts_and_finishes() {
    let ex = two_accounts().await;
    let open = |m: &str| sample(m, "whatsapp_plugchat_attendances_open", &store(&[]));
    assert_eq!(
        post(&ex, "store", "startAttendance", STORE_SECRET, SEED_START).await,
        200
    );
    assert_eq!(open(&ex.metrics().await), Some(1.0));
    // PlugChat retrying a start does not open it twice.
    assert_eq!(
        post(&ex, "store", "startAttendance", STORE_SECRET, SEED_START).await,
        200
    );
    assert_eq!(open(&ex.metrics().await), Some(1.0));
    // A start that carries its request time: the wait is observed there, and not again at finish.
    let start_1493 = r#"{"attendance":{"attendanceNumber":"1493","departament":"Suporte","requestTime":1700000000000,"startTime":1700000045000,"status":"PROGRESS"}}"#;
    assert_eq!(
        post(&ex, "store", "startAttendance", STORE_SECRET, start_1493).await,
        200
    );
    let m = ex.metrics().await;
    assert_eq!(open(&m), Some(2.0));
    let sup = store(&[("department", "Suporte")]);
    assert_eq!(
        sample(&m, "whatsapp_plugchat_attendance_wait_seconds_sum", &sup),
        Some(45.0)
    );

    assert_eq!(
        post(
            &ex,
            "store",
            "finishAttendance",
            STORE_SECRET,
            SEED_FINISH_1
        )
        .await,
        200
    );
    assert_eq!(open(&ex.metrics().await), Some(1.0));
    let unknown = r#"{"attendance":{"attendanceNumber":9999,"startTime":1700000000000,"endTime":1700000060000}}"#;
    assert_eq!(
        post(&ex, "store", "finishAttendance", STORE_SECRET, unknown).await,
        200
    );
    assert_eq!(
        post(
            &ex,
            "store",
            "finishAttendance",
            STORE_SECRET,
            SEED_FINISH_1
        )
        .await,
        200
    );
    assert_eq!(
        open(&ex.metrics().await),
        Some(1.0),
        "unknown or repeated finishes"
    );

    let finish_1493 = r#"{"attendance":{"attendanceNumber":1493,"departament":"Suporte","requestTime":1700000000000,"startTime":1700000045000,"endTime":1700003645000,"status":"FINISH"}}"#;
    assert_eq!(
        post(&ex, "store", "finishAttendance", STORE_SECRET, finish_1493).await,
        200
    );
    let m = ex.metrics().await;
    assert_eq!(open(&m), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_plugchat_attendance_wait_seconds_count", &sup),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendance_duration_seconds_sum",
            &sup
        ),
        Some(3600.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendances_total",
            &store(&[("department", "Suporte"), ("category", "")])
        ),
        Some(1.0),
        "an attendance without category"
    );
    // The other account saw none of it.
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendances_open",
            &[("account", "branch")]
        ),
        Some(0.0)
    );
    ex.stop().await;
}

#[tokio::test]
async fn message_events_become_metrics() {
    let ex = two_accounts().await;
    let p = |event: &'static str, body: &'static str| {
        let ex = &ex;
        async move {
            assert_eq!(
                post(ex, "store", event, STORE_SECRET, body).await,
                200,
                "{event} {body}"
            )
        }
    };
    // Z-API's MessageStatusCallback: one status for every id listed.
    p("messageStatus", r#"{"status":"READ","ids":["999999999999999999999","888","777"],"momment":1632234645000,"phone":"5544999999999","type":"MessageStatusCallback","instanceId":"instance.id"}"#).await;
    p(
        "messageStatus",
        r#"{"status":"PLAYED","ids":["1"],"momment":1632234645000,"type":"MessageStatusCallback"}"#,
    )
    .await;
    p(
        "messageStatus",
        r#"{"status":"DELIVERED","momment":"1632234645000"}"#,
    )
    .await;
    p("messageStatus", r#"{"status":"SOMETHING_NEW","ids":["1"]}"#).await;
    p(
        "messageStatus",
        r#"[{"status":"read_by_me","ids":["1"]},{"status":"SENT","ids":["2","3"]}]"#,
    )
    .await;
    p("messageStatus", r#"{"chat":{"ID1":{"status":"RECEIVED","messageId":"ID1"},"ID2":{"status":"RECEIVED","messageId":"ID2"}}}"#).await;
    p("messageStatus", r#"{"type":"MessageStatusCallback"}"#).await;
    p("receiveMessage", r#"{"instanceId":"i","messageId":"A1","phone":"5544999999999","fromMe":false,"momment":1632228638000,"status":"RECEIVED","chatName":"name","senderName":"name","type":"ReceivedCallback","text":{"message":"teste"}}"#).await;
    p("sendingMessage", r#"{"phone":"554499999999","zaapId":"A20DA9C0183A2D35A260F53F5D2B9244","messageId":"A20DA9C0183A2D35A260F53F5D2B9244","type":"DeliveryCallback","instanceId":"instance.id"}"#).await;
    p("messageDeliveryError", r#"{"phone":"554499999999","messageId":"A20D","error":"Phone number does not exist","zaapId":"A20D","momment":1777494091684,"type":"DeliveryCallback"}"#).await;
    p("messageDeliveryError", "").await;
    let m = ex.metrics().await;
    let status =
        |s: &'static str| sample(&m, "whatsapp_message_status_total", &flow(&[("status", s)]));
    // The statuses every provider shares: Z-API's RECEIVED is delivery to the phone, and
    // READ_BY_ME (an incoming message read here) no outgoing status.
    assert_eq!(status("read"), Some(3.0));
    assert_eq!(status("played"), Some(1.0));
    assert_eq!(status("delivered"), Some(3.0));
    assert_eq!(status("other"), Some(2.0));
    assert_eq!(status("sent"), Some(2.0));
    assert_eq!(status("failed"), Some(2.0));
    assert_eq!(status("read_by_me"), None);
    let code = |c: &'static str| sample(&m, "whatsapp_message_errors_total", &flow(&[("code", c)]));
    assert_eq!(code("invalid_number"), Some(1.0));
    assert_eq!(code("other"), Some(1.0), "an empty messageDeliveryError");
    assert_eq!(code("SHADOW_BAN"), Some(0.0));
    assert_eq!(
        sample(&m, "whatsapp_messages_received_total", &flow(&[])),
        Some(1.0)
    );
    assert_eq!(webhooks(&m, "store", "messageStatus"), Some(7.0));
    assert_eq!(webhooks(&m, "store", "receiveMessage"), Some(1.0));
    assert_eq!(webhooks(&m, "store", "sendingMessage"), Some(1.0));
    assert_eq!(webhooks(&m, "store", "messageDeliveryError"), Some(2.0));
    assert_eq!(
        sample(&m, "whatsapp_plugchat_delivery_errors_total", &store(&[])),
        Some(2.0)
    );
    assert!(!m.contains("status=\"SOMETHING_NEW\"") && !m.contains("SOMETHING_NEW"));
    ex.stop().await;
}

#[tokio::test]
async fn disconnections_set_the_timestamp() {
    let ex = two_accounts().await;
    let last = |m: &str| {
        sample(
            m,
            "whatsapp_plugchat_last_disconnect_timestamp_seconds",
            &store(&[]),
        )
    };
    // Z-API's own example carries seconds.
    let secs = r#"{"momment":1580163342,"error":"Device has been disconnected","disconnected":true,"type":"DisconnectedCallback","instanceId":"instance.id"}"#;
    assert_eq!(
        post(&ex, "store", "whenDisconnecting", STORE_SECRET, secs).await,
        200
    );
    assert_eq!(last(&ex.metrics().await), Some(1580163342.0));
    let millis = r#"{"momment":1632234645000,"disconnected":true,"type":"DisconnectedCallback"}"#;
    assert_eq!(
        post(&ex, "store", "whenDisconnecting", STORE_SECRET, millis).await,
        200
    );
    assert_eq!(last(&ex.metrics().await), Some(1632234645.0));
    // A late webhook about an older disconnection does not move the time back.
    assert_eq!(
        post(&ex, "store", "whenDisconnecting", STORE_SECRET, secs).await,
        200
    );
    assert_eq!(last(&ex.metrics().await), Some(1632234645.0));
    // Without a time, the time of receipt; one in the far future is not believed.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(
        post(
            &ex,
            "store",
            "whenDisconnecting",
            STORE_SECRET,
            r#"{"momment":99999999999999}"#
        )
        .await,
        200
    );
    let t = last(&ex.metrics().await).unwrap();
    assert!(t >= before.floor() && t < before + 60.0, "{t} {before}");
    assert_eq!(
        webhooks(&ex.metrics().await, "store", "whenDisconnecting"),
        Some(4.0)
    );
    assert_eq!(
        sample(
            &ex.metrics().await,
            "whatsapp_plugchat_last_disconnect_timestamp_seconds",
            &[("account", "branch")]
        ),
        None
    );
    ex.stop().await;
}

/// Sends a request by hand: the head, then `body` in chunks of `chunk` bytes (chunked when no
/// Content-Length is in the head); returns the status of the answer.
async fn raw(addr: SocketAddr, head: &str, body: &[u8], chunked: bool) -> u16 {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    // Read concurrently: the exporter may answer before the body is through.
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    let _ = wr.write_all(head.as_bytes()).await;
    if chunked {
        for piece in body.chunks(64 * 1024) {
            let _ = wr
                .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                .await;
            let _ = wr.write_all(piece).await;
            let _ = wr.write_all(b"\r\n").await;
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    } else {
        let _ = wr.write_all(body).await;
    }
    let answer = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer: {answer:?}"))
}

#[tokio::test]
async fn rejections_are_answered_and_counted() {
    let ex = two_accounts().await;
    let path = |event: &str, secret: &str| hook("store", event, secret);
    let ok_path = path("receiveMessage", STORE_SECRET);

    // Unknown account: 404, counted without its name.
    let (code, ..) = send(
        &ex,
        "POST",
        &hook("nosuchaccount", "receiveMessage", STORE_SECRET),
        Some("application/json"),
        "{}",
    )
    .await;
    assert_eq!(code, 404);
    // Wrong, missing, and another account's secret: 401.
    for p in [
        path("receiveMessage", "wrong-secret-0123456789"),
        "/webhooks/plugchat/store/receiveMessage".to_string(),
        "/webhooks/plugchat/store/receiveMessage?secret=".to_string(),
        path("receiveMessage", BRANCH_SECRET),
        format!("/webhooks/plugchat/store/receiveMessage?Secret={STORE_SECRET}"),
    ] {
        assert_eq!(
            send(&ex, "POST", &p, Some("application/json"), "{}")
                .await
                .0,
            401,
            "{p}"
        );
    }
    // Without the secret nothing else is looked at: a GET of an unknown event is still 401.
    assert_eq!(
        send(&ex, "GET", &path("nope", "bad-secret-0123456789"), None, "")
            .await
            .0,
        401
    );
    // With it: wrong method, unknown event, wrong type, broken JSON.
    let (code, _, headers) = send(&ex, "GET", &ok_path, None, "").await;
    assert_eq!(code, 405);
    assert_eq!(headers.get("allow").unwrap(), "POST");
    assert_eq!(
        send(&ex, "PUT", &ok_path, Some("application/json"), "{}")
            .await
            .0,
        405
    );
    assert_eq!(
        send(
            &ex,
            "POST",
            &path("receivemessage", STORE_SECRET),
            Some("application/json"),
            "{}"
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(
            &ex,
            "POST",
            &path("receiveMessage/extra", STORE_SECRET),
            Some("application/json"),
            "{}"
        )
        .await
        .0,
        404
    );
    assert_eq!(
        send(&ex, "POST", &ok_path, Some("text/plain"), "{}")
            .await
            .0,
        415
    );
    assert_eq!(
        send(
            &ex,
            "POST",
            &ok_path,
            Some("application/x-www-form-urlencoded"),
            "a=1"
        )
        .await
        .0,
        415
    );
    assert_eq!(
        send(
            &ex,
            "POST",
            &ok_path,
            Some("application/json"),
            "{\"phone\":"
        )
        .await
        .0,
        400
    );
    assert_eq!(
        send(&ex, "POST", &ok_path, Some("application/json"), "not json")
            .await
            .0,
        400
    );
    // Accepted: JSON with parameters, no Content-Type at all, a trailing slash.
    assert_eq!(
        send(
            &ex,
            "POST",
            &ok_path,
            Some("application/json; charset=utf-8"),
            "{}"
        )
        .await
        .0,
        200
    );
    assert_eq!(send(&ex, "POST", &ok_path, None, "{}").await.0, 200);
    let slash = format!("/webhooks/plugchat/store/receiveMessage/?secret={STORE_SECRET}");
    let (code, body, _) = send(&ex, "POST", &slash, Some("application/json"), "{}").await;
    assert_eq!((code, body.as_str()), (200, "{\"ok\":true}"));

    // Too large: refused on its Content-Length before any of it is read, and when chunked, once
    // more than 1 MiB has arrived.
    let head = format!("POST {ok_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", 2 << 20);
    assert_eq!(raw(ex.addr(), &head, b"", false).await, 413);
    let head = format!("POST {ok_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    let mut big = vec![b' '; 1 << 20];
    big.push(b'1');
    assert_eq!(raw(ex.addr(), &head, &big, true).await, 413);
    // Exactly 1 MiB is allowed.
    let mut max = vec![b' '; (1 << 20) - 2];
    max.splice(0..0, *b"{}");
    let head = format!("POST {ok_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", max.len());
    assert_eq!(raw(ex.addr(), &head, &max, false).await, 200);

    let m = ex.metrics().await;
    assert_eq!(rejected(&m, "", "unknown_gateway"), Some(1.0));
    assert!(!m.contains("nosuchaccount"));
    assert_eq!(rejected(&m, "store", "unauthorized"), Some(6.0));
    assert_eq!(rejected(&m, "store", "method_not_allowed"), Some(2.0));
    assert_eq!(rejected(&m, "store", "unknown_event"), Some(2.0));
    assert_eq!(rejected(&m, "store", "unsupported_media_type"), Some(2.0));
    assert_eq!(rejected(&m, "store", "invalid_json"), Some(2.0));
    assert_eq!(rejected(&m, "store", "too_large"), Some(2.0));
    assert_eq!(webhooks(&m, "store", "receiveMessage"), Some(4.0));
    assert!(samples(
        &m,
        "whatsapp_webhook_rejected_total",
        &[("gateway", "branch"), ("provider", "plugchat")]
    )
    .iter()
    .all(|v| *v == 0.0));
    // The status page tells the same.
    let (_, page) = ex.get("/").await;
    assert!(page.contains("<td data-label=\"Account\">store</td><td data-label=\"Accepted\">4</td><td data-label=\"Rejected\">16</td>"), "{page}");
    ex.stop().await;
}

#[tokio::test]
async fn a_burst_is_counted_exactly() {
    const TOTAL: usize = 5_000;
    let ex = two_accounts().await;
    let c = client();
    let limit = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..TOTAL {
        let permit = limit.clone().acquire_owned().await.unwrap();
        let (account, secret) = if i % 5 == 0 {
            ("branch", BRANCH_SECRET)
        } else {
            ("store", STORE_SECRET)
        };
        // Attendance numbers pair each start with one finish.
        let (event, body) = match i % 4 {
            0 => (
                "messageStatus",
                r#"{"status":"READ","ids":["a","b"]}"#.to_string(),
            ),
            1 => (
                "receiveMessage",
                r#"{"type":"ReceivedCallback","phone":"5500000000000"}"#.to_string(),
            ),
            2 => (
                "startAttendance",
                format!(
                    r#"{{"attendance":{{"attendanceNumber":{},"requestTime":1700000000000,"startTime":1700000010000}}}}"#,
                    i / 4
                ),
            ),
            _ => (
                "finishAttendance",
                format!(
                    r#"{{"attendance":{{"attendanceNumber":{},"startTime":1700000010000,"endTime":1700000070000}}}}"#,
                    i / 4 + 1_000_000
                ),
            ),
        };
        let url = ex.url(&hook(account, event, secret));
        let c = c.clone();
        tasks.spawn(async move {
            let r = c
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            drop(permit);
            r.status().as_u16()
        });
    }
    let mut codes = Vec::with_capacity(TOTAL);
    while let Some(code) = tasks.join_next().await {
        codes.push(code.unwrap());
    }
    assert!(codes.iter().all(|c| *c == 200));
    let m = ex.metrics().await;
    let sum = |account| -> f64 {
        samples(
            &m,
            "whatsapp_webhook_events_total",
            &[("gateway", account), ("provider", "plugchat")],
        )
        .iter()
        .sum()
    };
    assert_eq!(sum("store") + sum("branch"), TOTAL as f64);
    assert_eq!(sum("branch"), (TOTAL / 5) as f64);
    // i % 4 == 0 and i % 5 == 0 <=> i % 20 == 0.
    assert_eq!(
        webhooks(&m, "branch", "messageStatus"),
        Some((TOTAL / 20) as f64)
    );
    assert_eq!(
        webhooks(&m, "store", "messageStatus"),
        Some((TOTAL / 4 - TOTAL / 20) as f64)
    );
    let read: f64 = samples(
        &m,
        "whatsapp_message_status_total",
        &[("provider", "plugchat"), ("status", "read")],
    )
    .iter()
    .sum();
    assert_eq!(read, (TOTAL / 4 * 2) as f64);
    // Starts and finishes carry different numbers here, so every start stays open.
    let open: f64 = samples(&m, "whatsapp_plugchat_attendances_open", &[])
        .iter()
        .sum();
    assert_eq!(open, (TOTAL / 4) as f64);
    let durations: f64 = samples(
        &m,
        "whatsapp_plugchat_attendance_duration_seconds_count",
        &[],
    )
    .iter()
    .sum();
    assert_eq!(durations, (TOTAL / 4) as f64);
    let (_, page) = ex.get("/").await;
    assert!(page.contains(&format!(
        "<td data-label=\"Account\">branch</td><td data-label=\"Accepted\">{}</td>",
        TOTAL / 5
    )));
    ex.stop().await;
}

#[tokio::test]
async fn department_and_category_labels_are_bounded() {
    let ex = two_accounts().await;
    for i in 0..60 {
        let body = format!(
            r#"{{"attendance":{{"attendanceNumber":{i},"departament":"  Depto {i:02}\n","attendanceCategory":{{"name":"Cat {i:02}"}},"startTime":1700000000000,"endTime":1700000100000}}}}"#
        );
        assert_eq!(
            post(&ex, "store", "finishAttendance", STORE_SECRET, &body).await,
            200
        );
    }
    let long = "x".repeat(300);
    let body = format!(
        r#"{{"attendance":{{"departament":"{long}","startTime":1700000000000,"endTime":1700000100000}}}}"#
    );
    assert_eq!(
        post(&ex, "branch", "finishAttendance", BRANCH_SECRET, &body).await,
        200
    );
    let m = ex.metrics().await;
    let depts: std::collections::HashSet<String> = m
        .lines()
        .filter(|l| {
            l.starts_with("whatsapp_plugchat_attendance_duration_seconds_count{account=\"store\"")
        })
        .filter_map(|l| {
            l.split("department=\"")
                .nth(1)?
                .split('"')
                .next()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(depts.len(), 51, "{depts:?}");
    assert!(depts.contains("Depto 00") && depts.contains("Depto 49") && depts.contains("other"));
    assert!(!depts.contains("Depto 50"));
    let other = store(&[("department", "other")]);
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendance_duration_seconds_count",
            &other
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendances_total",
            &store(&[("department", "other"), ("category", "other")])
        ),
        Some(10.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendance_duration_seconds_count",
            &[("account", "branch"), ("department", &"x".repeat(64))]
        ),
        Some(1.0)
    );
    assert!(!m.contains(&"x".repeat(65)));
    ex.stop().await;
}

#[tokio::test]
async fn private_data_stays_out_of_metrics_pages_and_logs() {
    let ex = two_accounts().await;
    const PRIVATE: [&str; 9] = [
        "5511987650001",
        "Fulana Privada",
        "Operadora Sigilosa",
        "texto-confidencial-7781",
        "MSGID-PRIVATE-5521",
        "relato-interno-3391",
        "observacao-cliente-8812",
        "guess-WRONG-secret-9911",
        "https://photo.example.com/private.jpg",
    ];
    let start = r#"{"attendance":{"attendanceNumber":77,"customer":{"name":"Fulana Privada","phone":"5511987650001"},"departament":"Vendas","operator":"Operadora Sigilosa","startTime":1700000000000,"status":"PROGRESS"},
        "chat":{"MSGID-PRIVATE-5521":{"messageId":"MSGID-PRIVATE-5521","phone":"5511987650001","senderName":"Fulana Privada","photo":"https://photo.example.com/private.jpg","status":"RECEIVED","text":{"message":"texto-confidencial-7781"},"type":"ReceivedCallback"}}}"#;
    let finish = r#"{"attendance":{"attendanceNumber":77,"customer":{"name":"Fulana Privada","phone":"5511987650001"},"departament":"Vendas","finishBy":"Operadora Sigilosa","operatorReport ":"relato-interno-3391","ratingObservation":"observacao-cliente-8812","requestTime":1699999990000,"startTime":1700000000000,"endTime":1700000300000,"status":"FINISH"}}"#;
    let message = r#"{"messageId":"MSGID-PRIVATE-5521","phone":"5511987650001","senderName":"Fulana Privada","chatName":"Fulana Privada","status":"READ","ids":["MSGID-PRIVATE-5521"],"text":{"message":"texto-confidencial-7781"},"error":"texto-confidencial-7781","type":"ReceivedCallback"}"#;
    assert_eq!(
        post(&ex, "store", "startAttendance", STORE_SECRET, start).await,
        200
    );
    assert_eq!(
        post(&ex, "store", "finishAttendance", STORE_SECRET, finish).await,
        200
    );
    for event in [
        "receiveMessage",
        "sendingMessage",
        "messageStatus",
        "messageDeliveryError",
        "whenDisconnecting",
    ] {
        assert_eq!(post(&ex, "store", event, STORE_SECRET, message).await, 200);
    }
    // Refusals must not tell the payload, the secret tried, or the URL either.
    let broken = r#"{"phone":"5511987650001","text":"texto-confidencial-7781""#;
    assert_eq!(
        post(&ex, "store", "receiveMessage", STORE_SECRET, broken).await,
        400
    );
    assert_eq!(
        post(
            &ex,
            "store",
            "receiveMessage",
            "guess-WRONG-secret-9911",
            message
        )
        .await,
        401
    );
    assert_eq!(
        post(&ex, "store", "Fulana Privada", STORE_SECRET, message).await,
        404
    );
    assert_eq!(
        post(
            &ex,
            "5511987650001",
            "receiveMessage",
            "guess-WRONG-secret-9911",
            message
        )
        .await,
        404
    );
    assert_eq!(
        send(
            &ex,
            "POST",
            &hook("store", "receiveMessage", STORE_SECRET),
            Some("text/texto-confidencial-7781"),
            message
        )
        .await
        .0,
        415
    );

    let m = ex.metrics().await;
    let (_, page) = ex.get("/").await;
    let (_, probe) = ex.get("/probe?target=store").await;
    let logs = logs();
    assert!(
        logs.contains("PlugChat webhook"),
        "the receiver logs: {logs}"
    );
    for text in [&m, &page, &probe, &logs] {
        for secret in PRIVATE
            .iter()
            .chain(&[STORE_SECRET, BRANCH_SECRET, API_TOKEN])
        {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(
            !text.contains("secret="),
            "a URL with its query leaked:\n{text}"
        );
        assert!(!text.contains("5511987650001"));
    }
    ex.stop().await;
}

#[tokio::test]
async fn reload_removes_accounts_and_keeps_the_others() {
    let ex = two_accounts().await;
    assert_eq!(
        post(
            &ex,
            "store",
            "finishAttendance",
            STORE_SECRET,
            SEED_FINISH_1
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &ex,
            "store",
            "startAttendance",
            STORE_SECRET,
            r#"{"attendance":{"attendanceNumber":5}}"#
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &ex,
            "branch",
            "finishAttendance",
            BRANCH_SECRET,
            SEED_FINISH_2
        )
        .await,
        200
    );
    assert_eq!(
        post(
            &ex,
            "branch",
            "messageStatus",
            BRANCH_SECRET,
            r#"{"status":"READ"}"#
        )
        .await,
        200
    );
    assert_eq!(
        post(&ex, "branch", "whenDisconnecting", BRANCH_SECRET, "{}").await,
        200
    );
    assert_eq!(
        post(
            &ex,
            "branch",
            "receiveMessage",
            "wrong-secret-0123456789",
            "{}"
        )
        .await,
        401
    );
    assert!(ex.metrics().await.contains("account=\"branch\""));

    // branch goes; store stays with a rotated secret.
    const ROTATED: &str = "sEcReT-store-rotated-77aa";
    ex.write_config(&config(&[("store", ROTATED)]));
    let (code, ..) = send(&ex, "POST", "/-/reload", None, "").await;
    assert_eq!(code, 200);
    let m = ex.metrics().await;
    assert!(
        !m.contains("account=\"branch\""),
        "branch series remain:\n{m}"
    );
    assert_eq!(webhooks(&m, "store", "finishAttendance"), Some(1.0));
    assert_eq!(webhooks(&m, "store", "startAttendance"), Some(1.0));
    assert_eq!(
        sample(&m, "whatsapp_plugchat_attendances_open", &store(&[])),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendance_duration_seconds_count",
            &store(&[DEPT])
        ),
        Some(1.0)
    );
    assert_eq!(
        post(&ex, "store", "receiveMessage", STORE_SECRET, "{}").await,
        401,
        "the old secret"
    );
    assert_eq!(
        post(&ex, "store", "receiveMessage", ROTATED, "{}").await,
        200
    );
    assert_eq!(
        post(&ex, "branch", "receiveMessage", BRANCH_SECRET, "{}").await,
        404
    );
    let m = ex.metrics().await;
    assert_eq!(rejected(&m, "store", "unauthorized"), Some(1.0));
    assert_eq!(rejected(&m, "", "unknown_gateway"), Some(1.0));
    assert!(!m.contains("account=\"branch\"") && !m.contains("gateway=\"branch\""));

    // Back again: from zero.
    ex.write_config(&config(&[("store", ROTATED), ("branch", BRANCH_SECRET)]));
    assert_eq!(send(&ex, "POST", "/-/reload", None, "").await.0, 200);
    let m = ex.metrics().await;
    assert_eq!(webhooks(&m, "branch", "finishAttendance"), Some(0.0));
    assert_eq!(webhooks(&m, "store", "receiveMessage"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            "whatsapp_plugchat_attendances_total",
            &[("account", "branch")]
        ),
        None
    );

    // A refused reload keeps everything.
    ex.write_config("webhooks:\n  plugchat:\n    - account: store\n");
    assert_eq!(send(&ex, "POST", "/-/reload", None, "").await.0, 500);
    assert_eq!(
        post(&ex, "store", "receiveMessage", ROTATED, "{}").await,
        200
    );

    // No account left: the receiver is off and exports nothing.
    ex.write_config("");
    assert_eq!(send(&ex, "POST", "/-/reload", None, "").await.0, 200);
    assert_eq!(
        post(&ex, "store", "receiveMessage", ROTATED, "{}").await,
        404
    );
    assert!(!ex.metrics().await.contains("whatsapp_plugchat"));
    ex.stop().await;
}

#[tokio::test]
async fn demo_posts_all_seven_events() {
    let running = common::start_demo().await;
    let url = format!("http://{}/metrics", running.addr);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let all = EVENTS
            .iter()
            .all(|e| webhooks(&m, "demo", e).is_some_and(|v| v >= 1.0));
        if all {
            assert!(sample(
                &m,
                "whatsapp_plugchat_attendance_duration_seconds_count",
                &[("account", "demo")]
            )
            .is_some());
            assert!(sample(
                &m,
                "whatsapp_plugchat_last_disconnect_timestamp_seconds",
                &[("account", "demo")]
            )
            .is_some());
            assert!(!m.contains("Cliente Demo") && !m.contains("demo-plugchat-secret"));
            let rejected: f64 = samples(
                &m,
                "whatsapp_webhook_rejected_total",
                &[("gateway", "demo"), ("provider", "plugchat")],
            )
            .iter()
            .sum();
            assert_eq!(rejected, 0.0, "{m}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every event within 20 s:\n{m}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    running.shutdown().await;
}

// ---- plugchat-register, run as the binary against a mock PlugChat ----

struct Registration {
    dir: TempDir,
    config: std::path::PathBuf,
}

impl Registration {
    fn new(yaml: &str) -> Self {
        let dir = TempDir::new();
        let config = dir.0.join("whatsapp_exporter.yml");
        std::fs::write(&config, yaml).unwrap();
        Registration { dir, config }
    }

    /// Runs `whatsapp_exporter --config.file F plugchat-register ARGS` with `token` in the environment.
    async fn run(&self, token: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_whatsapp_exporter"));
        cmd.arg("--config.file")
            .arg(&self.config)
            .arg("plugchat-register")
            .args(args);
        cmd.env_remove("PLUGCHAT_API_TOKEN");
        if let Some(t) = token {
            cmd.env("PLUGCHAT_API_TOKEN", t);
        }
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn no_secrets(o: &Output, secrets: &[&str]) {
    let (out, err) = text(o);
    for s in secrets {
        assert!(
            !out.contains(s) && !err.contains(s),
            "{s} printed:\n{out}\n{err}"
        );
    }
}

#[tokio::test]
async fn register_puts_all_seven_urls_with_the_raw_token() {
    let mock = Mock::start(|_| async { reply(200, r#"{"value":true}"#) }).await;
    let reg = Registration::new(&config(&[
        ("store", STORE_SECRET),
        ("branch", BRANCH_SECRET),
    ]));
    let out = reg
        .run(
            Some(API_TOKEN),
            &[
                "--account",
                "store",
                "--public-url",
                "https://exporter.example.com/",
                "--plugchat-url",
                &mock.url(),
                "--allow-insecure-url",
            ],
        )
        .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/api/integrations/update-webhooks");
    assert_eq!(
        req.headers.get("authorization").unwrap(),
        API_TOKEN,
        "the raw token, no scheme"
    );
    assert!(req
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 7);
    for event in EVENTS {
        assert_eq!(
            body[event],
            format!("https://exporter.example.com/webhooks/plugchat/store/{event}?secret={STORE_SECRET}"),
        );
        assert!(
            stdout.contains(&format!(
                "https://exporter.example.com/webhooks/plugchat/store/{event}?secret=****"
            )),
            "{stdout}"
        );
    }
    assert!(stdout.contains("accepted"), "{stdout}");
    no_secrets(&out, &[API_TOKEN, STORE_SECRET, BRANCH_SECRET]);

    // The token from a file works the same; one account needs no --account.
    let token_file = reg.dir.0.join("token");
    std::fs::write(&token_file, format!("{API_TOKEN}\n")).unwrap();
    let one = Registration::new(&config(&[("branch", BRANCH_SECRET)]));
    let out = one
        .run(
            None,
            &[
                "--public-url",
                "https://exporter.example.com",
                "--token-file",
                token_file.to_str().unwrap(),
                "--plugchat-url",
                &mock.url(),
                "--allow-insecure-url",
            ],
        )
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let req = &mock.seen()[1];
    assert_eq!(req.headers.get("authorization").unwrap(), API_TOKEN);
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["whenDisconnecting"], format!("https://exporter.example.com/webhooks/plugchat/branch/whenDisconnecting?secret={BRANCH_SECRET}"));
    no_secrets(&out, &[API_TOKEN, BRANCH_SECRET]);
}

#[tokio::test]
async fn register_refuses_what_plugchat_would_refuse_or_what_is_unsafe() {
    let mock = Mock::start(|_| async { reply(200, "{}") }).await;
    let reg = Registration::new(&config(&[("store", STORE_SECRET)]));
    let cases: [(&[&str], Option<&str>, &str); 6] = [
        (
            &["--public-url", "http://exporter.example.com"],
            Some(API_TOKEN),
            "only accepts HTTPS",
        ),
        (
            &[
                "--public-url",
                "http://exporter.example.com",
                "--allow-insecure-url",
            ],
            Some(API_TOKEN),
            "only allows http:// for 127.0.0.1",
        ),
        (
            &["--public-url", "http://127.0.0.1:10070"],
            Some(API_TOKEN),
            "only accepts HTTPS",
        ),
        (
            &[
                "--public-url",
                "https://exporter.example.com",
                "--allow-insecure-url",
            ],
            None,
            "PLUGCHAT_API_TOKEN",
        ),
        (
            &[
                "--public-url",
                "https://exporter.example.com",
                "--account",
                "nope",
            ],
            Some(API_TOKEN),
            "no webhooks.plugchat account \"nope\"",
        ),
        (
            &[
                "--public-url",
                "https://exporter.example.com?secret=x",
                "--allow-insecure-url",
            ],
            Some(API_TOKEN),
            "without ?query",
        ),
    ];
    for (args, token, says) in cases {
        let mut all = args.to_vec();
        let url = mock.url();
        all.extend(["--plugchat-url", &url]);
        let out = reg.run(token, &all).await;
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        no_secrets(&out, &[API_TOKEN, STORE_SECRET]);
    }
    // The API itself must be HTTPS too: the token travels to it.
    let out = reg
        .run(
            Some(API_TOKEN),
            &[
                "--public-url",
                "https://exporter.example.com",
                "--plugchat-url",
                &mock.url(),
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out)
            .1
            .contains("--plugchat-url: the API token is only sent over HTTPS"),
        "{:?}",
        text(&out)
    );
    // The token is never a command-line value.
    let out = reg
        .run(
            None,
            &[
                "--public-url",
                "https://exporter.example.com",
                "--token",
                API_TOKEN,
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn register_explains_plugchat_refusals() {
    let mock = Mock::start(|_| async {
        reply(
            401,
            format!(r#"{{"error":"invalid token","token":"{API_TOKEN}"}}"#),
        )
    })
    .await;
    let reg = Registration::new(&config(&[("store", STORE_SECRET)]));
    let args = [
        "--public-url",
        "https://exporter.example.com",
        "--plugchat-url",
        &mock.url(),
        "--allow-insecure-url",
    ];
    let out = reg.run(Some(API_TOKEN), &args).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("Authorization") && stderr.contains("token"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid token"),
        "PlugChat's own words are shown: {stderr}"
    );
    no_secrets(&out, &[API_TOKEN, STORE_SECRET]);

    for (code, says) in [
        (405u16, "PUT"),
        (415u16, "application/json"),
        (503u16, "HTTP 503"),
    ] {
        let mock = Mock::start(move |_| async move { reply(code, "") }).await;
        let args = [
            "--public-url",
            "https://exporter.example.com",
            "--plugchat-url",
            &mock.url(),
            "--allow-insecure-url",
        ];
        let out = reg.run(Some(API_TOKEN), &args).await;
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{code}");
        assert!(
            stderr.contains(&format!("HTTP {code}")) && stderr.contains(says),
            "{code}: {stderr}"
        );
    }
    // Nobody listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dead = format!("http://127.0.0.1:{port}");
    let out = reg
        .run(
            Some(API_TOKEN),
            &[
                "--public-url",
                "https://exporter.example.com",
                "--plugchat-url",
                &dead,
                "--allow-insecure-url",
            ],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot call PlugChat"),
        "{:?}",
        text(&out)
    );
}

#[tokio::test]
async fn registered_urls_reach_the_exporter() {
    // A secret that needs encoding in a URL.
    const ODD: &str = "p+s/w=rd&x y%z?#0123456789";
    let yaml = config(&[("store", ODD)]);
    let ex = Exporter::start(&yaml).await;
    let mock = Mock::start(|_| async { reply(200, "{}") }).await;
    let reg = Registration::new(&yaml);
    let public = format!("http://{}", ex.addr());
    let out = reg
        .run(
            Some(API_TOKEN),
            &[
                "--public-url",
                &public,
                "--plugchat-url",
                &mock.url(),
                "--allow-insecure-url",
            ],
        )
        .await;
    assert!(out.status.success(), "{:?}", text(&out));
    let body: Value = serde_json::from_slice(&mock.seen()[0].body).unwrap();
    for event in EVENTS {
        let url = body[event].as_str().unwrap();
        let r = client()
            .post(url)
            .header("content-type", "application/json")
            .body(SEED_FINISH_1)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{event}");
    }
    let m = ex.metrics().await;
    for event in EVENTS {
        assert_eq!(webhooks(&m, "store", event), Some(1.0), "{event}");
    }
    ex.stop().await;
}
