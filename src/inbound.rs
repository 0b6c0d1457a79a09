//! Reading a pushed request, the one way every webhook receiver does it: the content type, a body
//! capped in size and time, and secrets compared in constant time. Nothing here logs; nothing
//! here keeps the query string, a header or the body.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// A body that has not arrived by then will not: the sender is gone or hostile.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// JSON is expected; a missing type is forgiven (senders differ), a different one is not.
pub fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(v) = headers.get(header::CONTENT_TYPE) else {
        return true;
    };
    let Ok(v) = v.to_str() else {
        return false;
    };
    let mime = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime.is_empty()
        || mime == "application/json"
        || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// `Content-Length`, when given: a body declared too large is refused before it is read.
pub fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Broken,
    Timeout,
}

/// Reads a body of at most `max` bytes within [`BODY_TIMEOUT`] (a chunked body has no length to
/// refuse early).
pub async fn read_body<B>(body: B, max: usize) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collect = Limited::new(body, max).collect();
    match tokio::time::timeout(BODY_TIMEOUT, collect).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Ok(c)) => Ok(c.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

/// Two secrets compared in constant time (only the length can leak, and secrets are long).
pub fn same_secret(given: &[u8], secret: &Secret) -> bool {
    bool::from(given.ct_eq(secret.expose().as_bytes()))
}

/// Whether the first `key` query parameter is the secret.
pub fn query_secret_matches(secret: &Secret, query: Option<&str>, key: &str) -> bool {
    let given = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    });
    given.is_some_and(|g| same_secret(g.as_bytes(), secret))
}

/// Whether `Authorization` is `Bearer <secret>`, the whole value compared in constant time.
pub fn bearer_matches(secret: &Secret, value: Option<&HeaderValue>) -> bool {
    let Some(v) = value else { return false };
    let want = format!("Bearer {}", secret.expose());
    bool::from(v.as_bytes().ct_eq(want.as_bytes()))
}

/// The `N` bytes of a hex signature (either case), exactly `2 * N` digits; `None` for anything
/// else, signs and spaces included.
pub fn decode_hex<const N: usize>(hex: &[u8]) -> Option<[u8; N]> {
    if hex.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_from_the_query() {
        let s = Secret::new("a+b/c=d&e 0123456789".into());
        let enc: String = form_urlencoded::byte_serialize(s.expose().as_bytes()).collect();
        assert!(query_secret_matches(
            &s,
            Some(&format!("x=1&secret={enc}")),
            "secret"
        ));
        assert!(!query_secret_matches(&s, Some("secret="), "secret"));
        assert!(!query_secret_matches(&s, None, "secret"));
        assert!(!query_secret_matches(
            &s,
            Some(&format!("secret=wrong&secret={enc}")),
            "secret"
        ));
    }

    #[test]
    fn hex_signatures() {
        assert_eq!(decode_hex::<2>(b"0aFf"), Some([0x0a, 0xff]));
        assert_eq!(decode_hex::<2>(b"0aF"), None, "too short");
        assert_eq!(decode_hex::<1>(b"+f"), None, "a sign is no digit");
        assert_eq!(decode_hex::<1>(b"g0"), None);
    }

    #[test]
    fn bearer_tokens() {
        let s = Secret::new("tok-0123456789abcdef".into());
        let h = |v: &str| HeaderValue::from_str(v).unwrap();
        assert!(bearer_matches(&s, Some(&h("Bearer tok-0123456789abcdef"))));
        assert!(!bearer_matches(&s, Some(&h("tok-0123456789abcdef"))));
        assert!(!bearer_matches(&s, Some(&h("Bearer tok-0123456789abcdeF"))));
        assert!(!bearer_matches(&s, Some(&h("Basic tok-0123456789abcdef"))));
        assert!(!bearer_matches(&s, None));
    }

    #[test]
    fn content_types() {
        let h = |v: Option<&str>| {
            let mut m = HeaderMap::new();
            if let Some(v) = v {
                m.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            }
            json_content_type(&m)
        };
        assert!(h(None));
        assert!(h(Some("application/json")));
        assert!(h(Some("Application/JSON; charset=UTF-8")));
        assert!(h(Some("application/vnd.plugchat+json")));
        assert!(!h(Some("text/plain")));
        assert!(!h(Some("application/x-www-form-urlencoded")));
        assert!(!h(Some("multipart/form-data; boundary=x")));
    }
}
