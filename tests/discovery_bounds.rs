//! Foul weather on discovery: a server whose listing is tens of MiB (30,000 instances and more)
//! is read as it streams, keeps `max_instances` of it and counts the rest, and holds only a
//! piece of it in the answer budget at a time; and an instance named after a secret of the
//! configuration never becomes a label.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::{hourly, reply, sample, Exporter, Mock, MockBody};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame};
use hyper::Response;
use whatsapp_exporter::http::{budget_available, BODY_BUDGET};

const KEY: &str = "evo-global-key-7f3a9c2e1b5d";
/// Instances of the big listing, in rows of about 1.4 KiB (the shape of Evolution API 2, with
/// settings): some 8 MiB, far over what any other answer may weigh.
const INSTANCES: usize = 6000;
const MAX: usize = 50;

/// Instance `i` in listing order: a permutation of 0..INSTANCES, so that the lowest names
/// arrive anywhere in the stream (the last of them near its end).
fn nth(i: usize) -> usize {
    (i * 7919 + 13) % INSTANCES
}

/// A row of Evolution API 2, with the token and the phone number a real one carries.
fn row(n: usize) -> String {
    format!(
        r#"{{"id":"cm{n:022}","name":"inst-{n:06}","connectionStatus":"{state}","ownerJid":"55119{n:08}@s.whatsapp.net","token":"TOKEN-{n:08}-secret","number":"55119{n:08}","Setting":{{"rejectCall":false,"msgCall":"","groupsIgnore":true,"alwaysOnline":false,"readMessages":false,"readStatus":false,"syncFullHistory":false,"pad":"{pad}"}},"_count":{{"Message":{n},"Contact":12,"Chat":3}}}}"#,
        state = if n % 2 == 0 { "open" } else { "close" },
        pad = "p".repeat(1000),
    )
}

/// The listing, made as it is sent in pieces of about 64 KiB: one row over the 64 KiB cap
/// (skipped unread) stands among the others. The lowest budget seen while it streams is kept.
struct Listing {
    next: usize,
    low_budget: Arc<AtomicUsize>,
}

impl Body for Listing {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.low_budget
            .fetch_min(budget_available(), Ordering::SeqCst);
        if self.next > INSTANCES {
            return Poll::Ready(None);
        }
        let mut out = String::with_capacity(80 << 10);
        if self.next == 0 {
            out.push('[');
        }
        while self.next < INSTANCES && out.len() < 64 << 10 {
            if self.next > 0 {
                out.push(',');
            }
            if self.next == INSTANCES / 2 {
                out.push_str(&format!(
                    r#"{{"name":"oversized-row","pad":"{}"}},"#,
                    "h".repeat(100 << 10)
                ));
            }
            out.push_str(&row(nth(self.next)));
            self.next += 1;
        }
        if self.next == INSTANCES {
            out.push(']');
            self.next += 1;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_of_many_mib_keeps_max_instances_and_holds_a_piece_at_a_time() {
    let low_budget = Arc::new(AtomicUsize::new(BODY_BUDGET));
    let low = low_budget.clone();
    let mock = Mock::start(move |s| {
        let low = low.clone();
        async move {
            if s.path != "/instance/fetchInstances" {
                return reply(404, "{}");
            }
            let body: MockBody = Listing {
                next: 0,
                low_budget: low,
            }
            .boxed();
            Response::new(body)
        }
    })
    .await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: evo-huge\n    provider: evolution\n    url: {}\n    token: {KEY}\n    timeout: 60s\n    instances: all\n    max_instances: {MAX}\n",
        mock.url()
    )))
    .await;
    ex.poll("evo-huge").await;
    let m = ex.metrics().await;
    let srv = [("gateway", "evo-huge"), ("provider", "evolution")];
    assert_eq!(sample(&m, "whatsapp_up", &srv), Some(1.0), "{m}");
    assert_eq!(
        sample(&m, "whatsapp_discovered_instances", &srv),
        Some(MAX as f64)
    );
    assert_eq!(
        sample(&m, "whatsapp_discovery_overflow_total", &srv),
        Some((INSTANCES - MAX) as f64)
    );
    assert_eq!(
        sample(&m, "whatsapp_discovery_skipped_instances", &srv),
        Some(1.0),
        "the row over 64 KiB"
    );
    // The lowest names are kept, wherever they stood in the listing.
    for n in 0..INSTANCES.min(MAX + 5) {
        let gateway = format!("evo-huge/inst-{n:06}");
        let labels = [
            ("gateway", gateway.as_str()),
            ("provider", "evolution"),
            ("server", "evo-huge"),
        ];
        let want = (n < MAX).then_some(if n % 2 == 0 { 1.0 } else { 0.0 });
        assert_eq!(sample(&m, "whatsapp_connected", &labels), want, "{gateway}");
    }
    for private in ["TOKEN-", "55119", "oversized"] {
        assert!(!m.contains(private), "{private} in /metrics");
    }
    // A piece of the listing in flight at a time, not a flat share of it nor the whole.
    let held = BODY_BUDGET - low_budget.load(Ordering::SeqCst);
    assert!(held <= 1 << 20, "{held} bytes of the budget held");
    let mut whole = false;
    for _ in 0..100 {
        whole = budget_available() == BODY_BUDGET;
        if whole {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        whole,
        "{} bytes of the budget still held",
        BODY_BUDGET - budget_available()
    );
    assert_eq!(ex.get("/-/healthy").await.0, 200);
    ex.stop().await;
}

/// A server whose listing names an instance after the server's key, or after part of it.
async fn keyed_server(path: &'static str, key: &'static str) -> Mock {
    Mock::start(move |s| async move {
        if s.path != path {
            return reply(404, "{}");
        }
        reply(
            200,
            format!(
                r#"[{{"name":"{key}","connectionStatus":"open","status":"WORKING"}},
                   {{"name":"store-{}","connectionStatus":"open","status":"WORKING"}},
                   {{"name":"sales","connectionStatus":"open","status":"WORKING"}}]"#,
                &key[4..16]
            ),
        )
    })
    .await
}

#[tokio::test]
async fn an_instance_named_after_a_secret_is_never_a_label() {
    const WAHA_KEY: &str = "waha-KEY-0c4f9a7e21d8";
    let evo = keyed_server("/instance/fetchInstances", KEY).await;
    let waha = keyed_server("/api/sessions", WAHA_KEY).await;
    let ex = Exporter::start(&hourly(&format!(
        "  - name: evo-keyed\n    provider: evolution\n    url: {}\n    token: {KEY}\n    instances: all\n  - name: waha-keyed\n    provider: waha\n    url: {}\n    token: {WAHA_KEY}\n    instances: all\n",
        evo.url(),
        waha.url()
    )))
    .await;
    ex.poll("evo-keyed").await;
    ex.poll("waha-keyed").await;
    let m = ex.metrics().await;
    for (server, provider) in [("evo-keyed", "evolution"), ("waha-keyed", "waha")] {
        let srv = [("gateway", server), ("provider", provider)];
        assert_eq!(sample(&m, "whatsapp_up", &srv), Some(1.0), "{m}");
        assert_eq!(
            sample(&m, "whatsapp_discovered_instances", &srv),
            Some(1.0),
            "{server}: only sales"
        );
        assert_eq!(
            sample(&m, "whatsapp_discovery_skipped_instances", &srv),
            Some(2.0),
            "{server}: the key, and a name holding a piece of it"
        );
        let sales = format!("{server}/sales");
        assert_eq!(
            sample(
                &m,
                "whatsapp_connected",
                &[
                    ("gateway", sales.as_str()),
                    ("provider", provider),
                    ("server", server)
                ]
            ),
            Some(1.0)
        );
    }
    let (_, page) = ex.get("/").await;
    let logs = common::logs();
    for key in [KEY, WAHA_KEY] {
        let piece = &key[4..16];
        for (what, text) in [
            ("/metrics", &m),
            ("the status page", &page),
            ("the logs", &logs),
        ] {
            assert!(!text.contains(piece), "a piece of a key in {what}");
        }
    }
    ex.stop().await;
}
