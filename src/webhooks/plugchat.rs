//! The PlugChat webhook receiver: `POST /webhooks/plugchat/{account}/{event}?secret=S`.
//!
//! PlugChat signs nothing: the per-account secret in the URL is the whole authentication. It is
//! compared in constant time and never logged, and neither is the query string nor the URI.
//!
//! A request is checked in this order, each refusal counted in
//! `whatsapp_webhook_rejected_total{gateway=ACCOUNT,provider="plugchat",reason}`:
//!
//! | check | answer | `account`, `reason` |
//! | --- | --- | --- |
//! | account not configured | 404 | `""`, `unknown_gateway` (the name in the URL is never a label) |
//! | wrong or missing secret | 401 | the account, `unauthorized` |
//! | method other than POST | 405 | the account, `method_not_allowed` |
//! | event not one of the seven | 404 | the account, `unknown_event` |
//! | `Content-Type` present and not JSON | 415 | the account, `unsupported_media_type` |
//! | body over 1 MiB | 413 | the account, `too_large` |
//! | body not JSON | 400 | the account, `invalid_json` |
//!
//! Only a caller that knows the secret gets past the second check, so every reason after it is a
//! mistake of PlugChat's (or of whoever set the URLs), never noise from scanners; those are warned
//! about in the log, the first two only at debug level. Accepted webhooks are counted in memory
//! under a short lock and answered `200 {"ok":true}` at once.
//!
//! Accepted webhooks feed the message-flow families every provider shares
//! (`whatsapp_webhook_events_total`, `whatsapp_message_status_total`, ... with `gateway` the
//! account and `provider="plugchat"`): PlugChat's message and connection events are Z-API
//! callbacks, read as Z-API's own. The attendance series are PlugChat's alone.

pub mod payload;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use serde_json::Value;

use crate::config::PlugChatAccount;
use crate::exposition::{Family, Fragment, FragmentWriter};
use crate::flow::{self, FlowSpec, MessageKey, MessageStatus};
use crate::flow_state::{Flow, Owner, Tracker};
use crate::inbound::{self, BodyError};
use crate::labels::LabelSet;
use crate::providers::zapi::webhook as zapi;
use crate::secret::{Scrubber, Secret};
use crate::sync::{lock, read, write};

/// The path every webhook starts with.
pub const PATH_PREFIX: &str = "/webhooks/plugchat/";
/// The seven events PlugChat can call, in the order of its documentation.
pub const EVENTS: &[&str] = <Event as LabelSet>::LABELS;
/// No PlugChat payload comes near this; the chat map of a long attendance is the largest.
pub const MAX_BODY: usize = 1 << 20;
/// A body that has not arrived by then will not: the sender is gone or hostile.
pub const BODY_TIMEOUT: Duration = inbound::BODY_TIMEOUT;
/// Open attendances tracked per account; beyond it the oldest are forgotten (a finish for one of
/// them no longer lowers the gauge, which is the lesser evil against unbounded memory).
pub const MAX_OPEN_ATTENDANCES: usize = 10_000;
/// Distinct values of a payload label (department, category) per account; the rest are `other`.
pub const MAX_LABEL_VALUES: usize = 50;
/// Characters kept of a payload label value.
pub const MAX_LABEL_LEN: usize = 64;
/// The label value that absorbs payload values beyond [`MAX_LABEL_VALUES`].
pub const OTHER: &str = "other";

const DURATION_BUCKETS: [f64; 12] = [
    30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
];
const WAIT_BUCKETS: [f64; 13] = [
    5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0,
];

crate::labels::closed_set! {
    /// Why a webhook was refused: its `reason` label, HTTP status and answer.
    pub enum Rejection {
        Unauthorized => "unauthorized",
        InvalidJson => "invalid_json",
        TooLarge => "too_large",
        UnknownEvent => "unknown_event",
        UnsupportedMediaType => "unsupported_media_type",
        MethodNotAllowed => "method_not_allowed",
        UnknownAccount => "unknown_account",
    }
}

/// What PlugChat's pushes can say: its seven events, and Z-API's error codes.
pub static SPEC: FlowSpec = FlowSpec {
    events: EVENTS,
    codes: &zapi::CODES,
    cloud: None,
    disconnects: &[],
};

/// The `provider` label of PlugChat's message-flow series.
pub const PROVIDER: &str = "plugchat";

impl Rejection {
    /// Every reason of a configured account (`unknown_account` is counted as `unknown_gateway` under
    /// `gateway=""`).
    pub const FOR_ACCOUNTS: [Rejection; 6] = [
        Rejection::Unauthorized,
        Rejection::InvalidJson,
        Rejection::TooLarge,
        Rejection::UnknownEvent,
        Rejection::UnsupportedMediaType,
        Rejection::MethodNotAllowed,
    ];

    pub fn reason(self) -> &'static str {
        self.common().as_str()
    }

    /// The reason as every receiver counts it.
    pub fn common(self) -> flow::Rejection {
        match self {
            Rejection::Unauthorized => flow::Rejection::Unauthorized,
            Rejection::InvalidJson => flow::Rejection::InvalidJson,
            Rejection::TooLarge => flow::Rejection::TooLarge,
            Rejection::UnknownEvent => flow::Rejection::UnknownEvent,
            Rejection::UnsupportedMediaType => flow::Rejection::UnsupportedMediaType,
            Rejection::MethodNotAllowed => flow::Rejection::MethodNotAllowed,
            Rejection::UnknownAccount => flow::Rejection::UnknownGateway,
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Rejection::Unauthorized => StatusCode::UNAUTHORIZED,
            Rejection::InvalidJson => StatusCode::BAD_REQUEST,
            Rejection::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Rejection::UnknownEvent | Rejection::UnknownAccount => StatusCode::NOT_FOUND,
            Rejection::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Rejection::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    fn answer(self) -> Response<Full<Bytes>> {
        let msg = match self {
            Rejection::Unauthorized => "wrong or missing secret\n",
            Rejection::InvalidJson => "the body is not JSON\n",
            Rejection::TooLarge => "the body is larger than 1 MiB\n",
            Rejection::UnknownEvent => {
                "unknown event: use finishAttendance, startAttendance, receiveMessage, sendingMessage, messageDeliveryError, messageStatus or whenDisconnecting\n"
            }
            Rejection::UnsupportedMediaType => "send Content-Type: application/json\n",
            Rejection::MethodNotAllowed => "use POST\n",
            Rejection::UnknownAccount => "unknown account\n",
        };
        let mut r = crate::respond::text(self.status(), msg);
        if self == Rejection::MethodNotAllowed {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        r
    }
}

crate::labels::closed_set! {
    /// One of the seven events, named as in the webhook URL.
    pub enum Event {
        FinishAttendance => "finishAttendance",
        StartAttendance => "startAttendance",
        ReceiveMessage => "receiveMessage",
        SendingMessage => "sendingMessage",
        MessageDeliveryError => "messageDeliveryError",
        MessageStatus => "messageStatus",
        WhenDisconnecting => "whenDisconnecting",
    }
}

impl Event {
    /// Exactly as written: PlugChat calls the URL it was given.
    fn from_path(s: &str) -> Option<Event> {
        Event::ALL.iter().copied().find(|e| e.as_str() == s)
    }

    fn name(self) -> &'static str {
        self.as_str()
    }
}

/// The metric families, registered once in the exporter's registry.
struct Families {
    duration: HistogramVec,
    wait: HistogramVec,
    open: IntGaugeVec,
    delivery_errors: IntCounterVec,
    last_disconnect: GaugeVec,
    attendances: IntCounterVec,
}

impl Families {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                &["account", "department"],
            )
        };
        let f = Families {
            duration: histogram(
                "whatsapp_plugchat_attendance_duration_seconds",
                "Length of finished PlugChat attendances (endTime - startTime).",
                &DURATION_BUCKETS,
            )?,
            wait: histogram(
                "whatsapp_plugchat_attendance_wait_seconds",
                "Time PlugChat customers waited for an operator (startTime - requestTime; negative clock skew counts as 0).",
                &WAIT_BUCKETS,
            )?,
            open: IntGaugeVec::new(
                Opts::new(
                    "whatsapp_plugchat_attendances_open",
                    "PlugChat attendances started and not yet finished, as seen by this exporter since it started.",
                ),
                &["account"],
            )?,
            delivery_errors: counter(
                "whatsapp_plugchat_delivery_errors_total",
                "messageDeliveryError webhooks received.",
                &["account"],
            )?,
            last_disconnect: GaugeVec::new(
                Opts::new(
                    "whatsapp_plugchat_last_disconnect_timestamp_seconds",
                    "Unix time of the latest disconnection told by a whenDisconnecting webhook.",
                ),
                &["account"],
            )?,
            attendances: counter(
                "whatsapp_plugchat_attendances_total",
                "Finished PlugChat attendances, by department and category (one per category when an attendance has several).",
                &["account", "department", "category"],
            )?,
        };
        registry.register(Box::new(f.duration.clone()))?;
        registry.register(Box::new(f.wait.clone()))?;
        registry.register(Box::new(f.open.clone()))?;
        registry.register(Box::new(f.delivery_errors.clone()))?;
        registry.register(Box::new(f.last_disconnect.clone()))?;
        registry.register(Box::new(f.attendances.clone()))?;
        Ok(f)
    }

    /// Series of a new account at 0, so that `rate()` and `increase()` see its first webhook.
    fn initialise(&self, account: &str) {
        self.delivery_errors.with_label_values(&[account]);
        self.open.with_label_values(&[account]).set(0);
    }

    /// Drops every series of an account; prometheus 0.14 has no partial-match removal, so the
    /// payload label values written are taken from the account's book.
    fn remove(&self, account: &str, book: &Book) {
        let _ = self.delivery_errors.remove_label_values(&[account]);
        let _ = self.open.remove_label_values(&[account]);
        let _ = self.last_disconnect.remove_label_values(&[account]);
        for dept in book.departments.values() {
            let _ = self.duration.remove_label_values(&[account, dept]);
            let _ = self.wait.remove_label_values(&[account, dept]);
        }
        for (dept, category) in &book.pairs {
            let _ =
                self.attendances
                    .remove_label_values(&[account, dept.as_str(), category.as_str()]);
        }
    }
}

/// A configured account: its secret, and its state, which survives reloads that keep it.
struct Account {
    secret: Secret,
    state: Arc<AccountState>,
}

struct AccountState {
    name: String,
    accepted: AtomicU64,
    rejected: AtomicU64,
    book: Mutex<Book>,
    flow: Flow,
}

/// What must be remembered between webhooks of an account.
#[derive(Default)]
struct Book {
    open: OpenAttendances,
    departments: LabelCap,
    categories: LabelCap,
    /// The (department, category) pairs written to `attendances_total`, to remove them later.
    pairs: HashSet<(String, String)>,
    last_disconnect: f64,
}

/// Attendances started and not yet finished, by `attendanceNumber`, oldest first.
#[derive(Default)]
struct OpenAttendances {
    by_number: HashMap<String, Opened>,
    by_age: BTreeMap<u64, String>,
    next: u64,
}

#[derive(Debug, Clone, Copy)]
struct Opened {
    age: u64,
    /// Its wait was observed at the start, so the finish must not observe it again.
    wait_observed: bool,
}

impl OpenAttendances {
    /// Records a start; a repeated start changes nothing (PlugChat may retry a webhook).
    fn start(&mut self, number: String, wait_observed: bool) {
        if let Some(o) = self.by_number.get_mut(&number) {
            o.wait_observed |= wait_observed;
            return;
        }
        let age = self.next;
        self.next += 1;
        self.by_age.insert(age, number.clone());
        self.by_number.insert(number, Opened { age, wait_observed });
        while self.by_number.len() > MAX_OPEN_ATTENDANCES {
            match self.by_age.pop_first() {
                Some((_, oldest)) => {
                    self.by_number.remove(&oldest);
                }
                None => break,
            }
        }
    }

    /// Records a finish; one for a number never seen (or forgotten) returns `None`.
    fn finish(&mut self, number: &str) -> Option<Opened> {
        let o = self.by_number.remove(number)?;
        self.by_age.remove(&o.age);
        Some(o)
    }

    fn len(&self) -> usize {
        self.by_number.len()
    }
}

/// The distinct values a payload label has taken for an account, at most [`MAX_LABEL_VALUES`].
#[derive(Default)]
struct LabelCap {
    seen: HashSet<String>,
}

impl LabelCap {
    /// The label value for `raw`: sanitised and scrubbed of the secret, or [`OTHER`] once the cap
    /// is reached; `""` if absent.
    fn admit(&mut self, raw: Option<&str>, scrub: &Scrubber) -> String {
        let v = raw
            .map(|r| scrub.scrub(&sanitise(r)).into_owned())
            .unwrap_or_default();
        if v.is_empty() || self.seen.contains(&v) {
            return v;
        }
        if self.seen.len() >= MAX_LABEL_VALUES {
            return OTHER.to_string();
        }
        self.seen.insert(v.clone());
        v
    }

    /// Every value written, including `""` and [`OTHER`], which are never in `seen`.
    fn values(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(String::as_str).chain(["", OTHER])
    }
}

/// A payload string made fit for a label: control characters dropped, whitespace trimmed, at
/// most [`MAX_LABEL_LEN`] characters.
pub fn sanitise(raw: &str) -> String {
    crate::labels::text(raw, MAX_LABEL_LEN)
}

impl AccountState {
    fn new(name: &str) -> Self {
        let flow = Flow::new(&[("gateway", name), ("provider", PROVIDER)]);
        flow.activate(&SPEC, || {
            Owner::new(crate::shard::stable_hash(
                format!("plugchat/{name}").bytes(),
            ))
        });
        AccountState {
            name: name.to_string(),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            book: Mutex::new(Book::default()),
            flow,
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        lock(&self.book)
    }

    fn reject(&self, why: Rejection) {
        self.flow.update(|f| f.reject(why.common()));
        self.rejected.fetch_add(1, Ordering::Relaxed);
    }

    fn accept(
        &self,
        f: &Families,
        tracker: &Tracker,
        event: Event,
        body: &Value,
        scrub: &Scrubber,
    ) {
        let account = self.name.as_str();
        match event {
            Event::StartAttendance => self.started(f, &payload::attendance(body), scrub),
            Event::FinishAttendance => self.finished(f, &payload::attendance(body), scrub),
            Event::MessageDeliveryError => f.delivery_errors.with_label_values(&[account]).inc(),
            Event::WhenDisconnecting => self.disconnected(f, body),
            _ => {}
        }
        let now = crate::clock::unix_seconds(SystemTime::now());
        let events = flow_events(event, body);
        self.flow.update(|s| {
            for e in &events {
                s.apply(e, now, tracker);
            }
        });
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    fn started(&self, f: &Families, a: &payload::Attendance, scrub: &Scrubber) {
        let mut book = self.book();
        let dept = book.departments.admit(a.department.as_deref(), scrub);
        let wait = a.wait_seconds();
        if let Some(w) = wait {
            f.wait.with_label_values(&[&self.name, &dept]).observe(w);
        }
        if let Some(n) = &a.number {
            book.open.start(n.clone(), wait.is_some());
        }
        f.open
            .with_label_values(&[&self.name])
            .set(book.open.len() as i64);
    }

    fn finished(&self, f: &Families, a: &payload::Attendance, scrub: &Scrubber) {
        let mut book = self.book();
        let dept = book.departments.admit(a.department.as_deref(), scrub);
        let opened = a.number.as_deref().and_then(|n| book.open.finish(n));
        if let Some(d) = a.duration_seconds() {
            f.duration
                .with_label_values(&[&self.name, &dept])
                .observe(d);
        }
        // The seed's startAttendance carries no requestTime, so the wait is usually seen here.
        if !opened.is_some_and(|o| o.wait_observed) {
            if let Some(w) = a.wait_seconds() {
                f.wait.with_label_values(&[&self.name, &dept]).observe(w);
            }
        }
        let mut categories: Vec<String> = Vec::new();
        for c in &a.categories {
            let label = book.categories.admit(Some(c), scrub);
            if !categories.contains(&label) {
                categories.push(label);
            }
        }
        if categories.is_empty() {
            categories.push(String::new());
        }
        for c in categories {
            f.attendances
                .with_label_values(&[&self.name, &dept, &c])
                .inc();
            book.pairs.insert((dept.clone(), c));
        }
        f.open
            .with_label_values(&[&self.name])
            .set(book.open.len() as i64);
    }

    /// The disconnection time is the callback's `momment`, or the time of receipt without one;
    /// a time in the future is not believed, and the gauge never goes back.
    fn disconnected(&self, f: &Families, body: &Value) {
        let now = crate::clock::unix_seconds(SystemTime::now());
        let told = payload::callbacks(body)
            .iter()
            .filter_map(|c| c.moment_ms)
            .max()
            .map(|ms| ms as f64 / 1000.0)
            .filter(|t| *t <= now + 300.0);
        let mut book = self.book();
        book.last_disconnect = book.last_disconnect.max(told.unwrap_or(now));
        f.last_disconnect
            .with_label_values(&[&self.name])
            .set(book.last_disconnect);
    }
}

/// Receives PlugChat webhooks for the configured accounts and keeps their metrics.
pub struct Receiver {
    families: Families,
    accounts: RwLock<HashMap<String, Arc<Account>>>,
    tracker: Arc<Tracker>,
    /// Webhooks for accounts not configured.
    unknown: AtomicU64,
}

impl Receiver {
    pub fn new(registry: &Registry, tracker: Arc<Tracker>) -> Result<Self, prometheus::Error> {
        Ok(Receiver {
            families: Families::new(registry)?,
            accounts: RwLock::new(HashMap::new()),
            tracker,
            unknown: AtomicU64::new(0),
        })
    }

    /// The message-flow series of every account, and the count of webhooks for accounts not
    /// configured (`gateway=""`), once any account is.
    pub fn fragments(&self) -> Vec<Arc<Fragment>> {
        let map = read(&self.accounts);
        let mut accounts: Vec<&Arc<Account>> = map.values().collect();
        accounts.sort_by(|a, b| a.state.name.cmp(&b.state.name));
        let mut out: Vec<Arc<Fragment>> =
            accounts.iter().map(|a| a.state.flow.fragment()).collect();
        if !map.is_empty() {
            let mut w = FragmentWriter::new(&[("gateway", ""), ("provider", PROVIDER)], &[]);
            let reason = Rejection::UnknownAccount.reason();
            let n = self.unknown.load(Ordering::Relaxed);
            w.sample(Family::WebhookRejected, &[("reason", reason)], n as f64);
            out.push(Arc::new(w.finish()));
        }
        out
    }

    /// Applies the configured accounts, at start and on every reload: new accounts start at 0,
    /// kept ones keep their counters (with the new secret), removed ones lose their series.
    pub fn configure(&self, accounts: &[PlugChatAccount]) {
        let mut map = write(&self.accounts);
        let mut next = HashMap::with_capacity(accounts.len());
        for a in accounts {
            let state = match map.get(&a.account) {
                Some(old) => old.state.clone(),
                None => {
                    self.families.initialise(&a.account);
                    Arc::new(AccountState::new(&a.account))
                }
            };
            let secret = a.secret.clone();
            next.insert(a.account.clone(), Arc::new(Account { secret, state }));
        }
        for (name, old) in map.iter() {
            if !next.contains_key(name) {
                self.families.remove(name, &old.state.book());
            }
        }
        *map = next;
    }

    /// Answers one webhook; the server routes every path under [`PATH_PREFIX`] here.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (account_name, event_name) = split_path(req.uri().path());
        let Some(account) = self.account(account_name) else {
            return self.refuse_unknown_account();
        };
        let state = &account.state;
        if !authorised(&account.secret, req.uri().query()) {
            return self.refuse(state, Rejection::Unauthorized);
        }
        if req.method() != Method::POST {
            return self.refuse(state, Rejection::MethodNotAllowed);
        }
        let Some(event) = Event::from_path(event_name) else {
            return self.refuse(state, Rejection::UnknownEvent);
        };
        if !inbound::json_content_type(req.headers()) {
            return self.refuse(state, Rejection::UnsupportedMediaType);
        }
        if inbound::declared_length(req.headers()).is_some_and(|n| n > MAX_BODY as u64) {
            return self.refuse(state, Rejection::TooLarge);
        }
        let body = match inbound::read_body(req.into_body(), MAX_BODY).await {
            Ok(b) => b,
            // No budget here (`Overloaded` cannot come): the secret was checked before the body.
            Err(BodyError::TooLarge | BodyError::Overloaded) => {
                return self.refuse(state, Rejection::TooLarge)
            }
            Err(BodyError::Broken) => return self.refuse(state, Rejection::InvalidJson),
            Err(BodyError::Timeout) => {
                crate::logging::debug_limited!(account = %state.name, "PlugChat webhook body did not arrive in time");
                return crate::respond::text(StatusCode::REQUEST_TIMEOUT, "body too slow\n");
            }
        };
        let value = match parse_body(&body) {
            Ok(v) => v,
            Err(e) => {
                crate::logging::warn_limited!(account = %state.name, event = event.name(), error = %crate::json::describe_error(&e), "PlugChat webhook is not JSON");
                return self.refuse(state, Rejection::InvalidJson);
            }
        };
        // The sender knows the secret and may write it into a department or category.
        let scrub = Scrubber::new([account.secret.expose()]);
        let accepted = self.while_configured(state, |s| {
            s.accept(&self.families, &self.tracker, event, &value, &scrub)
        });
        if !accepted {
            return self.refuse_unknown_account();
        }
        tracing::debug!(account = %state.name, event = event.name(), "PlugChat webhook accepted");
        ok()
    }

    /// `(account, accepted, rejected)` for the status page, by account name.
    pub fn summary(&self) -> Vec<(String, u64, u64)> {
        let map = read(&self.accounts);
        let mut out: Vec<_> = map
            .values()
            .map(|a| {
                let s = &a.state;
                (
                    s.name.clone(),
                    s.accepted.load(Ordering::Relaxed),
                    s.rejected.load(Ordering::Relaxed),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn account(&self, name: &str) -> Option<Arc<Account>> {
        let map = read(&self.accounts);
        map.get(name).cloned()
    }

    /// Runs `f` if the account is still configured, holding the accounts lock so that a reload
    /// cannot remove its series in between (they would come back, for an account that is gone).
    fn while_configured(&self, state: &Arc<AccountState>, f: impl FnOnce(&AccountState)) -> bool {
        let map = read(&self.accounts);
        let live = map
            .get(&state.name)
            .is_some_and(|a| Arc::ptr_eq(&a.state, state));
        if live {
            f(state);
        }
        live
    }

    fn refuse(&self, state: &Arc<AccountState>, why: Rejection) -> Response<Full<Bytes>> {
        if !self.while_configured(state, |s| s.reject(why)) {
            return self.refuse_unknown_account();
        }
        match why {
            Rejection::Unauthorized => {
                crate::logging::debug_limited!(account = %state.name, reason = why.reason(), "PlugChat webhook refused")
            }
            _ => {
                crate::logging::warn_limited!(account = %state.name, reason = why.reason(), "PlugChat webhook refused")
            }
        }
        why.answer()
    }

    fn refuse_unknown_account(&self) -> Response<Full<Bytes>> {
        let map = read(&self.accounts);
        if !map.is_empty() {
            self.unknown.fetch_add(1, Ordering::Relaxed);
        }
        crate::logging::debug_limited!(
            reason = Rejection::UnknownAccount.reason(),
            "PlugChat webhook refused"
        );
        Rejection::UnknownAccount.answer()
    }
}

/// The message-flow events of an accepted webhook: one named after the PlugChat event, so that
/// each webhook counts once, with the statuses, errors and received messages of every Z-API
/// callback it carries (the others unnamed).
fn flow_events(event: Event, body: &Value) -> Vec<flow::Event> {
    let callbacks: Vec<&Value> = match event {
        Event::StartAttendance | Event::FinishAttendance => Vec::new(),
        _ => payload::callback_values(body),
    };
    let mut out: Vec<flow::Event> = callbacks
        .iter()
        .map(|cb| callback_event(event, cb))
        .collect();
    if out.is_empty() {
        let mut e = flow::Event::named("");
        match event {
            Event::ReceiveMessage => e.received = 1,
            Event::MessageDeliveryError => {
                e.status = Some(MessageStatus::Failed);
                e.errors.push(flow::OTHER);
            }
            _ => {}
        }
        out.push(e);
    }
    out[0].name = event.name();
    out
}

fn callback_event(event: Event, cb: &Value) -> flow::Event {
    let s = |k: &str| cb.get(k).and_then(Value::as_str);
    let ids = || -> Vec<MessageKey> {
        match cb.get("ids") {
            Some(Value::Array(ids)) if !ids.is_empty() => ids
                .iter()
                .filter_map(|id| MessageKey::of_value(Some(id)))
                .collect(),
            _ => MessageKey::of_value(cb.get("messageId"))
                .into_iter()
                .collect(),
        }
    };
    let mut e = flow::Event::named("");
    e.timestamp = flow::unix_time(cb.get("momment").or_else(|| cb.get("moment")));
    match event {
        Event::MessageStatus => {
            e.status = s("status").map(|st| zapi::status(Some(st)));
            e.messages = ids();
        }
        Event::MessageDeliveryError => {
            e.status = Some(MessageStatus::Failed);
            e.errors.push(zapi::error_code(s("errorCode"), s("error")));
            e.messages = ids();
        }
        Event::SendingMessage => {
            e.accepted = true;
            e.messages = ids();
        }
        Event::ReceiveMessage => {
            let own = cb.get("fromMe").and_then(crate::json::boolean) == Some(true);
            e.received = u32::from(!own);
        }
        Event::WhenDisconnecting => e.connected = Some(false),
        _ => {}
    }
    e
}

/// `{account}` and `{event}` of a webhook path; one trailing slash is forgiven, and anything
/// deeper than the event makes an event that does not exist.
fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix(PATH_PREFIX).unwrap_or("");
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.split_once('/').unwrap_or((rest, ""))
}

/// Whether the first `secret` query parameter is the account's, compared in constant time (only
/// the length can leak, and secrets are at least 16 random characters).
fn authorised(secret: &Secret, query: Option<&str>) -> bool {
    inbound::query_secret_matches(secret, query, "secret")
}

/// The payload; an empty body is an event without details (the URL names the event), not an error.
fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
}

fn ok() -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_path("/webhooks/plugchat/store/messageStatus"),
            ("store", "messageStatus")
        );
        assert_eq!(
            split_path("/webhooks/plugchat/store/messageStatus/"),
            ("store", "messageStatus")
        );
        assert_eq!(split_path("/webhooks/plugchat/store"), ("store", ""));
        assert_eq!(split_path("/webhooks/plugchat/store/a/b"), ("store", "a/b"));
        assert_eq!(Event::from_path("a/b"), None);
        assert_eq!(
            Event::from_path("whenDisconnecting"),
            Some(Event::WhenDisconnecting)
        );
        assert_eq!(Event::from_path("whendisconnecting"), None);
    }

    #[test]
    fn secret_from_the_query() {
        let s = Secret::new("a+b/c=d&e 0123456789".into());
        let enc: String = form_urlencoded::byte_serialize(s.expose().as_bytes()).collect();
        assert!(authorised(&s, Some(&format!("x=1&secret={enc}"))));
        assert!(!authorised(&s, Some("secret=a+b/c=d&e 0123456789")));
        assert!(!authorised(&s, Some("secret=")));
        assert!(!authorised(&s, None));
        assert!(!authorised(&s, Some(&format!("secret=wrong&secret={enc}"))));
    }

    #[test]
    fn open_attendances_are_bounded_and_never_negative() {
        let mut open = OpenAttendances::default();
        assert!(open.finish("1").is_none());
        for n in 0..MAX_OPEN_ATTENDANCES + 5 {
            open.start(n.to_string(), false);
        }
        assert_eq!(open.len(), MAX_OPEN_ATTENDANCES);
        assert!(open.finish("0").is_none(), "the oldest were forgotten");
        assert!(open.finish("5").is_some());
        open.start("7".into(), true);
        assert_eq!(open.len(), MAX_OPEN_ATTENDANCES - 1, "a repeated start");
        assert!(open.finish("7").is_some_and(|o| o.wait_observed));
        assert_eq!(open.by_age.len(), open.by_number.len());
    }

    #[test]
    fn label_values_are_capped_and_sanitised() {
        let mut cap = LabelCap::default();
        let none = Scrubber::default();
        assert_eq!(cap.admit(None, &none), "");
        assert_eq!(cap.admit(Some("  Vendas\n"), &none), "Vendas");
        assert_eq!(cap.admit(Some(&"x".repeat(500)), &none), "x".repeat(64));
        // The account's secret, whole or in part, never becomes a label.
        let scrub = Scrubber::new(["secret-a-0123456789"]);
        assert_eq!(
            cap.admit(Some("Vendas 0123456789"), &scrub),
            "Vendas <redacted>"
        );
        for i in 0..100 {
            cap.admit(Some(&format!("dept {i}")), &none);
        }
        assert_eq!(cap.seen.len(), MAX_LABEL_VALUES);
        assert_eq!(cap.admit(Some("late"), &none), OTHER);
        assert_eq!(cap.admit(Some("Vendas"), &none), "Vendas");
        assert_eq!(sanitise("a\u{0}b\u{7f}c  \t "), "abc");
        assert_eq!(sanitise("Atendimento ção"), "Atendimento ção");
    }

    #[test]
    fn empty_body_is_an_event_without_details() {
        assert_eq!(parse_body(b"  \n").unwrap(), Value::Null);
        let e = parse_body(b"{\"phone\":\"5511999998888\"").unwrap_err();
        let told = crate::json::describe_error(&e);
        assert!(!told.contains("5511999998888"), "{told}");
        assert!(told.contains("line 1"), "{told}");
    }

    #[test]
    fn configure_keeps_counters_and_removes_series() {
        let reg = Registry::new();
        let rx = Receiver::new(&reg, Arc::default()).unwrap();
        let acc = |name: &str, secret: &str| PlugChatAccount {
            account: name.into(),
            secret: Secret::new(secret.into()),
        };
        rx.configure(&[
            acc("a", "secret-a-0123456789"),
            acc("b", "secret-b-0123456789"),
        ]);
        let a = rx.account("a").unwrap();
        a.state.accept(
            &rx.families,
            &rx.tracker,
            Event::MessageDeliveryError,
            &Value::Null,
            &Scrubber::default(),
        );
        let b = rx.account("b").unwrap();
        b.state.finished(
            &rx.families,
            &payload::Attendance {
                department: Some("Vendas".into()),
                categories: vec!["Trocas".into()],
                start_ms: Some(1_000_000_000_000),
                end_ms: Some(1_000_000_060_000),
                ..Default::default()
            },
            &Scrubber::default(),
        );
        rx.configure(&[acc("a", "secret-a-rotated-0123")]);
        let text = render(&reg);
        assert!(!text.contains("account=\"b\""), "{text}");
        assert!(text.contains("whatsapp_plugchat_delivery_errors_total{account=\"a\"} 1"));
        let flow = flow_text(&rx);
        assert!(flow.contains(
            "whatsapp_webhook_events_total{gateway=\"a\",provider=\"plugchat\",event=\"messageDeliveryError\"} 1"
        ), "{flow}");
        assert!(flow.contains(
            "whatsapp_message_errors_total{gateway=\"a\",provider=\"plugchat\",code=\"other\"} 1"
        ), "{flow}");
        assert!(!flow.contains("gateway=\"b\""), "{flow}");
        assert!(authorised(
            &rx.account("a").unwrap().secret,
            Some("secret=secret-a-rotated-0123")
        ));
        assert_eq!(rx.summary(), vec![("a".to_string(), 1, 0)]);
        rx.configure(&[]);
        assert!(!render(&reg).contains("whatsapp_plugchat"));
        assert!(flow_text(&rx).is_empty());
    }

    fn flow_text(rx: &Receiver) -> String {
        let frags = rx.fragments();
        let mut out = Vec::new();
        crate::exposition::render(&mut out, &[], frags.iter().map(|f| &**f)).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render(reg: &Registry) -> String {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&reg.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }
}
