//! The Green API notification queue, read beside the poll schedule: one task per gateway with
//! `notifications: consume`, counting each notification once and deleting it.
//!
//! The provider (`providers::greenapi`) knows how to receive, delete and read a notification;
//! this task owns the loop, its back-off, and what a notification changes in the gateway.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::clock::unix_seconds;
use crate::error::PollError;
use crate::flow::believable;
use crate::flow_state::{FlowState, Tracker};
use crate::gateway::Gateway;
use crate::providers::greenapi::{
    Backoff, Notification, RecentReceipts, Source, Status, WebhookType, DELETE_GRACE,
    MIN_EMPTY_CYCLE, RECENT_RECEIPTS,
};
use crate::providers::Source as AnySource;

/// Reads the queue of `gw` until `stop`, counting each notification once and deleting it.
pub async fn consume(
    gw: Arc<Gateway>,
    tracker: Arc<Tracker>,
    canaries: Arc<crate::canary::Registry>,
    stop: CancellationToken,
) {
    let AnySource::GreenApi(src) = &gw.source else {
        return;
    };
    if !src.consumes_queue() {
        return;
    }
    tracing::info!(gateway = %gw.name(), "consuming the Green API notification queue (notifications are deleted once counted)");
    src.start_consuming();
    gw.rerender();
    let mut recent = RecentReceipts::new(RECENT_RECEIPTS);
    let mut backoff = Backoff::default();
    let mut failing = false;
    loop {
        let started = Instant::now();
        let received = tokio::select! {
            _ = stop.cancelled() => return,
            r = src.receive() => r,
        };
        let outcome = match received {
            Ok(None) => Ok(MIN_EMPTY_CYCLE.saturating_sub(started.elapsed())),
            Ok(Some(n)) => {
                if !recent.insert(n.receipt_id) {
                    gw.flow.update(FlowState::duplicate);
                } else if count(&gw, src, &tracker, &n) {
                    canaries.observe(gw.name(), std::iter::once(&n.event));
                }
                match delete_unless_stopped(src, n.receipt_id, &stop).await {
                    Some(r) => r.map(|()| Duration::ZERO),
                    None => return,
                }
            }
            Err(e) => Err(e),
        };
        let pause = match outcome {
            Ok(pause) => {
                if std::mem::take(&mut failing) {
                    tracing::info!(gateway = %gw.name(), "notification queue readable again");
                }
                backoff.reset();
                pause
            }
            Err(e) => {
                log_failure(&gw, &e, !std::mem::replace(&mut failing, true));
                backoff.fail(e.retry_after())
            }
        };
        if !pause.is_zero() {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Deletes a counted notification; on stop the delete gets a moment to finish, as one left in the
/// queue would be counted again after a restart. `None` when stopped.
async fn delete_unless_stopped(
    src: &Source,
    receipt: u64,
    stop: &CancellationToken,
) -> Option<Result<(), PollError>> {
    let del = src.delete(receipt);
    tokio::pin!(del);
    tokio::select! {
        r = &mut del => Some(r),
        _ = stop.cancelled() => {
            let _ = tokio::time::timeout(DELETE_GRACE, del).await;
            None
        }
    }
}

/// Counts a notification the queue gave once; false when it repeats one that came lately (the
/// same message, kind and status under another receipt), which counts only as a duplicate.
fn count(gw: &Gateway, src: &Source, tracker: &Tracker, n: &Notification) -> bool {
    let now = unix_seconds(SystemTime::now());
    if gw.flow.update(|f| f.apply(&n.event, now, tracker)) == Some(false) {
        return false;
    }
    src.count(n);
    gw.rerender();
    // A state change older than the last poll is history (the queue keeps 24 h); one whose time
    // cannot be believed does not overrule the poll either.
    if let (WebhookType::StateInstanceChanged, Some(state)) = (n.kind, n.state) {
        let believed = n.timestamp.is_none_or(|t| believable(t, now));
        if believed && gw.is_current(n.timestamp) {
            if n.event.connected == Some(false) {
                crate::receiver::log_pushed_disconnection(gw.name(), &n.event);
            }
            gw.push_observation(Box::new(Status { state }));
        }
    }
    true
}

fn log_failure(gw: &Gateway, e: &PollError, first: bool) {
    let text = e.to_string();
    let error = gw.scrubber.scrub(&text);
    if first {
        tracing::warn!(gateway = %gw.name(), reason = %e.reason(), error = %error, "notification queue failed; backing off");
    } else {
        tracing::debug!(gateway = %gw.name(), reason = %e.reason(), error = %error, "notification queue failed");
    }
}
