//! What a provider's push notification says, in one shape for every provider.
//!
//! Each provider's pure webhook parser (`providers::<name>::webhook::parse`) turns a body into
//! [`Event`]s; the message-flow state (`flow_state`) counts them into the common
//! families. An event keeps nothing private: its name and codes are labels from closed sets, a
//! message id survives only as a keyed hash ([`MessageKey`]), and phone numbers, names and texts
//! are never read out of the payload. The one exception is a delivery canary's own message
//! ([`CanaryArrival`]): its chat and id are held, as secrets, for the run to mark it read.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;

use serde_json::Value;

use crate::secret::Secret;

crate::labels::closed_set! {
    /// An outgoing message's status, the same for every provider.
    pub enum MessageStatus {
        Sent => "sent",
        Delivered => "delivered",
        Read => "read",
        Played => "played",
        Failed => "failed",
        Other => "other",
    }
    catch_all = Other;
}

crate::labels::closed_set! {
    /// Why a webhook was refused: the `reason` label of `whatsapp_webhook_rejected_total`.
    pub enum Rejection {
        Unauthorized => "unauthorized",
        BadSignature => "bad_signature",
        InvalidJson => "invalid_json",
        TooLarge => "too_large",
        UnknownGateway => "unknown_gateway",
        UnknownEvent => "unknown_event",
        UnsupportedMediaType => "unsupported_media_type",
        MethodNotAllowed => "method_not_allowed",
        /// The bodies waiting for their signature check already hold the shared budget.
        Overloaded => "overloaded",
    }
}

impl Rejection {
    /// The reasons counted per gateway: `unknown_gateway` cannot name one.
    pub const PER_GATEWAY: [Rejection; 8] = [
        Rejection::Unauthorized,
        Rejection::BadSignature,
        Rejection::InvalidJson,
        Rejection::TooLarge,
        Rejection::UnknownEvent,
        Rejection::UnsupportedMediaType,
        Rejection::MethodNotAllowed,
        Rejection::Overloaded,
    ];
}

/// The event name of entries that could not be read at all (not an object, no discriminator);
/// counted, never a reason to refuse the rest of the batch.
pub const UNPARSED: &str = "unparsed";
/// The event name, error code or Cloud API event that is not in the provider's known set.
pub const OTHER: &str = "other";

/// A message id, kept only as a hash keyed per process: two statuses of one message meet, and
/// the id itself is never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageKey(pub u64);

/// The hash key of this process, drawn at random once: outside it, no hash can be matched to
/// an id.
fn keyed() -> &'static std::hash::RandomState {
    static KEY: OnceLock<std::hash::RandomState> = OnceLock::new();
    KEY.get_or_init(Default::default)
}

impl MessageKey {
    /// The key of a non-empty id.
    pub fn of(id: &str) -> Option<MessageKey> {
        let id = id.trim();
        (!id.is_empty()).then(|| MessageKey(keyed().hash_one(id)))
    }

    /// The key of an id that is a JSON string.
    pub fn of_value(v: Option<&Value>) -> Option<MessageKey> {
        v.and_then(Value::as_str).and_then(MessageKey::of)
    }
}

/// What makes a push the same push when it comes again (a provider's retry, or a captured push
/// replayed): the provider's own id of the event, with what tells two events of one message
/// apart (its status). A keyed hash like [`MessageKey`]: the id is never kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplayKey(pub u64);

impl ReplayKey {
    /// The key of an event the provider names by `id`, told apart from the other events of that
    /// id by `parts` (a status, a type); `None` without an id, as an event with no id of the
    /// provider's is never taken for another.
    pub fn of(id: &str, parts: &[&str]) -> Option<ReplayKey> {
        let id = id.trim();
        if id.is_empty() {
            return None;
        }
        // A str hashes with a terminator: the parts cannot run together.
        let mut h = keyed().build_hasher();
        id.hash(&mut h);
        for p in parts {
            p.trim().hash(&mut h);
        }
        Some(ReplayKey(h.finish()))
    }

    /// As [`ReplayKey::of`], for an id that is a JSON string or number.
    pub fn of_value(id: Option<&Value>, parts: &[&str]) -> Option<ReplayKey> {
        match id? {
            Value::String(s) => ReplayKey::of(s, parts),
            Value::Number(n) => ReplayKey::of(&n.to_string(), parts),
            _ => None,
        }
    }
}

/// A Cloud API event about the number, the account or a template, by its bounded `event` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudEvent {
    Quality(&'static str),
    Account(&'static str),
    Template(&'static str),
}

/// One event of a push, reduced to what the metrics need.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// The provider's own name for it, from the provider's closed set, else [`OTHER`].
    pub name: &'static str,
    /// When the provider says it happened, in Unix seconds.
    pub timestamp: Option<f64>,
    /// An outgoing message status.
    pub status: Option<MessageStatus>,
    /// The provider took a message for sending (Z-API's DeliveryCallback without error, Green
    /// API's outgoingAPIMessageReceived): not a status, but where sent→delivered starts when no
    /// `sent` status comes.
    pub accepted: bool,
    /// The messages the status (or acceptance) is about; one callback can name several.
    pub messages: Vec<MessageKey>,
    /// Send or delivery error codes, from the provider's closed set, else [`OTHER`].
    pub errors: Vec<&'static str>,
    /// Incoming messages.
    pub received: u32,
    /// The number's connection, when the push tells it.
    pub connected: Option<bool>,
    /// The provider's own instance state label (Green API `stateInstance`), when pushed.
    pub state: Option<&'static str>,
    pub cloud: Option<CloudEvent>,
    /// A delivery canary's message, when an incoming message carries a nonce
    /// ([`canary_nonce`]); the text itself is never kept.
    pub canary: Option<Box<CanaryArrival>>,
    /// What the same event carries when it comes again, when the provider gives an id.
    pub replay: Option<ReplayKey>,
}

/// A delivery canary's message as it arrived on the receiving gateway: its nonce, and what that
/// gateway's mark-read call names it by, the chat it came in (the sender, as the receiving side
/// addresses it) and its id. Both are secrets: the canary's run holds them to mark the message
/// read and drops them; they are never logged, labelled or kept. Any other message keeps
/// neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryArrival {
    pub nonce: u64,
    pub chat: Option<Secret>,
    pub id: Option<Secret>,
}

impl CanaryArrival {
    /// The arrival of a canary's message when `text` carries a nonce; `None` for any other text,
    /// whose chat and id are then not copied.
    pub fn of(text: Option<&str>, chat: Option<&str>, id: Option<&str>) -> Option<Box<Self>> {
        let nonce = text.and_then(canary_nonce)?;
        let secret = |s: Option<&str>| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Secret::new(s.to_string()))
        };
        Some(Box::new(CanaryArrival {
            nonce,
            chat: secret(chat),
            id: secret(id),
        }))
    }

    /// The nonce, chat and id, for tests to compare.
    #[cfg(test)]
    pub fn parts(&self) -> (u64, Option<&str>, Option<&str>) {
        fn s(s: &Option<Secret>) -> Option<&str> {
            s.as_ref().map(Secret::expose)
        }
        (self.nonce, s(&self.chat), s(&self.id))
    }
}

impl Event {
    pub fn named(name: &'static str) -> Self {
        Event {
            name,
            ..Default::default()
        }
    }

    /// The nonce of the canary message this event is the arrival of.
    pub fn canary_nonce(&self) -> Option<u64> {
        self.canary.as_ref().map(|c| c.nonce)
    }
}

/// The words a canary's message starts with; the nonce follows as 16 hex digits.
pub const CANARY_PREFIX: &str = "whatsapp_exporter canary ";

/// The text of a canary's message carrying `nonce`.
pub fn canary_text(nonce: u64) -> String {
    format!("{CANARY_PREFIX}{nonce:016x}")
}

/// The nonce of a canary's message, when `text` is one (`whatsapp_exporter canary <16 hex>`,
/// with whatever a template puts around it); `None` for any other text. Every provider's webhook
/// parser calls it on an incoming message's text, and keeps only the number.
pub fn canary_nonce(text: &str) -> Option<u64> {
    let at = text.find(CANARY_PREFIX)?;
    let hex = text.get(at + CANARY_PREFIX.len()..at + CANARY_PREFIX.len() + 16)?;
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// What a body held: its events, and how many of its entries could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch<T = Event> {
    pub items: Vec<T>,
    pub unparsed: u32,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            items: Vec::new(),
            unparsed: 0,
        }
    }
}

/// Why a whole body is refused; anything less is counted entry by entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not JSON at all.
    InvalidJson,
    /// JSON, but nothing in it has the provider's shape.
    UnknownEvent,
}

impl Refused {
    pub fn rejection(self) -> Rejection {
        match self {
            Refused::InvalidJson => Rejection::InvalidJson,
            Refused::UnknownEvent => Rejection::UnknownEvent,
        }
    }
}

/// The body as JSON; serde's message is never kept (it can quote the input).
pub fn json(body: &[u8]) -> Result<Value, Refused> {
    serde_json::from_slice(body).map_err(|_| Refused::InvalidJson)
}

/// The entries of a body: a list, or one object alone.
pub fn entries(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// Timestamps below this are seconds, not milliseconds: 1e11 ms is 1973, 1e11 s the year 5138.
pub const SECONDS_BELOW: f64 = 1e11;

/// A time in Unix seconds from seconds or milliseconds (number or string); non-positive values
/// and values that fit neither unit say nothing.
pub fn unix_time(v: Option<&Value>) -> Option<f64> {
    let n = crate::json::number(v?)?;
    let secs = if n < SECONDS_BELOW { n } else { n / 1000.0 };
    // Before 2001 or after 2286 is no clock of a provider's.
    (1e9..1e10).contains(&secs).then_some(secs)
}

/// How old a provider's timestamp can be and still be believed: Meta retries an unanswered
/// push for up to 7 days, and Green API's queue keeps a notification a day; a day of margin on
/// top. Older is a replay, a provider's broken clock, or a lie.
pub const MAX_AGE: f64 = 8.0 * 86_400.0;
/// How far ahead of our clock a provider's timestamp can be: clock drift between hosts, never
/// more than a few minutes on a synchronised host.
pub const MAX_AHEAD: f64 = 300.0;

/// Whether a provider's timestamp `ts` can be believed at `now` (both Unix seconds): not older
/// than [`MAX_AGE`], not more than [`MAX_AHEAD`] in the future.
pub fn believable(ts: f64, now: f64) -> bool {
    (now - MAX_AGE..=now + MAX_AHEAD).contains(&ts)
}

/// The label in `known` equal to `s`, else [`OTHER`].
pub fn known(known: &'static [&'static str], s: &str) -> &'static str {
    known.iter().copied().find(|k| *k == s).unwrap_or(OTHER)
}

/// What a provider's pushes can say, for the series initialised at 0: its event names and error
/// codes, in the order they are exposed, and whether it has Cloud API's account families.
#[derive(Debug, PartialEq, Eq)]
pub struct FlowSpec {
    pub events: &'static [&'static str],
    pub codes: &'static [&'static str],
    pub cloud: Option<CloudSpec>,
    /// The disconnection reason codes of `whatsapp_disconnects_total`; empty for a provider whose
    /// pushes tell none.
    pub disconnects: &'static [&'static str],
}

/// The Cloud API's event labels of quality, account and template events.
#[derive(Debug, PartialEq, Eq)]
pub struct CloudSpec {
    pub quality: &'static [&'static str],
    pub account: &'static [&'static str],
    pub template: &'static [&'static str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_hide_the_id_and_match_it() {
        let a = MessageKey::of("wamid.HBgLMTY1MDM4").unwrap();
        assert_eq!(MessageKey::of(" wamid.HBgLMTY1MDM4 "), Some(a));
        assert_ne!(MessageKey::of("wamid.other"), Some(a));
        assert_eq!(MessageKey::of("  "), None);
        assert!(!format!("{a:?}").contains("HBgL"));
    }

    #[test]
    fn replay_keys_hide_the_id_and_tell_statuses_apart() {
        let sent = ReplayKey::of("wamid.HBgLMTY1MDM4", &["sent"]).unwrap();
        assert_eq!(ReplayKey::of(" wamid.HBgLMTY1MDM4", &["sent "]), Some(sent));
        assert_ne!(
            ReplayKey::of("wamid.HBgLMTY1MDM4", &["delivered"]),
            Some(sent)
        );
        // Parts are not run together: ("a", ["bc"]) is not ("ab", ["c"]).
        assert_ne!(ReplayKey::of("a", &["bc"]), ReplayKey::of("ab", &["c"]));
        assert_ne!(
            ReplayKey::of("a", &["b", ""]),
            ReplayKey::of("a", &["", "b"])
        );
        assert_eq!(ReplayKey::of(" ", &["sent"]), None, "no id, no key");
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        assert_eq!(
            ReplayKey::of_value(Some(&v("1234")), &[]),
            ReplayKey::of("1234", &[])
        );
        assert_eq!(ReplayKey::of_value(Some(&v("null")), &[]), None);
        assert!(!format!("{sent:?}").contains("HBgL"));
    }

    #[test]
    fn believable_times() {
        let now = 1_750_000_000.0;
        assert!(believable(now, now));
        assert!(believable(now - 7.0 * 86_400.0, now), "Meta's last retry");
        assert!(believable(now + 60.0, now), "a clock a minute ahead");
        assert!(!believable(now + 3600.0, now));
        assert!(!believable(1.0e9, now), "2001");
        assert!(!believable(9.9e9, now), "2283");
    }

    #[test]
    fn times_in_either_unit() {
        let v = |j: &str| serde_json::from_str::<Value>(j).unwrap();
        assert_eq!(unix_time(Some(&v("1632234645000"))), Some(1632234645.0));
        assert_eq!(unix_time(Some(&v("1580163342"))), Some(1580163342.0));
        assert_eq!(unix_time(Some(&v("\"1750030073\""))), Some(1750030073.0));
        // Z-API's ConnectedCallback example: neither unit.
        assert_eq!(unix_time(Some(&v("26151515154"))), None);
        assert_eq!(unix_time(Some(&v("0"))), None);
        assert_eq!(unix_time(Some(&v("\"soon\""))), None);
        assert_eq!(unix_time(None), None);
    }

    #[test]
    fn canary_nonces_are_found_and_nothing_else() {
        let n = 0x0123_4567_89ab_cdef;
        assert_eq!(canary_nonce(&canary_text(n)), Some(n));
        assert_eq!(canary_nonce(&canary_text(7)), Some(7));
        let templated = format!("Delivery check: {} (ignore)", canary_text(n));
        assert_eq!(canary_nonce(&templated), Some(n));
        assert_eq!(canary_nonce("whatsapp_exporter canary 0123"), None, "short");
        assert_eq!(
            canary_nonce("whatsapp_exporter canary 0123456789abcdeg"),
            None
        );
        assert_eq!(canary_nonce("hello"), None);
        assert_eq!(
            canary_nonce("whatsapp_exporter canary é23456789abcdef0"),
            None
        );
    }

    #[test]
    fn only_a_canary_message_keeps_its_chat_and_id_and_never_shows_them() {
        let none = CanaryArrival::of(Some("hello"), Some("5511999998888"), Some("ABC"));
        assert_eq!(none, None, "an ordinary message keeps nothing");
        let text = canary_text(42);
        let a = CanaryArrival::of(Some(&text), Some(" 5511999998888@c.us "), Some("")).unwrap();
        assert_eq!(a.nonce, 42);
        assert_eq!(
            a.chat.as_ref().map(Secret::expose),
            Some("5511999998888@c.us")
        );
        assert_eq!(a.id, None, "an empty id is none");
        let shown = format!("{a:?}");
        assert!(!shown.contains("5511999998888"), "{shown}");
    }

    #[test]
    fn known_labels_or_other() {
        static K: [&str; 2] = ["a", "b"];
        assert_eq!(known(&K, "b"), "b");
        assert_eq!(known(&K, "B"), OTHER);
    }
}
