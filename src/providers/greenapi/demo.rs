//! A simulated Green API instance with a notification queue that fills over time.
//!
//! The state follows the demo's cycle: authorized most of the time, with a spell of notAuthorized
//! (the phone was logged out), a restart (starting) and a yellowCard. The queue gains a few
//! notifications every few seconds (messages in and out, delivery statuses, now and then a call),
//! and a stateInstanceChanged whenever the state changes. The queue lives here, lazily created
//! at the first request, and advances second by second with the `t` of each request.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::{Method, Request};

use std::net::SocketAddr;

use crate::providers::simulator::{Hold, Simulator, CYCLE_SECS, DEMO_TOKEN};

pub static SIMULATOR: Simulator = Simulator {
    route,
    hold: |path, secs| {
        let path = path.to_string();
        path.contains("/receiveNotification/")
            .then(|| Box::pin(async move { hold(&path, secs).await }) as Hold)
    },
    gateways,
};

fn gateways(addr: SocketAddr) -> String {
    format!(
        r#"  - name: helpdesk
    provider: greenapi
    url: http://{addr}
    instance: "{INSTANCE}"
    token: {DEMO_TOKEN}
    notifications: consume
"#
    )
}

pub const INSTANCE: &str = "1101000001";
/// Longest a `receiveNotification` on an empty queue is held, well under the long poll's 20 s so
/// the demo server never keeps a request long.
const HOLD: Duration = Duration::from_secs(3);
/// The real queue keeps a day of notifications; the simulated one stops growing here.
const QUEUE_CAP: usize = 500;

/// The instance state at second `t` of the cycle. The phone is logged out within the first minute,
/// so that a dashboard opened on a fresh demo soon shows a connection change.
pub fn state_at(t: u64) -> &'static str {
    match t % CYCLE_SECS {
        35..=49 => "notAuthorized",
        50..=59 => "starting",
        145..=159 => "yellowCard",
        _ => "authorized",
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<(u64, String)>,
    next_receipt: u64,
    /// The last second of the cycle the queue was advanced to.
    last_t: Option<u64>,
}

fn queue() -> MutexGuard<'static, Queue> {
    static Q: OnceLock<Mutex<Queue>> = OnceLock::new();
    crate::sync::lock(Q.get_or_init(|| {
        Mutex::new(Queue {
            next_receipt: 1,
            ..Queue::default()
        })
    }))
}

impl Queue {
    /// Plays every second from the last request up to `t`.
    fn advance(&mut self, t: u64) {
        let t = t % CYCLE_SECS;
        let Some(mut s) = self.last_t else {
            self.last_t = Some(t);
            self.tick(0);
            return;
        };
        // A request that started before a held one finished is behind it: nothing to play.
        if (t + CYCLE_SECS - s) % CYCLE_SECS > CYCLE_SECS / 2 {
            return;
        }
        while s != t {
            s = (s + 1) % CYCLE_SECS;
            self.tick(s);
        }
        self.last_t = Some(t);
    }

    fn tick(&mut self, s: u64) {
        let before = state_at(s + CYCLE_SECS - 1);
        if state_at(s) != before {
            self.push("stateInstanceChanged", Some(state_at(s)), 0);
        }
        if s % 4 != 0 {
            return;
        }
        for i in 0..1 + (s / 4) % 3 {
            let r = self.next_receipt;
            let kind = match (r + i) % 10 {
                0..=3 => "incomingMessageReceived",
                4..=6 => "outgoingMessageStatus",
                7 => "outgoingAPIMessageReceived",
                8 => "outgoingMessageReceived",
                _ if r % 7 == 0 => "incomingCall",
                _ => "deviceInfo",
            };
            // Most arrive within the minute; now and then one waited in the queue for long.
            let lag = if r % 25 == 0 {
                900 + r % 2700
            } else {
                r * 37 % 90
            };
            self.push(kind, None, lag);
        }
    }

    fn push(&mut self, kind: &str, state: Option<&str>, lag: u64) {
        if self.items.len() >= QUEUE_CAP {
            return;
        }
        let r = self.next_receipt;
        self.next_receipt += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.items
            .push_back((r, notification(r, kind, state, now.saturating_sub(lag))));
    }
}

/// A notification as Green API sends it, private fields included (fake ones): the exporter must
/// read past them.
fn notification(receipt: u64, kind: &str, state: Option<&str>, ts: u64) -> String {
    let instance = format!(
        r#""instanceData":{{"idInstance":{INSTANCE},"wid":"70000000000@c.us","typeInstance":"whatsapp"}}"#
    );
    let extra = match kind {
        "stateInstanceChanged" => format!(r#""stateInstance":"{}""#, state.unwrap_or("authorized")),
        "outgoingMessageStatus" => {
            // Mostly delivered and read; a failure or a number without WhatsApp now and then.
            let status = [
                "sent",
                "delivered",
                "read",
                "delivered",
                "read",
                "sent",
                "read",
                "delivered",
                "failed",
                "read",
                "noAccount",
            ][(receipt % 11) as usize];
            format!(
                r#""chatId":"70000000001@c.us","idMessage":"DEMO{receipt:08}","status":"{status}","sendByApi":true"#
            )
        }
        _ => format!(
            r#""idMessage":"DEMO{receipt:08}","senderData":{{"chatId":"70000000001@c.us","sender":"70000000001@c.us","senderName":"Demo Customer"}},"messageData":{{"typeMessage":"textMessage","textMessageData":{{"textMessage":"Hello from the demo"}}}}"#
        ),
    };
    format!(
        r#"{{"receiptId":{receipt},"body":{{"typeWebhook":"{kind}",{instance},"timestamp":{ts},{extra}}}}}"#
    )
}

/// Holds a `receiveNotification` on an empty queue for a while, as the real long poll does.
pub async fn hold(path: &str, secs: u64) {
    if !path.contains("/receiveNotification/") {
        return;
    }
    let mut waited = Duration::ZERO;
    let step = Duration::from_millis(250);
    while waited < HOLD {
        if has_items(secs + waited.as_secs()) {
            return;
        }
        tokio::time::sleep(step).await;
        waited += step;
    }
}

fn has_items(t: u64) -> bool {
    let mut q = queue();
    q.advance(t);
    !q.items.is_empty()
}

pub fn route(req: &Request<Incoming>, parts: &[&str], t: u64) -> Option<(u16, String)> {
    let [instance, method, token, rest @ ..] = parts else {
        return None;
    };
    let instance = instance.strip_prefix("waInstance")?;
    if *token != DEMO_TOKEN {
        return Some((401, String::new()));
    }
    if instance != INSTANCE {
        return Some((404, r#"{"error":"instance not found"}"#.into()));
    }
    Some(match (*method, rest) {
        ("getStateInstance", []) => (200, format!(r#"{{"stateInstance":"{}"}}"#, state_at(t))),
        ("receiveNotification", []) => receive(t),
        ("deleteNotification", [receipt]) if req.method() == Method::DELETE => delete(receipt),
        _ => (404, r#"{"error":"not found"}"#.into()),
    })
}

fn receive(t: u64) -> (u16, String) {
    let mut q = queue();
    q.advance(t);
    match q.items.front() {
        Some((_, body)) => (200, body.clone()),
        None => (200, "null".into()),
    }
}

fn delete(receipt: &str) -> (u16, String) {
    let Ok(receipt) = receipt.parse::<u64>() else {
        return (400, r#"{"error":"bad receiptId"}"#.into());
    };
    let mut q = queue();
    let before = q.items.len();
    q.items.retain(|(r, _)| *r != receipt);
    (200, format!(r#"{{"result":{}}}"#, q.items.len() < before))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::greenapi::{parse, parse_notification, InstanceState, WebhookType};

    #[test]
    fn state_story() {
        let at = |t| {
            parse(format!(r#"{{"stateInstance":"{}"}}"#, state_at(t)).as_bytes())
                .unwrap()
                .state
        };
        assert_eq!(at(0), InstanceState::Authorized);
        assert_eq!(at(40), InstanceState::NotAuthorized);
        assert_eq!(at(55), InstanceState::Starting);
        assert_eq!(at(100), InstanceState::Authorized);
        assert_eq!(at(150), InstanceState::YellowCard);
        assert_eq!(at(170), InstanceState::Authorized);
        let authorized = (0..CYCLE_SECS)
            .filter(|t| state_at(*t) == "authorized")
            .count();
        assert!(authorized as u64 > CYCLE_SECS * 2 / 3);
    }

    #[test]
    fn queue_fills_with_assorted_parsable_notifications() {
        let mut q = Queue {
            next_receipt: 1,
            ..Queue::default()
        };
        // Requests every few seconds, for a cycle and a bit, and one from before a held one.
        for t in (0..CYCLE_SECS + 11).step_by(5) {
            q.advance(t);
        }
        let before = q.items.len();
        q.advance(3);
        assert_eq!(
            q.items.len(),
            before,
            "a late request does not replay the cycle"
        );
        let parsed: Vec<_> = q
            .items
            .iter()
            .map(|(r, body)| {
                let n = parse_notification(body.as_bytes()).unwrap().unwrap();
                assert_eq!(n.receipt_id, *r);
                assert_ne!(n.kind, WebhookType::Other, "{body}");
                n
            })
            .collect();
        assert!(parsed.len() > 60, "{}", parsed.len());
        let changes: Vec<_> = parsed.iter().filter_map(|n| n.state).collect();
        assert_eq!(
            changes,
            [
                InstanceState::NotAuthorized,
                InstanceState::Starting,
                InstanceState::Authorized,
                InstanceState::YellowCard,
                InstanceState::Authorized
            ]
        );
        for kind in [
            WebhookType::IncomingMessageReceived,
            WebhookType::OutgoingMessageStatus,
            WebhookType::OutgoingApiMessageReceived,
        ] {
            assert!(parsed.iter().any(|n| n.kind == kind), "{kind:?}");
        }
        let statuses: std::collections::HashSet<_> = parsed
            .iter()
            .filter_map(|n| n.status.map(|s| s.as_str()))
            .collect();
        assert!(statuses.len() >= 4, "{statuses:?}");
    }

    #[test]
    fn delete_removes_by_receipt() {
        let mut q = queue();
        q.advance(0);
        let first = q.items.front().map(|(r, _)| *r).unwrap();
        drop(q);
        assert_eq!(
            delete(&first.to_string()),
            (200, r#"{"result":true}"#.into())
        );
        assert_eq!(
            delete(&first.to_string()),
            (200, r#"{"result":false}"#.into())
        );
        assert_eq!(delete("x").0, 400);
    }
}
