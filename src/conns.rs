//! The connections of the exporter's own server, admitted so that a flood of idle or slow
//! connections cannot keep a scrape out.
//!
//! A connection is *new* until a request head has been read on it, then *busy* while a request is
//! served and *idle* between requests; a request that waits for a bcrypt check of credentials
//! never seen before is *waiting*, and a webhook whose body is still arriving is *receiving*.
//! When the server is full (in all, or for one client address), a newcomer does not get turned
//! away: the oldest new connection that has had [`NEW_EVICTABLE_AFTER`] to send its request makes
//! room for it, else the oldest waiting one (a flood of wrong passwords waits there), else the
//! webhook that has been receiving its body for longest (at least [`RECEIVING_EVICTABLE_AFTER`]:
//! slots go to those who finish, and a trickled body never does), else the oldest new one, else
//! the connection idle for longest (at least [`IDLE_EVICTABLE_AFTER`]). A connection serving a
//! request is never closed for another, and neither is a new one whose whole request head had
//! arrived when it was accepted (*head sent*): it will be served in a moment, however fast others
//! reconnect. Without that, slow connections from the scraper's own address, reopened as soon as
//! they are closed, kept every new connection younger than the scraper's, so the scraper's was
//! the oldest new one, closed before its request was read. A
//! client that connects and sends its request at once, as Prometheus does, is the youngest
//! connection until it is busy, so attackers holding sockets open lose theirs first; and a flood
//! of wrong passwords from the scraper's own address, reconnecting as fast as its connections are
//! closed, loses its waiting connections before the scraper's fresh one, whose request may not
//! have been read yet when the runtime is busy.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::sync::lock;

const NEW: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const WAITING: u8 = 3;
const RECEIVING: u8 = 4;

/// An idle connection younger than this may still be writing its last answer: not evicted.
pub const IDLE_EVICTABLE_AFTER: Duration = Duration::from_secs(1);
/// A new connection younger than this may have sent its request, not read yet: it makes room
/// only after the waiting ones.
pub const NEW_EVICTABLE_AFTER: Duration = Duration::from_secs(1);
/// A webhook body that has been arriving for this long makes room for a newcomer when the server
/// is full: a provider's push of a few MiB takes less on any link it is sent over.
pub const RECEIVING_EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// The open connections, by age.
pub struct Conns {
    max: usize,
    per_client: usize,
    /// [`NEW_EVICTABLE_AFTER`] in milliseconds (shorter in tests).
    new_grace_ms: u64,
    epoch: Instant,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    open: BTreeMap<u64, Entry>,
    per_client: HashMap<IpAddr, usize>,
    evicted: u64,
}

struct Entry {
    client: IpAddr,
    state: Arc<ConnState>,
}

/// What a connection's task shares with the table.
pub struct ConnState {
    phase: AtomicU8,
    /// Milliseconds since the table's epoch when it was admitted.
    opened_ms: u64,
    /// Its whole request head arrived at once: never evicted until served.
    head_sent: AtomicBool,
    /// Milliseconds since the table's epoch when it last became idle, or began receiving a body.
    idle_since: AtomicU64,
    evict: CancellationToken,
}

impl ConnState {
    /// Its whole request head arrived at once, as a scraper sends it: it is kept until served.
    pub fn mark_head_sent(&self) {
        self.head_sent.store(true, Ordering::Relaxed);
    }

    pub fn head_sent(&self) -> bool {
        self.head_sent.load(Ordering::Relaxed)
    }

    /// Cancelled when the connection is to make room for another.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }
}

/// A connection's place in the table; dropping it frees the place.
pub struct Admitted {
    conns: Arc<Conns>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.conns.remove(self.id);
    }
}

/// Marks a connection waiting (for a bcrypt check) until dropped; busy again then.
pub struct Waiting<'a> {
    state: &'a ConnState,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.state.phase.store(BUSY, Ordering::Relaxed);
    }
}

/// Marks a connection receiving a webhook body until dropped; busy again then.
pub struct Receiving<'a> {
    state: &'a ConnState,
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        self.state.phase.store(BUSY, Ordering::Relaxed);
    }
}

/// Marks a connection busy while a request is served; idle when dropped.
pub struct Busy<'a> {
    conns: &'a Conns,
    state: &'a ConnState,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.state
            .idle_since
            .store(self.conns.now_ms(), Ordering::Relaxed);
        self.state.phase.store(IDLE, Ordering::Relaxed);
    }
}

/// The address a client is counted by: an IPv6 client by its /64, which one host holds whole.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

impl Conns {
    /// At most `max` connections, and `per_client` from one client address.
    pub fn new(max: usize, per_client: usize) -> Arc<Self> {
        Arc::new(Conns {
            max: max.max(1),
            per_client: per_client.clamp(1, max.max(1)),
            new_grace_ms: u64::try_from(NEW_EVICTABLE_AFTER.as_millis()).unwrap_or(u64::MAX),
            epoch: Instant::now(),
            table: Mutex::new(Table::default()),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn open(&self) -> usize {
        lock(&self.table).open.len()
    }

    /// Connections closed to make room for others, since the start.
    pub fn evicted(&self) -> u64 {
        lock(&self.table).evicted
    }

    /// A place for a connection from `client`, closing another when full; `None` when every
    /// connection in the way is busy.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Admitted> {
        let client = client_key(client);
        let mut t = lock(&self.table);
        let mine = t.per_client.get(&client).copied().unwrap_or(0);
        if mine >= self.per_client {
            self.evict_one(&mut t, Some(client))?;
        } else if t.open.len() >= self.max {
            self.evict_one(&mut t, None)?;
        }
        let id = t.next_id;
        t.next_id += 1;
        let state = Arc::new(ConnState {
            phase: AtomicU8::new(NEW),
            opened_ms: self.now_ms(),
            head_sent: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            evict: CancellationToken::new(),
        });
        t.open.insert(
            id,
            Entry {
                client,
                state: state.clone(),
            },
        );
        *t.per_client.entry(client).or_insert(0) += 1;
        Some(Admitted {
            conns: self.clone(),
            id,
            state,
        })
    }

    /// Closes one connection to free a file descriptor (accept failed for want of one).
    pub fn make_room(&self) -> bool {
        let mut t = lock(&self.table);
        self.evict_one(&mut t, None).is_some()
    }

    /// The connection is serving a request until the guard drops.
    pub fn busy<'a>(&'a self, state: &'a ConnState) -> Busy<'a> {
        state.phase.store(BUSY, Ordering::Relaxed);
        Busy { conns: self, state }
    }

    /// The connection's request waits for a check that may be dropped; evictable meanwhile.
    pub fn waiting<'a>(&self, state: &'a ConnState) -> Waiting<'a> {
        state.phase.store(WAITING, Ordering::Relaxed);
        Waiting { state }
    }

    /// The connection's request is a webhook whose body may never come whole; evictable, the
    /// longest receiving first, until the guard drops.
    pub fn receiving<'a>(&self, state: &'a ConnState) -> Receiving<'a> {
        state.idle_since.store(self.now_ms(), Ordering::Relaxed);
        state.phase.store(RECEIVING, Ordering::Relaxed);
        Receiving { state }
    }

    fn evict_one(&self, t: &mut Table, of: Option<IpAddr>) -> Option<()> {
        let candidates = || {
            t.open
                .iter()
                .filter(move |(_, e)| of.is_none_or(|c| c == e.client))
        };
        let now = self.now_ms();
        let floor = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let longest_in = |phase: u8, min_ms: u64| {
            candidates()
                .filter(|(_, e)| e.state.phase.load(Ordering::Relaxed) == phase)
                .map(|(id, e)| (*id, e.state.idle_since.load(Ordering::Relaxed)))
                .filter(|(_, since)| now.saturating_sub(*since) >= min_ms)
                .min_by_key(|(_, since)| *since)
                .map(|(id, _)| id)
        };
        let oldest_in = |phase: u8, min_age_ms: u64| {
            candidates()
                .find(|(_, e)| {
                    e.state.phase.load(Ordering::Relaxed) == phase
                        && !(phase == NEW && e.state.head_sent())
                        && now.saturating_sub(e.state.opened_ms) >= min_age_ms
                })
                .map(|(id, _)| *id)
        };
        let victim = oldest_in(NEW, self.new_grace_ms)
            .or_else(|| oldest_in(WAITING, 0))
            .or_else(|| longest_in(RECEIVING, floor(RECEIVING_EVICTABLE_AFTER)))
            .or_else(|| oldest_in(NEW, 0))
            .or_else(|| longest_in(IDLE, floor(IDLE_EVICTABLE_AFTER)))?;
        if let Some(e) = t.open.remove(&victim) {
            e.state.evict.cancel();
            Self::uncount(t, e.client);
            t.evicted += 1;
        }
        Some(())
    }

    fn remove(&self, id: u64) {
        let mut t = lock(&self.table);
        if let Some(e) = t.open.remove(&id) {
            Self::uncount(&mut t, e.client);
        }
    }

    fn uncount(t: &mut Table, client: IpAddr) {
        if let Some(n) = t.per_client.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                t.per_client.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_server_closes_its_oldest_new_connection_for_a_newcomer() {
        let conns = Conns::new(3, 3);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.1")).unwrap();
        let _busy = conns.busy(&b.state);
        let c = conns.admit(ip("10.0.0.2")).unwrap();
        let d = conns.admit(ip("10.0.0.3")).unwrap();
        assert!(a.state.evicted().is_cancelled(), "the oldest new one went");
        assert!(!b.state.evicted().is_cancelled(), "a busy one never goes");
        assert!(!c.state.evicted().is_cancelled());
        assert_eq!(conns.open(), 3);
        drop(d);
        assert_eq!(conns.open(), 2);
        assert_eq!(conns.evicted(), 1);
    }

    #[test]
    fn a_client_over_its_share_loses_its_own_connections_first() {
        let conns = Conns::new(10, 2);
        let other = conns.admit(ip("10.0.0.9")).unwrap();
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.1")).unwrap();
        let _c = conns.admit(ip("10.0.0.1")).unwrap();
        assert!(a.state.evicted().is_cancelled());
        assert!(!b.state.evicted().is_cancelled());
        assert!(
            !other.state.evicted().is_cancelled(),
            "the older, other client stays"
        );
        // An IPv6 host counts by its /64.
        let x = conns.admit(ip("2001:db8::1")).unwrap();
        let _y = conns.admit(ip("2001:db8::2")).unwrap();
        let _z = conns.admit(ip("2001:db8::3")).unwrap();
        assert!(x.state.evicted().is_cancelled());
        assert_eq!(conns.open(), 5);
    }

    #[test]
    fn a_request_waiting_for_a_password_check_makes_room_after_new_ones() {
        let conns = Conns::new(2, 2);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.1")).unwrap();
        let _busy = conns.busy(&a.state);
        let _wait = conns.waiting(&a.state);
        let _bb = conns.busy(&b.state);
        let _c = conns.admit(ip("10.0.0.2")).unwrap();
        assert!(
            a.state.evicted().is_cancelled(),
            "waiting for bcrypt: evictable"
        );
        assert!(!b.state.evicted().is_cancelled(), "busy: never");
    }

    #[test]
    fn a_fresh_connection_outlives_one_waiting_for_a_password_check() {
        let mut conns = Conns::new(2, 2);
        Arc::get_mut(&mut conns).unwrap().new_grace_ms = 60_000;
        let flood = conns.admit(ip("10.0.0.1")).unwrap();
        let _wait = conns.waiting(&flood.state);
        let scraper = conns.admit(ip("10.0.0.1")).unwrap();
        // The flood reconnects: its waiting connection goes, not the scraper's fresh one.
        let again = conns.admit(ip("10.0.0.1")).unwrap();
        assert!(flood.state.evicted().is_cancelled(), "waiting: evicted");
        assert!(!scraper.state.evicted().is_cancelled(), "fresh: kept");
        // With no waiting connection left, the oldest new one goes, fresh or not.
        let _last = conns.admit(ip("10.0.0.1")).unwrap();
        assert!(scraper.state.evicted().is_cancelled());
        assert!(!again.state.evicted().is_cancelled());
    }

    #[test]
    fn a_connection_that_sent_its_head_at_once_outlives_any_reconnecting_flood() {
        let mut conns = Conns::new(3, 3);
        Arc::get_mut(&mut conns).unwrap().new_grace_ms = 0;
        let slow = conns.admit(ip("10.0.0.1")).unwrap();
        let scraper = conns.admit(ip("10.0.0.1")).unwrap();
        scraper.state.mark_head_sent();
        let mut flood = vec![conns.admit(ip("10.0.0.1")).unwrap()];
        // The flood reconnects as fast as its connections are closed: they go, the scraper's stays.
        for _ in 0..100 {
            flood.push(conns.admit(ip("10.0.0.1")).unwrap());
        }
        assert!(slow.state.evicted().is_cancelled());
        assert!(!scraper.state.evicted().is_cancelled(), "head sent: kept");
        // Once served and idle for a while, it may go like any other.
        drop(conns.busy(&scraper.state));
        scraper.state.idle_since.store(0, Ordering::Relaxed);
        std::thread::sleep(IDLE_EVICTABLE_AFTER + Duration::from_millis(20));
        let _busy: Vec<_> = flood
            .iter()
            .rev()
            .take(2)
            .map(|a| conns.busy(&a.state))
            .collect();
        let _next = conns.admit(ip("10.0.0.1")).unwrap();
        assert!(scraper.state.evicted().is_cancelled());
    }

    #[test]
    fn a_connection_silent_past_its_grace_goes_before_a_waiting_one() {
        let mut conns = Conns::new(2, 2);
        Arc::get_mut(&mut conns).unwrap().new_grace_ms = 0;
        let silent = conns.admit(ip("10.0.0.1")).unwrap();
        let waiting = conns.admit(ip("10.0.0.1")).unwrap();
        let _wait = conns.waiting(&waiting.state);
        let _c = conns.admit(ip("10.0.0.2")).unwrap();
        assert!(silent.state.evicted().is_cancelled());
        assert!(!waiting.state.evicted().is_cancelled());
    }

    #[test]
    fn a_webhook_body_held_longest_makes_room_and_a_fresh_one_does_not() {
        let conns = Conns::new(2, 2);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.1")).unwrap();
        let (_ba, _bb) = (conns.busy(&a.state), conns.busy(&b.state));
        let _ra = conns.receiving(&a.state);
        let _rb = conns.receiving(&b.state);
        assert!(
            conns.admit(ip("10.0.0.2")).is_none(),
            "fresh bodies keep their slot"
        );
        // Both have been receiving for longer than the floor, `a` the longest.
        a.state.idle_since.store(0, Ordering::Relaxed);
        b.state.idle_since.store(10, Ordering::Relaxed);
        std::thread::sleep(RECEIVING_EVICTABLE_AFTER + Duration::from_millis(20));
        let _c = conns.admit(ip("10.0.0.2")).unwrap();
        assert!(
            a.state.evicted().is_cancelled(),
            "the longest receiving went"
        );
        assert!(!b.state.evicted().is_cancelled());
    }

    #[test]
    fn a_finished_body_is_busy_again_and_stays() {
        let conns = Conns::new(1, 1);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let _ba = conns.busy(&a.state);
        drop(conns.receiving(&a.state));
        a.state.idle_since.store(0, Ordering::Relaxed);
        std::thread::sleep(RECEIVING_EVICTABLE_AFTER + Duration::from_millis(20));
        assert!(
            conns.admit(ip("10.0.0.2")).is_none(),
            "parsing and answering: kept"
        );
    }

    #[test]
    fn busy_connections_are_never_closed_and_fresh_idle_ones_neither() {
        let conns = Conns::new(2, 2);
        let a = conns.admit(ip("10.0.0.1")).unwrap();
        let b = conns.admit(ip("10.0.0.1")).unwrap();
        let _ba = conns.busy(&a.state);
        drop(conns.busy(&b.state)); // b answered just now: idle, but maybe still writing
        assert!(conns.admit(ip("10.0.0.2")).is_none());
        assert!(!a.state.evicted().is_cancelled() && !b.state.evicted().is_cancelled());
    }
}
