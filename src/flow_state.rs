//! Message-flow state: what the pushes of one gateway (or PlugChat account) have said, counted
//! into the common families, and the one table that follows message ids from sent to delivered.
//!
//! The counters of a gateway sit in a [`Flow`], which renders them into their own fragment only
//! when a scrape finds them changed: at thousands of statuses a second, rendering on every event
//! would cost more than the events themselves.
//!
//! Pushes come again: a provider retries what it thinks was not received (Meta for up to 7
//! days), and a captured signed push can be replayed at will. An event whose provider id
//! ([`ReplayKey`]) came lately is dropped before anything counts it, by a window of the last
//! 2,048 to 4,096 keys per gateway, and counted as a duplicate. An event whose timestamp cannot
//! be believed ([`crate::flow::believable`]) counts, but its time does not: no lag, no delivery
//! time from it, no move of the last event's time.
//!
//! The [`Tracker`] is shared by every gateway and bounded as a whole: `max_tracked` ids for at
//! most `max_age`. Each gateway has its own table of ids in generations, each a hash map of
//! `(hashed id → sent time)`: an id goes into the newest, a delivered status takes it out of
//! whichever holds it, and a generation is dropped whole when its ids are all older than
//! `max_age`, or when the tracker is full and its gateway holds the most ids of all (each id
//! dropped counted as an eviction of its gateway). So a gateway loses ids only to age or while
//! it holds more than any other: a busy one can fill the table, but it then evicts its own ids,
//! never those of a quieter one. No id is stored, only its keyed hash; a tracked id costs about
//! 40 bytes (measured in the tests and the benchmark).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::config::NumberStateConfig;
use crate::exposition::{Family, Fragment, FragmentWriter, Histogram};
use crate::flow::{
    believable, CloudEvent, Event, FlowSpec, MessageStatus, Rejection, ReplayKey, UNPARSED,
};
use crate::labels::LabelSet;
use crate::number_state::{Problem, Problems};
use crate::sync::lock;

mod signs;

/// `whatsapp_webhook_lag_seconds`: seconds to a day (Meta retries for 36 hours).
pub static LAG_BUCKETS: [f64; 14] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0, 86400.0,
];
/// `whatsapp_message_delivery_seconds`.
pub static DELIVERY_BUCKETS: [f64; 15] = [
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21600.0,
    86400.0,
];

pub const DEFAULT_MAX_TRACKED: usize = 100_000;
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Generations of the tracker: the granularity of eviction.
const GENERATIONS: usize = 8;
/// The replay window keeps the keys of the latest 2,048 to 4,096 events of a gateway: a captured
/// push sent again and again is caught however fast it comes, and so is a provider's retry
/// unless thousands of other events came between. At most about 74 KiB per gateway, and nothing
/// for one that receives no pushes.
const REPLAY_HALF: usize = 2048;

/// The counters of one gateway's pushes.
#[derive(Debug)]
pub struct FlowState {
    spec: &'static FlowSpec,
    owner: Owner,
    events: Vec<u64>,
    rejected: [u64; Rejection::COUNT],
    statuses: [u64; MessageStatus::COUNT],
    received: u64,
    errors: Vec<u64>,
    last_event: Option<f64>,
    lag: Histogram,
    delivery: Histogram,
    quality: Vec<u64>,
    account: Vec<u64>,
    template: Vec<u64>,
    disconnects: Vec<u64>,
    recent: RecentEvents,
    duplicates: u64,
    untimely: u64,
    /// What the pushes tell of whether the number works.
    signs: signs::Signs,
}

type KeySet = HashSet<u64, BuildHasherDefault<IdentityHasher>>;

/// The replay keys of a gateway's latest events, in two halves: when the newer is full, the
/// older is forgotten whole, so both lookups and memory stay bounded.
#[derive(Debug, Default)]
pub(crate) struct RecentEvents {
    newer: KeySet,
    older: KeySet,
}

impl RecentEvents {
    /// Whether `key` came lately; it is remembered either way.
    pub(crate) fn seen(&mut self, key: ReplayKey) -> bool {
        if self.newer.contains(&key.0) || self.older.contains(&key.0) {
            return true;
        }
        if self.newer.len() >= REPLAY_HALF {
            // The older half's allocation serves again as the newer.
            std::mem::swap(&mut self.newer, &mut self.older);
            self.newer.clear();
        }
        self.newer.insert(key.0);
        false
    }
}

/// Which gateway sent an id: `seed` names its table in the shared tracker, where its evictions
/// are counted.
#[derive(Debug, Clone)]
pub struct Owner {
    seed: u64,
    evicted: Arc<AtomicU64>,
}

impl Owner {
    /// `seed` is best a stable hash of the gateway's name: a gateway whose configuration changed
    /// keeps matching the ids it sent before.
    pub fn new(seed: u64) -> Self {
        Owner {
            seed,
            evicted: Arc::default(),
        }
    }

    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }
}

fn index(list: &[&str], s: &str) -> Option<usize> {
    list.iter().position(|l| *l == s)
}

fn bump(counts: &mut [u64], list: &[&str], s: &str) {
    let i = index(list, s).or_else(|| index(list, crate::flow::OTHER));
    if let Some(c) = i.and_then(|i| counts.get_mut(i)) {
        *c += 1;
    }
}

impl FlowState {
    pub fn new(spec: &'static FlowSpec, owner: Owner) -> Self {
        let cloud = |f: fn(&crate::flow::CloudSpec) -> &'static [&'static str]| {
            vec![0; spec.cloud.as_ref().map_or(0, |c| f(c).len())]
        };
        FlowState {
            spec,
            owner,
            events: vec![0; spec.events.len()],
            rejected: [0; Rejection::COUNT],
            statuses: [0; MessageStatus::COUNT],
            received: 0,
            errors: vec![0; spec.codes.len()],
            last_event: None,
            lag: Histogram::new(&LAG_BUCKETS),
            delivery: Histogram::new(&DELIVERY_BUCKETS),
            quality: cloud(|c| c.quality),
            account: cloud(|c| c.account),
            template: cloud(|c| c.template),
            disconnects: vec![0; spec.disconnects.len()],
            recent: RecentEvents::default(),
            duplicates: 0,
            untimely: 0,
            signs: signs::Signs::default(),
        }
    }

    pub fn spec(&self) -> &'static FlowSpec {
        self.spec
    }

    /// What the pushes tell of the number at `now`.
    pub fn number_evidence(
        &self,
        now: f64,
        cfg: &NumberStateConfig,
        tracker: &Tracker,
    ) -> PushEvidence {
        let (mut problems, positive) = self.signs.evidence(now, self.last_event, cfg);
        let cutoff = now - cfg.acks_stuck_after.as_secs_f64();
        let unacknowledged = tracker.unacknowledged(&self.owner, cutoff);
        if unacknowledged > 0 && self.signs.gets_acks() {
            problems.add(Problem::AcksStuck);
        }
        PushEvidence {
            problems,
            positive,
            unacknowledged,
            last_event: self.last_event,
            delivered_last_hour: self.signs.delivered_last_hour(now),
        }
    }

    /// Counts one accepted event that arrived at `now` (Unix seconds); false, counting nothing
    /// but a duplicate, when the same event came lately (its replay key). An event with an empty
    /// name adds its statuses, errors and messages without counting as an event (one PlugChat
    /// webhook can carry several callbacks).
    pub fn apply(&mut self, ev: &Event, now: f64, tracker: &Tracker) -> bool {
        if ev.replay.is_some_and(|k| self.recent.seen(k)) {
            self.duplicates += 1;
            return false;
        }
        if !ev.name.is_empty() {
            bump(&mut self.events, self.spec.events, ev.name);
        }
        self.signs.see(ev, now);
        let timestamp = self.believed(ev.timestamp, now);
        // An event that cannot be placed in time tells nothing of how fresh the feed is.
        if timestamp.is_some() || ev.timestamp.is_none() {
            self.last_event = Some(self.last_event.map_or(now, |t| t.max(now)));
        }
        if let Some(ts) = timestamp {
            self.lag.observe((now - ts).max(0.0));
        }
        let at = timestamp.unwrap_or(now);
        if let Some(s) = ev.status {
            self.statuses[s.index()] += ev.messages.len().max(1) as u64;
        }
        match ev.status {
            Some(MessageStatus::Sent) => self.track(ev, at, now, tracker),
            None if ev.accepted => self.track(ev, at, now, tracker),
            Some(MessageStatus::Delivered | MessageStatus::Read | MessageStatus::Played) => {
                for m in &ev.messages {
                    if let Some(sent) = tracker.take(&self.owner, m.0) {
                        self.delivery.observe((at - sent).max(0.0));
                    }
                }
            }
            Some(MessageStatus::Failed) => {
                for m in &ev.messages {
                    tracker.take(&self.owner, m.0);
                }
            }
            _ => {}
        }
        for code in &ev.errors {
            bump(&mut self.errors, self.spec.codes, code);
        }
        self.received += u64::from(ev.received);
        if let (Some(c), Some(spec)) = (ev.cloud, self.spec.cloud.as_ref()) {
            match c {
                CloudEvent::Quality(e) => bump(&mut self.quality, spec.quality, e),
                CloudEvent::Account(e) => bump(&mut self.account, spec.account, e),
                CloudEvent::Template(e) => bump(&mut self.template, spec.template, e),
            }
        }
        true
    }

    /// The provider's timestamp, when it can be believed; one that cannot is counted.
    fn believed(&mut self, timestamp: Option<f64>, now: f64) -> Option<f64> {
        let ts = timestamp?;
        if believable(ts, now) {
            return Some(ts);
        }
        self.untimely += 1;
        None
    }

    /// A repeated event caught before it reached the counters (the Green API queue's receipts).
    pub fn duplicate(&mut self) {
        self.duplicates += 1;
    }

    fn track(&self, ev: &Event, at: f64, now: f64, tracker: &Tracker) {
        for m in &ev.messages {
            tracker.sent(&self.owner, m.0, at, now);
        }
    }

    /// A pushed disconnection, by its reason code (from the spec's `disconnects`, else other).
    pub fn disconnected(&mut self, code: &str) {
        bump(&mut self.disconnects, self.spec.disconnects, code);
        let now = crate::clock::unix_seconds(std::time::SystemTime::now());
        self.signs.disconnected(code, now);
    }

    /// Entries of an accepted batch that could not be read.
    pub fn unparsed(&mut self, n: u32) {
        if let Some(i) = index(self.spec.events, UNPARSED) {
            self.events[i] += u64::from(n);
        }
    }

    pub fn reject(&mut self, why: Rejection) {
        self.rejected[why.index()] += 1;
        self.signs
            .rejected(crate::clock::unix_seconds(std::time::SystemTime::now()));
    }

    pub fn last_event(&self) -> Option<f64> {
        self.last_event
    }

    /// Accepted events, all names together.
    pub fn events_total(&self) -> u64 {
        self.events.iter().sum()
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.iter().sum()
    }

    pub fn write(&self, w: &mut FragmentWriter) {
        for (name, n) in self.spec.events.iter().zip(&self.events) {
            w.sample(Family::WebhookEvents, &[("event", name)], *n as f64);
        }
        for r in Rejection::PER_GATEWAY {
            let n = self.rejected[r.index()];
            w.sample(Family::WebhookRejected, &[("reason", r.as_str())], n as f64);
        }
        if let Some(t) = self.last_event {
            w.sample(Family::WebhookLastEvent, &[], t);
        }
        w.histogram(Family::WebhookLag, &[], &self.lag);
        w.sample(Family::WebhookDuplicates, &[], self.duplicates as f64);
        w.sample(Family::WebhookTimestampRejected, &[], self.untimely as f64);
        for (s, n) in MessageStatus::LABELS.iter().zip(self.statuses) {
            w.sample(Family::MessageStatuses, &[("status", s)], n as f64);
        }
        w.sample(Family::MessagesReceived, &[], self.received as f64);
        for (code, n) in self.spec.codes.iter().zip(&self.errors) {
            w.sample(Family::MessageErrors, &[("code", code)], *n as f64);
        }
        w.histogram(Family::MessageDelivery, &[], &self.delivery);
        w.sample(Family::TrackingEvictions, &[], self.owner.evicted() as f64);
        for (code, n) in self.spec.disconnects.iter().zip(&self.disconnects) {
            w.sample(Family::Disconnects, &[("code", code)], *n as f64);
        }
        if let Some(spec) = &self.spec.cloud {
            for (family, labels, counts) in [
                (Family::CloudQualityEvents, spec.quality, &self.quality),
                (Family::CloudAccountEvents, spec.account, &self.account),
                (Family::CloudTemplateEvents, spec.template, &self.template),
            ] {
                for (e, n) in labels.iter().zip(counts) {
                    w.sample(family, &[("event", e)], *n as f64);
                }
            }
        }
    }
}

/// What a number's pushes tell of whether it works.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PushEvidence {
    pub problems: Problems,
    /// A delivered, read or played status, or a received message, inside `evidence_window`.
    pub positive: bool,
    /// Sent messages waiting for an acknowledgement past `acks_stuck_after` (stuck, when the
    /// number usually gets them).
    pub unacknowledged: u64,
    /// Arrival of the latest event (Unix seconds).
    pub last_event: Option<f64>,
    pub delivered_last_hour: u64,
}

/// A gateway's message-flow counters and their rendered series; inactive (no series) until the
/// gateway receives pushes.
pub struct Flow {
    /// Its labels, escaped once: one allocation per gateway.
    labels: Box<str>,
    /// Boxed: most gateways receive no pushes, and an empty box costs a pointer where the state
    /// would cost its size (about 400 bytes) in every gateway.
    state: Mutex<Option<Box<FlowState>>>,
    fragment: Mutex<Arc<Fragment>>,
    dirty: AtomicBool,
    /// The evictions last rendered: they change without an event of this gateway.
    evicted_rendered: AtomicU64,
}

impl Flow {
    pub fn new(labels: &[(&'static str, &str)]) -> Self {
        Flow {
            labels: crate::exposition::escaped_labels(labels).into_boxed_str(),
            state: Mutex::new(None),
            fragment: Mutex::new(Arc::new(Fragment::default())),
            dirty: AtomicBool::new(false),
            evicted_rendered: AtomicU64::new(0),
        }
    }

    /// Starts counting with `spec`; counters already kept with the same spec stay.
    pub fn activate(&self, spec: &'static FlowSpec, owner: impl FnOnce() -> Owner) {
        let mut st = lock(&self.state);
        if st.as_ref().is_some_and(|s| std::ptr::eq(s.spec, spec)) {
            return;
        }
        *st = Some(Box::new(FlowState::new(spec, owner())));
        self.dirty.store(true, Ordering::Release);
    }

    /// Stops counting: the series go.
    pub fn deactivate(&self) {
        if lock(&self.state).take().is_some() {
            self.dirty.store(true, Ordering::Release);
        }
    }

    pub fn is_active(&self) -> bool {
        lock(&self.state).is_some()
    }

    /// Changes the counters, if active.
    pub fn update<R>(&self, f: impl FnOnce(&mut FlowState) -> R) -> Option<R> {
        let r = lock(&self.state).as_deref_mut().map(f);
        if r.is_some() {
            self.dirty.store(true, Ordering::Release);
        }
        r
    }

    /// Reads the counters, if active.
    pub fn read<R>(&self, f: impl FnOnce(&FlowState) -> R) -> Option<R> {
        lock(&self.state).as_deref().map(f)
    }

    /// The series, rendered again only when something changed since the last time.
    pub fn fragment(&self) -> Arc<Fragment> {
        let evicted = self.read(|s| s.owner.evicted()).unwrap_or(0);
        let stale = self.evicted_rendered.swap(evicted, Ordering::Relaxed) != evicted;
        if self.dirty.swap(false, Ordering::AcqRel) || stale {
            let mut w = FragmentWriter::with_escaped(self.labels.to_string(), &[]);
            let active = self.read(|s| s.write(&mut w)).is_some();
            let frag = if active {
                w.finish()
            } else {
                Fragment::default()
            };
            *lock(&self.fragment) = Arc::new(frag);
        }
        lock(&self.fragment).clone()
    }
}

/// Limits of the tracker, from `webhooks.message_tracking`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// 0 turns tracking off.
    pub max_tracked: usize,
    pub max_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_tracked: DEFAULT_MAX_TRACKED,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// Keys are keyed hashes already: hashing them again would only cost time.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A sent time, in milliseconds from its generation's start (a provider's clock can be behind
/// ours: negative is fine).
type IdMap = HashMap<u64, i32, BuildHasherDefault<IdentityHasher>>;

struct Generation {
    /// Unix seconds when it became the newest.
    started: f64,
    /// When its latest id went in.
    latest: f64,
    ids: IdMap,
}

/// The ids one gateway follows, oldest generation first.
struct Table {
    generations: VecDeque<Generation>,
    len: usize,
    /// The evictions counter of the gateway's latest [`Owner`] (a reload makes a new one).
    evicted: Weak<AtomicU64>,
}

/// Message ids followed from sent to delivered, for every gateway together.
pub struct Tracker {
    inner: Mutex<Inner>,
}

struct Inner {
    limits: Limits,
    /// By the owner's seed; a gateway that follows no id has no table.
    tables: HashMap<u64, Table, BuildHasherDefault<IdentityHasher>>,
    len: usize,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(Limits::default())
    }
}

impl Tracker {
    pub fn new(limits: Limits) -> Self {
        Tracker {
            inner: Mutex::new(Inner {
                limits,
                tables: HashMap::default(),
                len: 0,
            }),
        }
    }

    /// New limits (a reload); a smaller table evicts at the next sent id.
    pub fn set_limits(&self, limits: Limits) {
        let mut t = lock(&self.inner);
        if t.limits != limits {
            t.limits = limits;
            if limits.max_tracked == 0 {
                while t.evict_from_largest() {}
            }
        }
    }

    /// Follows an id sent at `at` (Unix seconds), seen at `now`; one already followed keeps its
    /// first time (a retried webhook).
    pub fn sent(&self, owner: &Owner, key: u64, at: f64, now: f64) {
        let mut t = lock(&self.inner);
        let limits = t.limits;
        if limits.max_tracked == 0 {
            return;
        }
        let per = limits.max_tracked.div_ceil(GENERATIONS).max(1);
        let table = t.tables.entry(owner.seed).or_insert_with(|| Table {
            generations: VecDeque::new(),
            len: 0,
            evicted: Weak::new(),
        });
        if table.evicted.as_ptr() != Arc::as_ptr(&owner.evicted) {
            table.evicted = Arc::downgrade(&owner.evicted);
        }
        if table.holds(key) {
            return;
        }
        let expired = table.expire(now, limits.max_age);
        let started = table.start_generation(now, per, limits.max_age);
        let Some(newest) = table.generations.back_mut() else {
            return;
        };
        let offset_ms = ((at - newest.started) * 1000.0)
            .round()
            .clamp(i32::MIN as f64, i32::MAX as f64);
        newest.ids.insert(key, offset_ms as i32);
        newest.latest = newest.latest.max(now);
        table.len += 1;
        t.len = t.len + 1 - expired;
        if started {
            t.expire(now);
        }
        while t.len > limits.max_tracked && t.evict_from_largest() {}
    }

    /// Stops following an id of `owner`; its sent time, when it was followed.
    /// How many ids of `owner` were sent before `cutoff` (Unix seconds) and are still waiting.
    pub fn unacknowledged(&self, owner: &Owner, cutoff: f64) -> u64 {
        let t = lock(&self.inner);
        let Some(table) = t.tables.get(&owner.seed) else {
            return 0;
        };
        let mut n = 0u64;
        for g in &table.generations {
            if g.latest < cutoff {
                n += g.ids.len() as u64;
            } else if g.started < cutoff {
                let before = |ms: &i32| g.started + f64::from(*ms) / 1000.0 < cutoff;
                n += g.ids.values().filter(|ms| before(ms)).count() as u64;
            }
        }
        n
    }

    pub fn take(&self, owner: &Owner, key: u64) -> Option<f64> {
        let mut t = lock(&self.inner);
        let table = t.tables.get_mut(&owner.seed)?;
        let (i, sent) = table
            .generations
            .iter_mut()
            .enumerate()
            .rev()
            .find_map(|(i, g)| {
                g.ids
                    .remove(&key)
                    .map(|ms| (i, g.started + f64::from(ms) / 1000.0))
            })?;
        table.len -= 1;
        let newest = i + 1 == table.generations.len();
        if table.len == 0 {
            t.tables.remove(&owner.seed);
        } else if !newest && table.generations[i].ids.is_empty() {
            table.generations.remove(i);
        }
        t.len -= 1;
        Some(sent)
    }

    /// Ids followed now.
    pub fn len(&self) -> usize {
        lock(&self.inner).len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of `owner` followed now.
    pub fn held_by(&self, owner: &Owner) -> usize {
        lock(&self.inner)
            .tables
            .get(&owner.seed)
            .map_or(0, |t| t.len)
    }

    /// The heap the table holds, counted from the capacity of its maps.
    pub fn heap_bytes(&self) -> usize {
        let t = lock(&self.inner);
        let bucket = std::mem::size_of::<(u64, i32)>() + 1;
        t.tables
            .values()
            .flat_map(|t| &t.generations)
            .map(|g| g.ids.capacity() * bucket * 8 / 7)
            .sum()
    }
}

impl Table {
    fn holds(&self, key: u64) -> bool {
        self.generations.iter().any(|g| g.ids.contains_key(&key))
    }

    /// Starts a new newest generation when the newest is full or old; true when one was started.
    fn start_generation(&mut self, now: f64, per: usize, max_age: Duration) -> bool {
        let span = max_age.as_secs_f64() / GENERATIONS as f64;
        let fresh = self
            .generations
            .back()
            .is_some_and(|g| g.ids.len() < per && now - g.started < span);
        if !fresh {
            self.generations.push_back(Generation {
                // Whole milliseconds, so that the offsets keep times exactly to the millisecond.
                started: (now * 1000.0).floor() / 1000.0,
                latest: now,
                // Grown as ids come: most gateways follow a few ids at a time.
                ids: IdMap::default(),
            });
        }
        !fresh
    }

    /// Drops the generations whose every id is older than `max_age`; the ids dropped.
    fn expire(&mut self, now: f64, max_age: Duration) -> usize {
        let max_age = max_age.as_secs_f64();
        let mut dropped = 0;
        while self
            .generations
            .front()
            .is_some_and(|g| now - g.latest > max_age)
        {
            dropped += self.drop_oldest();
        }
        dropped
    }

    /// Drops the oldest generation, counting its ids as evictions; the ids dropped.
    fn drop_oldest(&mut self) -> usize {
        let Some(g) = self.generations.pop_front() else {
            return 0;
        };
        let n = g.ids.len();
        self.len -= n;
        if let Some(c) = self.evicted.upgrade() {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
        n
    }
}

impl Inner {
    /// Every table's too old ids go, and the tables left empty.
    fn expire(&mut self, now: f64) {
        let max_age = self.limits.max_age;
        let mut dropped = 0;
        self.tables.retain(|_, t| {
            dropped += t.expire(now, max_age);
            !t.generations.is_empty()
        });
        self.len -= dropped;
    }

    /// Drops the oldest generation of the gateway that holds the most ids; false when none is
    /// left.
    fn evict_from_largest(&mut self) -> bool {
        let Some((&seed, table)) = self.tables.iter_mut().max_by_key(|(_, t)| t.len) else {
            return false;
        };
        self.len -= table.drop_oldest();
        if table.generations.is_empty() {
            self.tables.remove(&seed);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{CloudSpec, MessageKey, OTHER};

    static EVENTS: [&str; 4] = ["status", "message", OTHER, UNPARSED];
    static CODES: [&str; 2] = ["131048", OTHER];
    static SPEC: FlowSpec = FlowSpec {
        events: &EVENTS,
        codes: &CODES,
        cloud: None,
        disconnects: &[],
    };
    static CLOUD: FlowSpec = FlowSpec {
        events: &EVENTS,
        codes: &CODES,
        cloud: Some(CloudSpec {
            quality: &["FLAGGED", OTHER],
            account: &["ACCOUNT_RESTRICTION", OTHER],
            template: &["APPROVED", OTHER],
        }),
        disconnects: &[],
    };

    fn status(s: MessageStatus, id: &str, ts: f64) -> Event {
        Event {
            name: "status",
            timestamp: Some(ts),
            status: Some(s),
            messages: vec![MessageKey::of(id).unwrap()],
            ..Default::default()
        }
    }

    fn render(f: &FlowState) -> String {
        let mut w = FragmentWriter::new(&[("gateway", "g")], &[]);
        f.write(&mut w);
        let frag = w.finish();
        let mut out = Vec::new();
        crate::exposition::render(&mut out, &[], std::iter::once(&frag)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn sent_to_delivered_and_out_of_order() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&SPEC, Owner::new(1));
        let t0 = 1_750_000_000.0;
        f.apply(&status(MessageStatus::Sent, "a", t0), t0 + 1.0, &tracker);
        f.apply(
            &status(MessageStatus::Sent, "a", t0 + 5.0),
            t0 + 6.0,
            &tracker,
        );
        assert_eq!(tracker.len(), 1, "a retried sent is one id");
        f.apply(
            &status(MessageStatus::Delivered, "a", t0 + 3.0),
            t0 + 4.0,
            &tracker,
        );
        assert_eq!(f.delivery.count(), 1);
        assert!(render(&f).contains("whatsapp_message_delivery_seconds_sum{gateway=\"g\"} 3\n"));
        // Read after delivered: no second observation.
        f.apply(
            &status(MessageStatus::Read, "a", t0 + 9.0),
            t0 + 9.0,
            &tracker,
        );
        assert_eq!(f.delivery.count(), 1);
        // Read before delivered (read at once): observed at read, the late delivered is not.
        f.apply(&status(MessageStatus::Sent, "b", t0), t0, &tracker);
        f.apply(
            &status(MessageStatus::Read, "b", t0 + 2.0),
            t0 + 2.0,
            &tracker,
        );
        f.apply(
            &status(MessageStatus::Delivered, "b", t0 + 1.0),
            t0 + 3.0,
            &tracker,
        );
        assert_eq!(f.delivery.count(), 2);
        // Delivered, never sent: counted as a status, no delivery time.
        f.apply(&status(MessageStatus::Delivered, "c", t0), t0, &tracker);
        assert_eq!(f.delivery.count(), 2);
        assert!(tracker.is_empty());
        let text = render(&f);
        assert!(
            text.contains("whatsapp_message_status_total{gateway=\"g\",status=\"sent\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("whatsapp_message_status_total{gateway=\"g\",status=\"delivered\"} 3\n")
        );
        assert!(text.contains("whatsapp_message_status_total{gateway=\"g\",status=\"failed\"} 0\n"));
    }

    #[test]
    fn lag_events_errors_and_last_event() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&SPEC, Owner::new(1));
        let now = 1_750_000_600.0;
        let mut late = status(MessageStatus::Failed, "x", now - 600.0);
        late.errors = vec!["131048", "999"];
        f.apply(&late, now, &tracker);
        f.apply(&Event::named("never heard of"), now - 10.0, &tracker);
        f.unparsed(2);
        f.reject(Rejection::BadSignature);
        let text = render(&f);
        for line in [
            "whatsapp_webhook_lag_seconds_bucket{gateway=\"g\",le=\"300\"} 0\n",
            "whatsapp_webhook_lag_seconds_bucket{gateway=\"g\",le=\"600\"} 1\n",
            "whatsapp_message_errors_total{gateway=\"g\",code=\"131048\"} 1\n",
            "whatsapp_message_errors_total{gateway=\"g\",code=\"other\"} 1\n",
            "whatsapp_webhook_events_total{gateway=\"g\",event=\"other\"} 1\n",
            "whatsapp_webhook_events_total{gateway=\"g\",event=\"unparsed\"} 2\n",
            "whatsapp_webhook_rejected_total{gateway=\"g\",reason=\"bad_signature\"} 1\n",
            "whatsapp_webhook_last_event_timestamp_seconds{gateway=\"g\"} 1750000600\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        assert!(!text.contains("reason=\"unknown_gateway\""));
        assert!(!text.contains("cloudapi"), "no Cloud API families here");
    }

    #[test]
    fn cloud_events() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&CLOUD, Owner::new(1));
        let mut e = Event::named("status");
        e.cloud = Some(CloudEvent::Quality("FLAGGED"));
        f.apply(&e, 1.0, &tracker);
        e.cloud = Some(CloudEvent::Account("NEW"));
        f.apply(&e, 1.0, &tracker);
        let text = render(&f);
        assert!(text.contains(
            "whatsapp_cloudapi_quality_events_total{gateway=\"g\",event=\"FLAGGED\"} 1\n"
        ));
        assert!(text
            .contains("whatsapp_cloudapi_account_events_total{gateway=\"g\",event=\"other\"} 1\n"));
        assert!(text.contains(
            "whatsapp_cloudapi_template_events_total{gateway=\"g\",event=\"APPROVED\"} 0\n"
        ));
    }

    #[test]
    fn the_table_is_bounded_in_size_and_age() {
        let tracker = Tracker::new(Limits {
            max_tracked: 800,
            max_age: Duration::from_secs(800),
        });
        let owner = Owner::new(7);
        let t0 = 1_750_000_000.0;
        for i in 0..2000u64 {
            tracker.sent(&owner, i, t0, t0);
        }
        assert!(
            tracker.len() <= 800 && tracker.len() > 600,
            "{}",
            tracker.len()
        );
        assert_eq!(owner.evicted() as usize + tracker.len(), 2000);
        // Much later every id is too old.
        tracker.sent(&owner, 5000, t0 + 1000.0, t0 + 1000.0);
        tracker.sent(&owner, 5001, t0 + 1200.0, t0 + 1200.0);
        assert_eq!(tracker.len(), 2, "only the fresh ones");
        assert_eq!(owner.evicted(), 2000);
        assert_eq!(tracker.take(&owner, 5000), Some(t0 + 1000.0));
        tracker.set_limits(Limits {
            max_tracked: 0,
            max_age: DEFAULT_MAX_AGE,
        });
        assert!(tracker.is_empty());
        tracker.sent(&owner, 1, t0, t0);
        assert!(tracker.is_empty(), "off");
    }

    #[test]
    fn a_tracked_id_costs_at_most_128_bytes() {
        let max = 100_000;
        let tracker = Tracker::new(Limits {
            max_tracked: max,
            max_age: DEFAULT_MAX_AGE,
        });
        let owner = Owner::new(1);
        for i in 0..max as u64 {
            let k = MessageKey::of(&format!("wamid.{i}")).unwrap();
            tracker.sent(&owner, k.0, 1.0e9, 1.0e9);
        }
        assert_eq!(tracker.len(), max);
        let per_id = tracker.heap_bytes() / max;
        assert!(per_id <= 128, "{per_id} bytes per tracked id");
    }

    fn failed(id: &str, ts: f64) -> Event {
        let mut e = status(MessageStatus::Failed, id, ts);
        e.errors = vec!["131048"];
        e.replay = ReplayKey::of(id, &["failed"]);
        e
    }

    #[test]
    fn a_replayed_event_counts_once() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&SPEC, Owner::new(1));
        let now = 1_750_000_000.0;
        let push = failed("wamid.1", now - 1.0);
        assert!(f.apply(&push, now, &tracker));
        for _ in 0..999 {
            assert!(!f.apply(&push, now, &tracker), "a replay");
        }
        // Another status of the same message is another event.
        let mut read = status(MessageStatus::Read, "wamid.1", now);
        read.replay = ReplayKey::of("wamid.1", &["read"]);
        assert!(f.apply(&read, now, &tracker));
        // Without the provider's id nothing is taken for a replay.
        let anonymous = Event::named("status");
        assert!(f.apply(&anonymous, now, &tracker));
        assert!(f.apply(&anonymous, now, &tracker));
        let text = render(&f);
        for line in [
            "whatsapp_message_errors_total{gateway=\"g\",code=\"131048\"} 1\n",
            "whatsapp_message_status_total{gateway=\"g\",status=\"failed\"} 1\n",
            "whatsapp_webhook_events_total{gateway=\"g\",event=\"status\"} 4\n",
            "whatsapp_webhook_lag_seconds_count{gateway=\"g\"} 2\n",
            "whatsapp_webhook_duplicates_total{gateway=\"g\"} 999\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn the_replay_window_is_bounded() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&SPEC, Owner::new(1));
        let now = 1_750_000_000.0;
        assert!(f.apply(&failed("first", now), now, &tracker));
        for i in 0..2 * REPLAY_HALF {
            assert!(f.apply(&failed(&format!("other {i}"), now), now, &tracker));
            assert!(f.recent.newer.len() + f.recent.older.len() <= 2 * REPLAY_HALF);
        }
        // Two sets of 2,048 keys: about 74 KiB at most, whatever comes.
        let buckets = f.recent.newer.capacity() + f.recent.older.capacity();
        assert!(buckets <= 2 * 4096, "{buckets}");
        assert!(
            f.apply(&failed("first", now), now, &tracker),
            "forgotten after 4,096 others"
        );
        assert_eq!(f.duplicates, 0);
    }

    #[test]
    fn an_unbelievable_time_counts_the_event_not_its_time() {
        let tracker = Tracker::default();
        let mut f = FlowState::new(&SPEC, Owner::new(1));
        let now = 1_750_000_000.0;
        for ts in [1.0e9, 9.9e9] {
            let mut e = status(MessageStatus::Sent, &format!("m{ts}"), ts);
            e.replay = ReplayKey::of(&format!("m{ts}"), &[]);
            assert!(f.apply(&e, now, &tracker));
        }
        assert_eq!(f.lag.count(), 0);
        assert_eq!(f.last_event, None, "no move of the last event's time");
        // Tracked from arrival: delivery takes 2 s, not 8.9e9.
        f.apply(
            &status(MessageStatus::Delivered, "m9900000000", now + 2.0),
            now + 2.0,
            &tracker,
        );
        assert_eq!(f.delivery.count(), 1);
        let text = render(&f);
        for line in [
            "whatsapp_message_delivery_seconds_sum{gateway=\"g\"} 2\n",
            "whatsapp_message_status_total{gateway=\"g\",status=\"sent\"} 2\n",
            "whatsapp_webhook_timestamp_rejected_total{gateway=\"g\"} 2\n",
            "whatsapp_webhook_lag_seconds_sum{gateway=\"g\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
        // A week-old retry of Meta's is believed.
        f.apply(
            &status(MessageStatus::Read, "x", now - 7.0 * 86_400.0),
            now,
            &tracker,
        );
        assert_eq!(f.lag.count(), 2, "the delivered status and the retry");
        assert_eq!(f.untimely, 2);
    }

    #[test]
    fn a_busy_gateway_evicts_only_its_own_ids() {
        let max = 1000;
        let tracker = Tracker::new(Limits {
            max_tracked: max,
            max_age: DEFAULT_MAX_AGE,
        });
        let (quiet, busy) = (Owner::new(1), Owner::new(2));
        let t0 = 1_750_000_000.0;
        tracker.sent(&quiet, 42, t0, t0);
        for i in 0..12 * max as u64 {
            tracker.sent(&busy, i, t0 + 1.0, t0 + 1.0);
            assert!(tracker.len() <= max);
        }
        assert_eq!(quiet.evicted(), 0);
        assert_eq!(tracker.held_by(&quiet), 1);
        assert_eq!(
            busy.evicted() as usize + tracker.held_by(&busy),
            12 * max,
            "every eviction counted, on the busy gateway"
        );
        assert_eq!(tracker.take(&quiet, 42), Some(t0));
        assert_eq!(tracker.take(&quiet, 42), None);
        assert_eq!(tracker.take(&busy, 42), None, "ids are the gateway's own");
        // The quiet gateway gets busy too: now it holds the most, and it evicts its own.
        for i in 0..2 * max as u64 {
            tracker.sent(&quiet, i, t0 + 2.0, t0 + 2.0);
        }
        assert!(quiet.evicted() > 0);
        assert!(tracker.held_by(&busy) > 0 && tracker.len() <= max);
    }

    #[test]
    fn flow_renders_only_when_changed_and_not_when_inactive() {
        let flow = Flow::new(&[("gateway", "g"), ("provider", "zapi")]);
        assert_eq!(flow.fragment().text_len(), 0);
        flow.activate(&SPEC, || Owner::new(1));
        let first = flow.fragment();
        assert!(first
            .family(Family::WebhookEvents)
            .contains("event=\"status\"} 0"));
        assert!(Arc::ptr_eq(&first, &flow.fragment()), "not rendered again");
        let tracker = Tracker::default();
        flow.update(|s| s.apply(&Event::named("status"), 1e9, &tracker));
        assert!(flow
            .fragment()
            .family(Family::WebhookEvents)
            .contains("event=\"status\"} 1"));
        flow.activate(&SPEC, || Owner::new(2));
        assert!(
            flow.fragment()
                .family(Family::WebhookEvents)
                .contains("event=\"status\"} 1"),
            "kept"
        );
        flow.deactivate();
        assert_eq!(flow.fragment().text_len(), 0);
    }
}
