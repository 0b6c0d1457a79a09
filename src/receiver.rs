//! The webhook receiver of every polled provider: `POST /webhooks/<gateway>` (Z-API, PlugzAPI,
//! Green API) and `GET`/`POST /webhooks/cloudapi/<app>` (one per Meta app, routed to gateways by
//! `metadata.phone_number_id`). It routes, authenticates, limits and counts; each provider's pure
//! parser (`providers::<name>::webhook`) reads the body.
//!
//! A gateway's webhook is checked in this order, each refusal counted in
//! `whatsapp_webhook_rejected_total` (gateway `""` when it names none) and changing nothing else:
//!
//! | check | answer | reason |
//! | --- | --- | --- |
//! | no such gateway (or it has no `webhooks:`), no such app | 404 | unknown_gateway |
//! | wrong or missing secret / bearer token | 401 | unauthorized |
//! | method other than POST (Cloud API: GET, POST) | 405 | method_not_allowed |
//! | `Content-Type` present and not JSON | 415 | unsupported_media_type |
//! | Cloud API: no `X-Hub-Signature-256`; WAHA with `hmac_key`: no `X-Webhook-Hmac`; either not a hex digest of the right length | 401 | bad_signature |
//! | body over the limit | 413 | too_large |
//! | Cloud API, WAHA with `hmac_key`: the shared budget of unauthenticated bodies is full | 503 | overloaded |
//! | Cloud API, WAHA: signature does not match the raw body | 401 | bad_signature |
//! | not JSON | 400 | invalid_json |
//! | nothing of the provider's shape | 422 | unknown_event |
//!
//! The Cloud API handshake (`GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C`) answers
//! `C` when `T` is the app's verify token, else 403 (`unauthorized`); it changes nothing, so a
//! replay is harmless. Nothing of the URL, the headers or the body is logged, and a refusal's log
//! line is rate-limited (a sender can repeat it at will).
//!
//! A body whose signature can be checked only once it is whole (Cloud API, WAHA with `hmac_key`)
//! is read under [`PUSH_BODY_BUDGET`], shared by every connection: a flood of large unsigned
//! bodies is refused with 503 once it holds the budget, on its declared length before a byte of
//! it is read, and a signature header that cannot be a digest is refused before the body too.
//! Meta and WAHA retry a 503.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::clock::unix_seconds;
use crate::config::{CloudApiApp, ProviderConfig, WebhookAuth};
use crate::exposition::{Family, Fragment, FragmentWriter};
use crate::flow::{CloudEvent, Event, MessageKey, Refused, Rejection, UNPARSED};
use crate::flow_state::Tracker;
use crate::gateway::Gateway;
use crate::inbound::{self, BodyBudget, BodyError, HeldBody};
use crate::labels::LabelSet;
use crate::provider::Provider;
use crate::providers::{self, cloudapi::webhook as cloud, greenapi, waha, zapi};
use crate::sync::{lock, read, write};

pub const PATH_PREFIX: &str = "/webhooks/";
pub const CLOUD_PREFIX: &str = "/webhooks/cloudapi/";
/// No Z-API or Green API callback comes near this.
pub const MAX_BODY: usize = 1 << 20;
/// Meta batches up to 1000 updates in one POST.
pub const MAX_CLOUD_BODY: usize = 4 << 20;
/// A gateway named by quality or account events is polled again at most this often.
pub const REPOLL_EVERY: Duration = Duration::from_secs(30);
/// Numbers and WABAs learned per app, for routing events that do not name a phone_number_id.
pub const MAX_LEARNED: usize = 10_000;
/// Re-polls waiting to run; more are dropped (the next scheduled poll comes anyway).
pub const REPOLL_QUEUE: usize = 256;
/// Bytes of the bodies being read before they can be authenticated, across every connection: four
/// of Meta's largest batches at once, and a small part of the 128 MiB the shipped deployments
/// allow the process.
pub const PUSH_BODY_BUDGET: usize = 16 << 20;
/// Characters of a handshake challenge echoed back (Meta sends a number).
const MAX_CHALLENGE: usize = 256;

mod servers;

type Answer = Response<Full<Bytes>>;

/// Receives the gateways' and Meta apps' webhooks.
pub struct Receiver {
    routes: RwLock<Arc<Routes>>,
    tracker: Arc<Tracker>,
    /// Webhooks for gateways or apps that are not configured.
    unknown: AtomicU64,
    repoll: mpsc::Sender<Arc<Gateway>>,
    repolled: Mutex<HashMap<String, Instant>>,
    /// The canaries that follow their messages in the events delivered here.
    canaries: OnceLock<Arc<crate::canary::Registry>>,
    /// What the bodies awaiting a signature check may hold, together.
    unauthenticated: BodyBudget,
}

#[derive(Default)]
struct Routes {
    /// Gateways with `webhooks:`, by name.
    gateways: HashMap<String, Arc<Gateway>>,
    apps: HashMap<String, Arc<App>>,
    /// Cloud API gateways by phone_number_id.
    numbers: HashMap<String, Vec<Arc<Gateway>>>,
}

/// A Meta app: its secrets, and what its webhooks said that no gateway took.
struct App {
    config: CloudApiApp,
    state: Arc<AppState>,
}

struct AppState {
    name: String,
    counters: Mutex<AppCounters>,
    dirty: AtomicBool,
    fragment: Mutex<Arc<Fragment>>,
}

#[derive(Default)]
struct AppCounters {
    rejected: [u64; Rejection::COUNT],
    events: [u64; cloud::EVENTS.len()],
    quality: [u64; cloud::QUALITY.len()],
    account: [u64; cloud::ACCOUNT.len()],
    template: [u64; cloud::TEMPLATE.len()],
    last_event: Option<f64>,
    /// The replay keys of the latest events no gateway took, and the repeats dropped.
    recent: crate::flow_state::RecentEvents,
    duplicates: u64,
    /// Display phone number (hashed) → phone_number_id.
    displays: HashMap<MessageKey, String>,
    /// WABA id → its phone_number_ids (a set: a body may name thousands).
    wabas: HashMap<String, std::collections::BTreeSet<String>>,
}

impl Receiver {
    /// `repoll` receives the gateways to poll now (a quality or account event named them).
    pub fn new(tracker: Arc<Tracker>) -> (Self, mpsc::Receiver<Arc<Gateway>>) {
        let (tx, rx) = mpsc::channel(REPOLL_QUEUE);
        let r = Receiver {
            routes: RwLock::new(Arc::default()),
            tracker,
            unknown: AtomicU64::new(0),
            repoll: tx,
            repolled: Mutex::new(HashMap::new()),
            canaries: OnceLock::new(),
            unauthenticated: BodyBudget::new(PUSH_BODY_BUDGET),
        };
        (r, rx)
    }

    /// Bytes of [`PUSH_BODY_BUDGET`] free now (for tests: everything comes back).
    pub fn body_budget_available(&self) -> usize {
        self.unauthenticated.available()
    }

    /// Lets the canaries see the events of every gateway delivered from now on.
    pub fn watch_canaries(&self, canaries: Arc<crate::canary::Registry>) {
        let _ = self.canaries.set(canaries);
    }

    /// Applies a configuration's gateways and apps; apps kept by name keep their counters.
    pub fn configure(&self, gateways: &[Arc<Gateway>], apps: &[CloudApiApp]) {
        let old = self.routes();
        let mut next = Routes::default();
        for gw in gateways {
            if gw.config.webhook_auth().is_some() {
                next.gateways.insert(gw.name().to_string(), gw.clone());
            }
            if let ProviderConfig::CloudApi(c) = &gw.config.settings {
                next.numbers
                    .entry(c.phone_number_id.clone())
                    .or_default()
                    .push(gw.clone());
            }
        }
        for a in apps {
            let state = match old.apps.get(&a.app) {
                Some(o) => o.state.clone(),
                None => Arc::new(AppState::new(&a.app)),
            };
            let app = App {
                config: a.clone(),
                state,
            };
            next.apps.insert(a.app.clone(), Arc::new(app));
        }
        let names: std::collections::HashSet<&str> = gateways.iter().map(|g| g.name()).collect();
        lock(&self.repolled).retain(|n, _| names.contains(n.as_str()));
        *write(&self.routes) = Arc::new(next);
    }

    fn routes(&self) -> Arc<Routes> {
        read(&self.routes).clone()
    }

    /// Every app's series, and the count of webhooks for nothing configured (once anything is).
    pub fn fragments(&self) -> Vec<Arc<Fragment>> {
        let routes = self.routes();
        let mut apps: Vec<&Arc<App>> = routes.apps.values().collect();
        apps.sort_by(|a, b| a.state.name.cmp(&b.state.name));
        let mut out: Vec<Arc<Fragment>> = apps.iter().map(|a| a.state.fragment()).collect();
        if !routes.gateways.is_empty() || !routes.apps.is_empty() {
            let mut w = FragmentWriter::new(&[("gateway", ""), ("provider", "")], &[]);
            let n = self.unknown.load(Ordering::Relaxed) as f64;
            let reason = Rejection::UnknownGateway.as_str();
            w.sample(Family::WebhookRejected, &[("reason", reason)], n);
            out.push(Arc::new(w.finish()));
        }
        out
    }

    /// Answers one webhook; the server routes every path under [`PATH_PREFIX`] but PlugChat's.
    pub async fn handle(&self, req: Request<Incoming>) -> Answer {
        let path = req.uri().path();
        if let Some(app) = path.strip_prefix(CLOUD_PREFIX) {
            let app = self.routes().apps.get(app).cloned();
            return match app {
                Some(app) => self.cloud(&app, req).await,
                None => self.unknown(),
            };
        }
        let name = path.strip_prefix(PATH_PREFIX).unwrap_or("");
        let gw = self.routes().gateways.get(name).cloned();
        match gw {
            Some(gw) => self.gateway(&gw, req).await,
            None => self.unknown(),
        }
    }

    fn unknown(&self) -> Answer {
        self.unknown.fetch_add(1, Ordering::Relaxed);
        crate::logging::debug_limited!(reason = "unknown_gateway", "webhook refused");
        answer(Rejection::UnknownGateway)
    }

    async fn gateway(&self, gw: &Arc<Gateway>, req: Request<Incoming>) -> Answer {
        let refuse = |why: Rejection| {
            gw.flow.update(|f| f.reject(why));
            log_refusal(gw.name(), why);
            answer(why)
        };
        let authorised = match gw.config.webhook_auth() {
            Some(WebhookAuth::UrlSecret(s)) => {
                inbound::query_secret_matches(s, req.uri().query(), "secret")
            }
            Some(WebhookAuth::Bearer(t)) => {
                inbound::bearer_matches(t, req.headers().get(header::AUTHORIZATION))
            }
            // The signature is checked against the body, once read.
            Some(WebhookAuth::HmacSha512(_)) => true,
            None => false,
        };
        if !authorised {
            return refuse(Rejection::Unauthorized);
        }
        if req.method() != Method::POST {
            return refuse(Rejection::MethodNotAllowed);
        }
        let hmac = match gw.config.webhook_auth() {
            Some(WebhookAuth::HmacSha512(key)) => {
                let sig = req.headers().get(waha::webhook::HMAC_HEADER).cloned();
                let Some(sig) =
                    sig.filter(|s| inbound::decode_hex::<64>(s.as_bytes().trim_ascii()).is_some())
                else {
                    return refuse(Rejection::BadSignature);
                };
                let algorithm = req
                    .headers()
                    .get(waha::webhook::HMAC_ALGORITHM_HEADER)
                    .cloned();
                Some((key, sig, algorithm))
            }
            _ => None,
        };
        let budget = hmac.is_some().then_some(&self.unauthenticated);
        let held = match read_json_body(req, MAX_BODY, budget).await {
            Ok(b) => b,
            Err(Some(why)) => return refuse(why),
            Err(None) => return too_slow(),
        };
        let body = &held.bytes;
        if let Some((key, sig, algorithm)) = hmac {
            let good = waha::webhook::hmac_matches(
                key.expose().as_bytes(),
                body,
                Some(sig.as_bytes()),
                algorithm.as_ref().map(HeaderValue::as_bytes),
            );
            if !good {
                return refuse(Rejection::BadSignature);
            }
        }
        let parsed = match gw.config.provider {
            Provider::PlugzApi | Provider::ZApi => zapi::webhook::parse(body),
            Provider::GreenApi => greenapi::webhook::parse(body),
            Provider::Evolution | Provider::Waha => {
                return match self.servers(gw, body) {
                    Ok(()) => ok(),
                    Err(r) => refuse(r.rejection()),
                };
            }
            Provider::Waba | Provider::CloudApi => Err(Refused::UnknownEvent),
        };
        match parsed {
            Ok(batch) => {
                self.deliver(gw, &batch.items, batch.unparsed);
                ok()
            }
            Err(r) => refuse(r.rejection()),
        }
    }

    /// Counts accepted events for a gateway, and lets what they say of the connection reach
    /// `whatsapp_connected`; whether each event was new, in order. A replay of an event that came
    /// lately changes nothing but the duplicates counted.
    fn deliver<'a>(
        &self,
        gw: &Gateway,
        events: impl IntoIterator<Item = &'a Event> + Clone,
        unparsed: u32,
    ) -> Vec<bool> {
        let now = unix_seconds(SystemTime::now());
        let fresh: Vec<bool> = gw
            .flow
            .update(|f| {
                let fresh = events
                    .clone()
                    .into_iter()
                    .map(|e| f.apply(e, now, &self.tracker))
                    .collect();
                if unparsed > 0 {
                    f.unparsed(unparsed);
                }
                fresh
            })
            .unwrap_or_else(|| events.clone().into_iter().map(|_| true).collect());
        let new: Vec<&Event> = events
            .into_iter()
            .zip(fresh.iter().copied())
            .filter_map(|(e, new)| new.then_some(e))
            .collect();
        if let Some(c) = self.canaries.get() {
            c.observe(gw.name(), new.iter().copied());
        }
        for e in new {
            if !speaks_of_now(gw, e.timestamp, now) {
                continue;
            }
            if e.connected == Some(false) {
                log_pushed_disconnection(gw.name(), e);
            }
            match (
                providers::pushed_observation(gw.config.provider, e),
                e.connected,
            ) {
                (Some(obs), _) => gw.push_observation(obs),
                (None, Some(c)) => gw.push_connected(c, e.timestamp),
                (None, None) => {}
            }
        }
        fresh
    }

    async fn cloud(&self, app: &App, req: Request<Incoming>) -> Answer {
        let state = &app.state;
        let refuse = |why: Rejection| {
            state.update(|c| c.rejected[why.index()] += 1);
            log_refusal(&state.name, why);
            answer(why)
        };
        match *req.method() {
            Method::GET => return self.handshake(app, req.uri().query()),
            Method::POST => {}
            _ => {
                let mut r = refuse(Rejection::MethodNotAllowed);
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
                return r;
            }
        }
        let signature = req.headers().get("x-hub-signature-256").cloned();
        let Some(signature) = signature.filter(|s| {
            let hex = s.as_bytes().strip_prefix(b"sha256=");
            hex.and_then(inbound::decode_hex::<32>).is_some()
        }) else {
            return refuse(Rejection::BadSignature);
        };
        let held = match read_json_body(req, MAX_CLOUD_BODY, Some(&self.unauthenticated)).await {
            Ok(b) => b,
            Err(Some(why)) => return refuse(why),
            Err(None) => return too_slow(),
        };
        match self.cloud_body(app, &held.bytes, signature.as_bytes()) {
            Ok(()) => ok(),
            Err(why) => refuse(why),
        }
    }

    /// A Cloud API POST body read whole: its signature checked, then parsed and routed.
    fn cloud_body(&self, app: &App, body: &[u8], signature: &[u8]) -> Result<(), Rejection> {
        let secret = app.config.app_secret.expose().as_bytes();
        if !cloud::signature_matches(secret, body, Some(signature)) {
            return Err(Rejection::BadSignature);
        }
        let parsed = cloud::parse(body).map_err(Refused::rejection)?;
        self.route_cloud(app, parsed);
        Ok(())
    }

    /// What a signed POST to `/webhooks/cloudapi/<app>` does once its body is read, without the
    /// HTTP around it (the benchmark measures this). A refusal is counted as the handler counts it.
    pub fn accept_cloud(&self, app: &str, body: &[u8], signature: &[u8]) -> Result<(), Rejection> {
        let Some(app) = self.routes().apps.get(app).cloned() else {
            self.unknown.fetch_add(1, Ordering::Relaxed);
            return Err(Rejection::UnknownGateway);
        };
        let r = self.cloud_body(&app, body, signature);
        if let Err(why) = r {
            app.state.update(|c| c.rejected[why.index()] += 1);
        }
        r
    }

    fn handshake(&self, app: &App, query: Option<&str>) -> Answer {
        let state = &app.state;
        let (mut mode, mut token, mut challenge) = (None, None, None);
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*k {
                "hub.mode" if mode.is_none() => mode = Some(v),
                "hub.verify_token" if token.is_none() => token = Some(v),
                "hub.challenge" if challenge.is_none() => challenge = Some(v),
                _ => {}
            }
        }
        let verified = mode.as_deref() == Some("subscribe")
            && token.is_some_and(|t| inbound::same_secret(t.as_bytes(), &app.config.verify_token));
        if !verified {
            state.update(|c| c.rejected[Rejection::Unauthorized.index()] += 1);
            log_refusal(&state.name, Rejection::Unauthorized);
            return crate::respond::text(StatusCode::FORBIDDEN, "verification failed\n");
        }
        let challenge = challenge.unwrap_or_default();
        let safe = !challenge.is_empty()
            && challenge.len() <= MAX_CHALLENGE
            && challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !safe {
            state.update(|c| c.rejected[Rejection::UnknownEvent.index()] += 1);
            return crate::respond::text(
                StatusCode::BAD_REQUEST,
                "hub.challenge is missing or malformed\n",
            );
        }
        tracing::info!(app = %state.name, "Cloud API webhook verified");
        crate::respond::text(StatusCode::OK, &challenge)
    }

    /// Routes each Cloud API event to the gateways it is about, else to the app's own series.
    fn route_cloud(&self, app: &App, parsed: cloud::Parsed) {
        let routes = self.routes();
        let state = &app.state;
        state.update(|c| {
            for l in &parsed.learned {
                c.learn(l);
            }
        });
        let now = unix_seconds(SystemTime::now());
        let mut by_gateway: Vec<(Arc<Gateway>, Vec<Event>)> = Vec::new();
        let mut repoll: Vec<Arc<Gateway>> = Vec::new();
        let mut unrouted: Vec<Event> = Vec::new();
        for item in parsed.batch.items {
            // Templates and other WABA-wide fields are the app's; quality and account events
            // are the numbers'.
            let urgent = matches!(
                item.event.cloud,
                Some(CloudEvent::Quality(_) | CloudEvent::Account(_))
            );
            let ids = state.read(|c| c.numbers_of(&item.to, urgent));
            let gateways: Vec<&Arc<Gateway>> = ids
                .iter()
                .filter_map(|id| routes.numbers.get(id))
                .flatten()
                .collect();
            if gateways.is_empty() {
                unrouted.push(item.event);
                continue;
            }
            for gw in gateways {
                if urgent && !repoll.iter().any(|g| Arc::ptr_eq(g, gw)) {
                    repoll.push(gw.clone());
                }
                match by_gateway.iter_mut().find(|(g, _)| Arc::ptr_eq(g, gw)) {
                    Some((_, list)) => list.push(item.event.clone()),
                    None => by_gateway.push((gw.clone(), vec![item.event.clone()])),
                }
            }
        }
        for (gw, events) in &by_gateway {
            self.deliver(gw, events, 0);
        }
        let unparsed = parsed.batch.unparsed;
        if !unrouted.is_empty() || unparsed > 0 {
            state.update(|c| {
                for e in &unrouted {
                    c.count(e, now);
                }
                if let Some(i) = cloud::EVENTS.iter().position(|e| *e == UNPARSED) {
                    c.events[i] += u64::from(unparsed);
                }
            });
        }
        // An account or quality event that names no known number may be about any of them.
        let unknown_urgent = unrouted.iter().any(|e| {
            matches!(
                e.cloud,
                Some(CloudEvent::Quality(_) | CloudEvent::Account(_))
            )
        });
        if unknown_urgent && repoll.is_empty() {
            repoll.extend(routes.numbers.values().flatten().cloned());
        }
        for gw in repoll {
            self.request_repoll(gw);
        }
    }

    fn request_repoll(&self, gw: Arc<Gateway>) {
        {
            let mut last = lock(&self.repolled);
            let now = Instant::now();
            if last
                .get(gw.name())
                .is_some_and(|t| now.duration_since(*t) < REPOLL_EVERY)
            {
                return;
            }
            last.insert(gw.name().to_string(), now);
        }
        // The poll, if it happens, tells itself (`scheduler::call`): the gap since the last call
        // may still turn it away.
        let _ = self.repoll.try_send(gw);
    }

    /// `(name, accepted events, rejected)` of each app, for the status page.
    pub fn summary(&self) -> Vec<(String, u64, u64)> {
        let routes = self.routes();
        let mut out: Vec<_> = routes
            .apps
            .values()
            .map(|a| {
                let (ev, rej) = a
                    .state
                    .read(|c| (c.events.iter().sum(), c.rejected.iter().sum()));
                (a.state.name.clone(), ev, rej)
            })
            .collect();
        out.sort();
        out
    }
}

impl AppState {
    fn new(name: &str) -> Self {
        AppState {
            name: name.to_string(),
            counters: Mutex::new(AppCounters::default()),
            dirty: AtomicBool::new(true),
            fragment: Mutex::new(Arc::new(Fragment::default())),
        }
    }

    fn update<R>(&self, f: impl FnOnce(&mut AppCounters) -> R) -> R {
        let r = f(&mut lock(&self.counters));
        self.dirty.store(true, Ordering::Release);
        r
    }

    fn read<R>(&self, f: impl FnOnce(&AppCounters) -> R) -> R {
        f(&lock(&self.counters))
    }

    fn fragment(&self) -> Arc<Fragment> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let mut w = FragmentWriter::new(&[("app", &self.name), ("provider", "cloudapi")], &[]);
            self.read(|c| c.write(&mut w));
            *lock(&self.fragment) = Arc::new(w.finish());
        }
        lock(&self.fragment).clone()
    }
}

impl AppCounters {
    fn learn(&mut self, l: &cloud::Learned) {
        if let Some(d) = l.display {
            if self.displays.len() < MAX_LEARNED || self.displays.contains_key(&d) {
                self.displays.insert(d, l.phone_number_id.clone());
            }
        }
        if let Some(w) = &l.waba {
            let full = self.wabas.len() >= MAX_LEARNED && !self.wabas.contains_key(w);
            if !full {
                let ids = self.wabas.entry(w.clone()).or_default();
                if ids.len() < MAX_LEARNED {
                    ids.insert(l.phone_number_id.clone());
                }
            }
        }
    }

    /// The phone_number_ids an event is about: its own, else (for an event about numbers) the
    /// number of its display phone number, else every number of its WABA.
    fn numbers_of(&self, to: &cloud::Target, about_numbers: bool) -> Vec<String> {
        if let Some(id) = &to.phone_number_id {
            return vec![id.clone()];
        }
        if !about_numbers {
            return Vec::new();
        }
        if let Some(id) = to.display.and_then(|d| self.displays.get(&d)) {
            return vec![id.clone()];
        }
        if to.display.is_none() || to.waba.is_some() {
            if let Some(ids) = to.waba.as_ref().and_then(|w| self.wabas.get(w)) {
                return ids.iter().cloned().collect();
            }
        }
        Vec::new()
    }

    fn count(&mut self, e: &Event, now: f64) {
        let bump = |counts: &mut [u64], list: &[&str], s: &str| {
            let i = list
                .iter()
                .position(|l| *l == s)
                .or_else(|| list.iter().position(|l| *l == crate::flow::OTHER));
            if let Some(c) = i.and_then(|i| counts.get_mut(i)) {
                *c += 1;
            }
        };
        if e.replay.is_some_and(|k| self.recent.seen(k)) {
            self.duplicates += 1;
            return;
        }
        bump(&mut self.events, &cloud::EVENTS, e.name);
        self.last_event = Some(self.last_event.map_or(now, |t| t.max(now)));
        match e.cloud {
            Some(CloudEvent::Quality(q)) => bump(&mut self.quality, &cloud::QUALITY, q),
            Some(CloudEvent::Account(a)) => bump(&mut self.account, &cloud::ACCOUNT, a),
            Some(CloudEvent::Template(t)) => bump(&mut self.template, &cloud::TEMPLATE, t),
            None => {}
        }
    }

    fn write(&self, w: &mut FragmentWriter) {
        for (e, n) in cloud::EVENTS.iter().zip(self.events) {
            w.sample(Family::WebhookEvents, &[("event", e)], n as f64);
        }
        for r in Rejection::PER_GATEWAY {
            let n = self.rejected[r.index()] as f64;
            w.sample(Family::WebhookRejected, &[("reason", r.as_str())], n);
        }
        if let Some(t) = self.last_event {
            w.sample(Family::WebhookLastEvent, &[], t);
        }
        w.sample(Family::WebhookDuplicates, &[], self.duplicates as f64);
        for (family, labels, counts) in [
            (
                Family::CloudQualityEvents,
                &cloud::QUALITY[..],
                &self.quality[..],
            ),
            (
                Family::CloudAccountEvents,
                &cloud::ACCOUNT[..],
                &self.account[..],
            ),
            (
                Family::CloudTemplateEvents,
                &cloud::TEMPLATE[..],
                &self.template[..],
            ),
        ] {
            for (e, n) in labels.iter().zip(counts) {
                w.sample(family, &[("event", e)], *n as f64);
            }
        }
    }
}

/// Reads a JSON body within limits: `Err(Some(reason))` to refuse, `Err(None)` when it did not
/// arrive in time.
async fn read_json_body(
    req: Request<Incoming>,
    max: usize,
    budget: Option<&BodyBudget>,
) -> Result<HeldBody, Option<Rejection>> {
    if !inbound::json_content_type(req.headers()) {
        return Err(Some(Rejection::UnsupportedMediaType));
    }
    let declared = inbound::declared_length(req.headers());
    match inbound::read_body_budgeted(req.into_body(), max, declared, budget).await {
        Ok(b) => Ok(b),
        Err(BodyError::TooLarge) => Err(Some(Rejection::TooLarge)),
        Err(BodyError::Broken) => Err(Some(Rejection::InvalidJson)),
        Err(BodyError::Overloaded) => Err(Some(Rejection::Overloaded)),
        Err(BodyError::Timeout) => Err(None),
    }
}

/// A refusal's answer; the words never name a gateway, a secret or anything of the body.
pub fn answer(why: Rejection) -> Answer {
    let (status, msg) = match why {
        Rejection::Unauthorized => (StatusCode::UNAUTHORIZED, "wrong or missing secret\n"),
        Rejection::BadSignature => (
            StatusCode::UNAUTHORIZED,
            "missing or wrong signature (X-Hub-Signature-256, X-Webhook-Hmac)\n",
        ),
        Rejection::InvalidJson => (StatusCode::BAD_REQUEST, "the body is not JSON\n"),
        Rejection::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "the body is too large\n"),
        Rejection::UnknownGateway => (StatusCode::NOT_FOUND, "Not Found\n"),
        Rejection::UnknownEvent => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "the body is not a webhook of this provider\n",
        ),
        Rejection::UnsupportedMediaType => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send Content-Type: application/json\n",
        ),
        Rejection::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "use POST\n"),
        Rejection::Overloaded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many webhook bodies at once, try again\n",
        ),
    };
    let mut r = crate::respond::text(status, msg);
    match why {
        Rejection::MethodNotAllowed => {
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        Rejection::Overloaded => {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    r
}

fn too_slow() -> Answer {
    crate::respond::text(StatusCode::REQUEST_TIMEOUT, "body too slow\n")
}

/// Whether what a push tells of the connection still holds: its time, when it gives one, can be
/// believed and is not older than the last successful poll, which saw what came after it. One
/// rule for everything a push says of the connection: an older push neither sets
/// `whatsapp_connected` nor counts in `whatsapp_disconnects_total` (it is counted as an event
/// only), so the two never tell different stories of one push.
pub(crate) fn speaks_of_now(gw: &Gateway, at: Option<f64>, now: f64) -> bool {
    at.is_none_or(|t| crate::flow::believable(t, now)) && gw.is_current(at)
}

/// One info line for a push that says the number is not connected (a disconnection, a logout,
/// WAHA's FAILED): its gateway, the provider's event and state, nothing the push carried else.
/// A sender may repeat such pushes at will, so the lines are limited as the refusals' are.
pub(crate) fn log_pushed_disconnection(gateway: &str, e: &Event) {
    static LIMITER: crate::logging::Limiter = crate::logging::Limiter::new();
    if let Some(suppressed) = LIMITER.allow() {
        let state = e.state.unwrap_or("");
        tracing::info!(
            suppressed,
            gateway,
            event = e.name,
            state,
            "pushed: the number is not connected"
        );
    }
}

fn log_refusal(name: &str, why: Rejection) {
    // Only a caller with the secret gets past the first checks: the later refusals are mistakes
    // of the provider's (or of whoever set the URL), worth a warning; the first may be scanners.
    // Either can be repeated at will by whoever sends them, so both are rate-limited.
    match why {
        Rejection::Unauthorized
        | Rejection::BadSignature
        | Rejection::UnknownGateway
        | Rejection::Overloaded => {
            crate::logging::debug_limited!(name = %name, reason = why.as_str(), "webhook refused")
        }
        _ => crate::logging::warn_limited!(name = %name, reason = why.as_str(), "webhook refused"),
    }
}

fn ok() -> Answer {
    let mut r = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
