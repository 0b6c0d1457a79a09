//! The demo's delivery canaries: the simulated Z-API gateways answer
//! `POST /instances/{id}/token/{token}/send-text` as Z-API does (`{zaapId, messageId, id}`,
//! `providers::zapi::send`), then relay the message: the sender's `MessageStatusCallback`
//! statuses (SENT, RECEIVED, READ of the answered id) go to its webhook URL, and a
//! `ReceivedCallback` with the text it was given (the canary's nonce is in it) to the receiving
//! gateway's, through the demo's push loop (`pushes.rs`).
//!
//! - accepted in 100–500 ms, delivered in 1–5 s, arrived in 1–6 s, read a few seconds later;
//! - one run in ten is lost: SENT, and nothing more;
//! - from the 20th to the 30th minute of every hour since the start, a slow spell: delivered and
//!   arrived in 20–60 s.
//!
//! After a run the canary's cleanup calls, `read-message` on the receiving instance and the
//! delete on the sending one, are answered as Z-API answers them (204).
//!
//! The numbers are fake: `5500000000001` is `support`'s, `5500000000002` is `sales`'s; a text to
//! any other number is sent and never delivered.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::{json, Value};

use super::push::{now_ms, Push, Target};
use super::{DEMO_CLIENT_TOKEN, DEMO_TOKEN};
use crate::sync::lock;

/// The demo gateways that relay: exporter gateway name, Z-API instance, fake number.
pub const NUMBERS: [(&str, &str, &str); 2] = [
    ("sales", "DEMO-SALES", "5500000000002"),
    ("support", "DEMO-SUPPORT", "5500000000001"),
];

/// Relayed pushes waiting for the push loop, by simulator address; bounded.
const MAX_WAITING: usize = 1000;

#[derive(Default)]
struct Relays {
    runs: u64,
    waiting: Vec<Push>,
}

static RELAYS: Mutex<Option<HashMap<SocketAddr, Relays>>> = Mutex::new(None);

fn with<R>(sim: SocketAddr, f: impl FnOnce(&mut Relays) -> R) -> R {
    let mut all = lock(&RELAYS);
    f(all.get_or_insert_with(HashMap::new).entry(sim).or_default())
}

/// The pushes relayed by the simulator at `sim` since the last call.
pub fn take(sim: SocketAddr) -> Vec<Push> {
    with(sim, |r| std::mem::take(&mut r.waiting))
}

/// Whether the request is a Z-API send-text.
pub fn is_send_text(method: &Method, parts: &[&str]) -> bool {
    method == Method::POST && matches!(parts, ["instances", _, "token", _, "send-text"])
}

/// Whether the request is one of a canary's cleanup calls once its run is over: Z-API's delete
/// of the message it sent (`DELETE .../messages?messageId=&phone=&owner=`) or the mark-read of
/// the one that arrived (`POST .../read-message {phone, messageId}`).
pub fn is_cleanup(method: &Method, parts: &[&str]) -> bool {
    match parts {
        ["instances", _, "token", _, "messages"] => method == Method::DELETE,
        ["instances", _, "token", _, "read-message"] => method == Method::POST,
        _ => false,
    }
}

/// Answers a cleanup call as Z-API does: 204 with no body, for the demo's own instances and token.
pub fn cleanup(parts: &[&str]) -> (u16, String) {
    match parts {
        ["instances", instance, "token", token, _]
            if *token == DEMO_TOKEN && NUMBERS.iter().any(|(_, i, _)| i == instance) =>
        {
            (204, String::new())
        }
        _ => (401, r#"{"error":"Unauthorized"}"#.into()),
    }
}

/// Answers a send-text after its accept delay and schedules its relay.
pub async fn send_text(
    req: Request<Incoming>,
    parts: &[&str],
    sim: SocketAddr,
    started: Instant,
) -> (u16, String) {
    let ["instances", instance, "token", token, "send-text"] = parts else {
        return (404, r#"{"error":"not found"}"#.into());
    };
    if *token != DEMO_TOKEN {
        return (401, r#"{"error":"Unauthorized"}"#.into());
    }
    let Some(&(from, _, _)) = NUMBERS.iter().find(|(_, i, _)| i == instance) else {
        return (404, r#"{"error":"Instance not found"}"#.into());
    };
    let client_token = req.headers().get("client-token").map(|v| v.as_bytes());
    if from == "support" && client_token != Some(DEMO_CLIENT_TOKEN.as_bytes()) {
        return (
            400,
            r#"{"error":"your client-token is not configured"}"#.into(),
        );
    }
    let body = match http_body_util::Limited::new(req.into_body(), 64 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return (413, r#"{"error":"too large"}"#.into()),
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    let (Some(phone), Some(text)) = (v["phone"].as_str(), v["message"].as_str()) else {
        return (400, r#"{"error":"phone and message are required"}"#.into());
    };
    let run = with(sim, |r| {
        r.runs += 1;
        r.runs - 1
    });
    let minute = started.elapsed().as_secs() / 60 % 60;
    let plan = plan(from, phone, text, run, (20..30).contains(&minute), now_ms());
    tokio::time::sleep(Duration::from_millis(plan.accept_ms)).await;
    let at = now_ms();
    with(sim, |r| {
        let room = MAX_WAITING.saturating_sub(r.waiting.len());
        r.waiting
            .extend(plan.pushes.into_iter().take(room).map(|mut p| {
                p.due_ms += at;
                p
            }));
    });
    (200, plan.answer.to_string())
}

/// What the demo does with one send: its accept delay, its answer, and its pushes (due times
/// relative to the answer).
#[derive(Debug)]
pub struct Plan {
    pub accept_ms: u64,
    pub answer: Value,
    pub pushes: Vec<Push>,
}

/// The plan of run number `run` (from 0) of a send from gateway `from` to `phone`, at `now`.
pub fn plan(from: &'static str, phone: &str, text: &str, run: u64, slow: bool, now: i64) -> Plan {
    let mut rng = run.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut between = |lo: u64, hi: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        lo + rng % (hi - lo + 1)
    };
    let accept_ms = between(100, 500);
    let id = format!("3EB0DEMO{:012X}", between(0, 0xFFFF_FFFF_FFFF));
    let zaap = format!("DEMOZAAP{:012X}", run);
    let answer = json!({"zaapId": zaap, "messageId": id, "id": id});
    let (_, instance, own) = NUMBERS
        .iter()
        .find(|(g, _, _)| *g == from)
        .copied()
        .unwrap_or(NUMBERS[0]);
    let to = NUMBERS.iter().find(|(_, _, n)| *n == phone).copied();
    let lost = run % 10 == 6 || to.is_none();
    let (delivered, arrived) = if slow {
        (between(20_000, 60_000), between(20_000, 60_000))
    } else {
        (between(1000, 5000), between(1000, 6000))
    };
    let read = delivered + between(2000, 10_000);
    let received = format!("3EB1DEMO{:012X}", between(0, 0xFFFF_FFFF_FFFF));
    let mut pushes = Vec::new();
    let status = |status: &str, after: u64| Push {
        due_ms: after as i64,
        target: Target::Zapi(from),
        body: json!({"type": "MessageStatusCallback", "status": status, "ids": [id], "momment": now + after as i64, "phone": phone, "instanceId": instance, "isGroup": false}),
    };
    pushes.push(Push {
        due_ms: 200,
        target: Target::Zapi(from),
        body: json!({"type": "DeliveryCallback", "messageId": id, "zaapId": zaap, "momment": now + 200, "phone": phone, "instanceId": instance}),
    });
    pushes.push(status("SENT", 300));
    if let (false, Some((gw, to_instance, _))) = (lost, to) {
        pushes.push(status("RECEIVED", delivered));
        pushes.push(status("READ", read));
        pushes.push(Push {
            due_ms: arrived as i64,
            target: Target::Zapi(gw),
            body: json!({"type": "ReceivedCallback", "messageId": received, "fromMe": false, "momment": now + arrived as i64, "phone": own, "status": "RECEIVED", "isGroup": false, "text": {"message": text}, "instanceId": to_instance}),
        });
    }
    Plan {
        accept_ms,
        answer,
        pushes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{canary_nonce, canary_text, MessageKey, MessageStatus};
    use crate::providers::zapi;

    const NONCE: u64 = 0x0123_4567_89ab_cdef;

    /// What the exporter reads of a plan: the answered id's key, the delivered time of that id on
    /// `from`, the arrival time of the nonce on the other gateway.
    fn read(p: &Plan, from: &str) -> (MessageKey, Option<i64>, Option<i64>) {
        let key = MessageKey::of(zapi::send::message_id(&p.answer).unwrap()).unwrap();
        let (mut delivered, mut arrived) = (None, None);
        for push in &p.pushes {
            let Target::Zapi(gw) = push.target else {
                panic!("not a Z-API push")
            };
            let b = zapi::webhook::parse(push.body.to_string().as_bytes()).unwrap();
            assert_eq!(b.unparsed, 0);
            for e in &b.items {
                if gw == from
                    && e.status == Some(MessageStatus::Delivered)
                    && e.messages.contains(&key)
                {
                    delivered = Some(push.due_ms);
                }
                if gw != from && e.canary_nonce() == Some(NONCE) {
                    arrived = Some(push.due_ms);
                }
            }
        }
        (key, delivered, arrived)
    }

    #[test]
    fn a_run_is_accepted_delivered_and_arrives_in_time() {
        let text = canary_text(NONCE);
        for run in (0..30).filter(|r| r % 10 != 6) {
            let p = plan(
                "sales",
                "5500000000001",
                &text,
                run,
                false,
                1_750_000_000_000,
            );
            assert!((100..=500).contains(&p.accept_ms));
            let (_, delivered, arrived) = read(&p, "sales");
            assert!((1000..=5000).contains(&delivered.unwrap()), "{run}");
            assert!((1000..=6000).contains(&arrived.unwrap()), "{run}");
            let slow = plan("support", "5500000000002", &text, run, true, 0);
            let (_, delivered, arrived) = read(&slow, "support");
            assert!((20_000..=60_000).contains(&delivered.unwrap()));
            assert!((20_000..=60_000).contains(&arrived.unwrap()));
        }
        // The relayed text carries the nonce, as the receiving side got it.
        let p = plan("sales", "5500000000001", &text, 0, false, 0);
        let arrival = p
            .pushes
            .iter()
            .find(|p| p.target == Target::Zapi("support"));
        let got = arrival.unwrap().body["text"]["message"].as_str().unwrap();
        assert_eq!(canary_nonce(got), Some(NONCE));
    }

    #[test]
    fn one_run_in_ten_is_lost_and_unknown_numbers_never_arrive() {
        let text = canary_text(NONCE);
        let lost: Vec<u64> = (0..30)
            .filter(|r| {
                let p = plan("sales", "5500000000001", &text, *r, false, 0);
                read(&p, "sales").2.is_none()
            })
            .collect();
        assert_eq!(lost, vec![6, 16, 26]);
        let p = plan("sales", "5500000000009", &text, 0, false, 0);
        assert_eq!(read(&p, "sales").1, None);
        assert_eq!(read(&p, "sales").2, None);
    }

    #[test]
    fn the_answer_is_z_apis() {
        let p = plan("sales", "5500000000001", "x", 3, false, 0);
        let key = zapi::send::message_id(&p.answer).unwrap();
        assert_eq!(p.answer["id"], p.answer["messageId"]);
        assert!(p.answer["zaapId"].is_string() && key.starts_with("3EB0DEMO"));
    }
}
