//! Why a poll failed. Each variant has a fixed `reason`, the label of
//! `whatsapp_poll_failures_total`; the message is for the log and the status page and never holds
//! a URL, a token or anything copied from the answer's body.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PollError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot reach the gateway: {0}")]
    Connect(String),
    #[error("the gateway answered HTTP {0}")]
    HttpStatus(u16),
    #[error("the gateway refused the credentials (HTTP {0}{1})")]
    Unauthorized(u16, &'static str),
    #[error("rate limited by the gateway{}", retry_hint(*.0))]
    RateLimited(Option<Duration>),
    #[error("invalid answer: {0}")]
    InvalidResponse(String),
    /// The gateway answered, and says the instance or number asked for does not exist (deleted,
    /// expired, or an id and token that do not belong together).
    #[error("the gateway does not know this instance or number (HTTP {0}{1})")]
    NotFound(u16, &'static str),
}

fn retry_hint(d: Option<Duration>) -> String {
    d.map(|d| format!(" (retry after {}s)", d.as_secs()))
        .unwrap_or_default()
}

crate::labels::closed_set! {
    /// The label values of `reason`, in the order they are exposed.
    pub enum Reason {
        Timeout => "timeout",
        Connect => "connect",
        HttpStatus => "http_status",
        Unauthorized => "unauthorized",
        RateLimited => "rate_limited",
        InvalidResponse => "invalid_response",
        NotFound => "not_found",
    }
}

impl PollError {
    pub fn reason(&self) -> Reason {
        match self {
            PollError::Timeout(_) => Reason::Timeout,
            PollError::Connect(_) => Reason::Connect,
            PollError::HttpStatus(_) => Reason::HttpStatus,
            PollError::Unauthorized(..) => Reason::Unauthorized,
            PollError::RateLimited(_) => Reason::RateLimited,
            PollError::InvalidResponse(_) => Reason::InvalidResponse,
            PollError::NotFound(..) => Reason::NotFound,
        }
    }

    /// How long the gateway asked us to wait before the next request.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PollError::RateLimited(d) => *d,
            _ => None,
        }
    }

    /// Maps a client error, dropping its URL (tokens sit in URL paths) and keeping the chain of
    /// causes, which is where "connection refused" or the TLS problem is told.
    pub fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            return PollError::Timeout(timeout);
        }
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !msg.contains(&text) {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            source = s.source();
        }
        if e.is_body() || e.is_decode() {
            PollError::InvalidResponse(msg)
        } else {
            PollError::Connect(msg)
        }
    }

    /// A JSON error told by position and category only: serde's own message can quote the input.
    pub fn from_json(e: &serde_json::Error) -> Self {
        PollError::InvalidResponse(crate::json::describe_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_never_quote_the_body() {
        let err = serde_json::from_str::<bool>("\"5511999998888\"").unwrap_err();
        assert!(
            err.to_string().contains("5511999998888"),
            "serde quotes input: the reason we wrap it"
        );
        let mapped = PollError::from_json(&err);
        assert_eq!(mapped.reason(), Reason::InvalidResponse);
        assert!(!mapped.to_string().contains("5511999998888"), "{mapped}");
    }

    #[test]
    fn reasons_are_fixed() {
        assert_eq!(
            PollError::Unauthorized(401, "").reason().as_str(),
            "unauthorized"
        );
        assert_eq!(
            PollError::RateLimited(None).reason().as_str(),
            "rate_limited"
        );
        assert_eq!(PollError::HttpStatus(500).reason().as_str(), "http_status");
        assert_eq!(PollError::NotFound(404, "").reason().as_str(), "not_found");
        assert_eq!(
            PollError::NotFound(400, ", the instance is deleted").to_string(),
            "the gateway does not know this instance or number (HTTP 400, the instance is deleted)"
        );
        assert_eq!(
            PollError::RateLimited(Some(Duration::from_secs(7))).to_string(),
            "rate limited by the gateway (retry after 7s)"
        );
    }
}
