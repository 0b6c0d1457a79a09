//! Graph API errors: what they are told by (code, subcode, type, trace id) and what a poll
//! makes of them.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::phone::{parse, Status};
use crate::error::PollError;
use crate::http::Answer;
use crate::json::integer;
use crate::labels::plain;

/// A Graph API error object, reduced to what may be logged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GraphError {
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    /// `type`, such as `OAuthException`: letters and digits only.
    pub kind: Option<String>,
    /// Meta's id of the failed request, for its support; not secret.
    pub fbtrace_id: Option<String>,
    /// "(#100) Tried accessing nonexisting field": this API version does not know a field we ask.
    pub refuses_a_field: bool,
    /// The field refused, when the message names one of those the exporter asks for.
    pub refused_field: Option<&'static str>,
}

/// The error object of a Graph answer, if the body is one. Graph sends it with 4xx and 5xx, and
/// now and then with 200.
pub fn graph_error(body: &[u8]) -> Option<GraphError> {
    #[derive(Deserialize)]
    struct Envelope {
        #[serde(default)]
        error: Option<Value>,
    }
    let err = serde_json::from_slice::<Envelope>(body).ok()?.error?;
    let Value::Object(e) = err else {
        // `"error": "..."` from something in front of Graph: an error, with nothing to read.
        return Some(GraphError::default());
    };
    let code = e.get("code").and_then(integer);
    // The message is read here only to recognise a refused field; it is never kept or logged.
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase);
    let refuses_a_field = code == Some(100)
        && message
            .as_deref()
            .is_some_and(|m| m.contains("nonexisting field"));
    let refused_field = message
        .as_deref()
        .filter(|_| refuses_a_field)
        .and_then(named_field);
    Some(GraphError {
        code,
        subcode: e.get("error_subcode").and_then(integer),
        kind: e
            .get("type")
            .and_then(Value::as_str)
            .map(|s| plain(s, 40, "")),
        fbtrace_id: e
            .get("fbtrace_id")
            .and_then(Value::as_str)
            .map(|s| plain(s, 64, "_-")),
        refuses_a_field,
        refused_field,
    })
}

/// The field a "nonexisting field (NAME) on node type (...)" message names, if it is one the
/// exporter asks for: only those are kept, as static names.
fn named_field(message: &str) -> Option<&'static str> {
    let rest = &message[message.find("nonexisting field")?..];
    let name = rest.split_once('(')?.1.split_once(')')?.0.trim();
    super::ASKED_FIELDS.iter().copied().find(|f| *f == name)
}

/// The error a Graph error stands for: Graph's own code says more than the HTTP status.
pub fn graph_poll_error(g: &GraphError, http: u16, retry_after: Option<Duration>) -> PollError {
    match g.code {
        Some(190) => PollError::Unauthorized(
            http,
            ", Graph error 190: the access token is invalid or expired",
        ),
        Some(0 | 3 | 10 | 102 | 200..=299) => PollError::Unauthorized(
            http,
            ", Graph permission error: the token needs whatsapp_business_management for this number",
        ),
        Some(4 | 17 | 32 | 613 | 80007 | 130429) => PollError::RateLimited(retry_after),
        Some(803) => PollError::NotFound(
            http,
            ", Graph error 803: no phone number with this phone_number_id (wrong id, or deleted)",
        ),
        _ => match http {
            401 | 403 => PollError::Unauthorized(http, ""),
            429 => PollError::RateLimited(retry_after),
            200..=299 => PollError::InvalidResponse(format!(
                "a Graph API error (code {}) in an HTTP {http} answer",
                g.code.map_or("none".to_string(), |c| c.to_string())
            )),
            other => PollError::HttpStatus(other),
        },
    }
}

/// What an answer means: the number's status, or why the poll failed.
pub fn judge(answer: &Answer, graph: Option<&GraphError>) -> Result<Status, PollError> {
    if let Some(g) = graph {
        return Err(graph_poll_error(
            g,
            answer.status.as_u16(),
            answer.retry_after,
        ));
    }
    answer.check_status()?;
    parse(&answer.body)
}
