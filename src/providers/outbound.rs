//! What a send to a gateway is made of, the same for every provider: the leaf that each
//! provider's `send.rs` and the dispatch in `send` both build on, so neither imports the other
//! both ways.

use serde_json::Value;

use crate::config::Template;
use crate::secret::Secret;

/// One send request: a POST of `body` as JSON. The URL holds tokens for some providers.
pub struct Request {
    pub url: Secret,
    pub headers: Vec<(&'static str, Secret)>,
    pub body: Value,
}

/// What a canary asks the gateway to send: `text` to `number` (digits only).
pub struct Message<'a> {
    pub number: &'a str,
    pub text: &'a str,
    /// A Cloud API sender's template, whose first body parameter takes `text`.
    pub template: Option<&'a Template>,
}

/// A canary's cleanup call (delete a sent message for everyone, mark a received one read):
/// `method` on `url`, with a JSON `body` or none. The URL (some providers put the number and the
/// id in it) and the body are secrets.
pub struct Call {
    pub method: reqwest::Method,
    pub url: Secret,
    pub headers: Vec<(&'static str, Secret)>,
    pub body: Option<Value>,
}

/// A message that arrived, named as the receiving gateway's mark-read call names it: the chat it
/// came in (the sender, as that gateway addresses it) and its id. Both are secrets.
pub struct Received<'a> {
    pub chat: Option<&'a str>,
    pub id: &'a str,
}

/// Whether a message id (a send answer's, or a push's for mark-read) may go into a cleanup call.
/// Refused: empty or only dots (`.` and `..` are dot segments: a URL parser drops them, and WAHA's
/// `DELETE .../chats/<chat>/messages/..` becomes "delete the chat"), and control characters. Any
/// other character stays inside its path segment (`http::path_segment` encodes it) or its JSON
/// string; a Cloud API `wamid.` is base64, whose alphabet holds `/` and `+`.
pub fn safe_id(id: &str) -> bool {
    !id.bytes().all(|b| b == b'.') && !id.chars().any(char::is_control)
}

/// A JSON string at `path` (object keys, or array indexes as numbers).
pub fn string_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut at = v;
    for p in path {
        at = match p.parse::<usize>() {
            Ok(i) => at.get(i)?,
            Err(_) => at.get(*p)?,
        };
    }
    at.as_str().map(str::trim).filter(|s| !s.is_empty())
}
