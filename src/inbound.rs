//! Reading a pushed request, the one way every webhook receiver does it: the content type, a body
//! capped in size and time, and secrets compared in constant time. Nothing here logs; nothing
//! here keeps the query string, a header or the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::header::{self, HeaderMap, HeaderValue};
use subtle::ConstantTimeEq;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    /// The shared [`BodyBudget`] has no room for it now.
    Overloaded,
}

/// The bytes of webhook bodies held before they can be authenticated (a signature over the body
/// is checked only once it is whole), shared by every connection: without it, each connection
/// holds up to its own cap, and a few hundred stalled unsigned bodies exhaust the process's
/// memory. A body that finds no room is refused at once (503), never queued: a queue would hold
/// the connection and its buffers all the same.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(bytes: usize) -> Self {
        BodyBudget {
            bytes: Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    /// Bytes free now.
    pub fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    fn take(
        budget: Option<&Self>,
        n: usize,
        held: &mut Option<OwnedSemaphorePermit>,
    ) -> Result<(), BodyError> {
        let Some(budget) = budget.filter(|_| n > 0) else {
            return Ok(());
        };
        let n = u32::try_from(n).map_err(|_| BodyError::TooLarge)?;
        let p = budget
            .bytes
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Overloaded)?;
        match held {
            Some(h) => h.merge(p),
            None => *held = Some(p),
        }
        Ok(())
    }
}

/// A body read under a [`BodyBudget`]: its bytes stay counted there until it is dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _held: Option<OwnedSemaphorePermit>,
}

/// Reads a body of at most `max` bytes within [`BODY_TIMEOUT`]; with a `budget`, every byte of its
/// buffer is taken from it as it arrives (all of a declared length before the first byte is read,
/// so that a flood is refused on its headers alone).
pub async fn read_body_budgeted<B>(
    body: B,
    max: usize,
    declared: Option<u64>,
    budget: Option<&BodyBudget>,
) -> Result<HeldBody, BodyError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut held = None;
    let mut buf = BytesMut::new();
    if let Some(n) = declared {
        let n = usize::try_from(n).map_err(|_| BodyError::TooLarge)?;
        if n > max {
            return Err(BodyError::TooLarge);
        }
        buf.reserve(n);
        BodyBudget::take(budget, buf.capacity(), &mut held)?;
    }
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut counted = buf.capacity();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.map_err(|_| BodyError::Broken)?.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > max {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
            // What the buffer holds, growth included, is what counts.
            BodyBudget::take(budget, buf.capacity().saturating_sub(counted), &mut held)?;
            counted = counted.max(buf.capacity());
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Err(_) => Err(BodyError::Timeout),
        Ok(Err(e)) => Err(e),
        Ok(Ok(())) => Ok(HeldBody {
            bytes: buf.freeze(),
            _held: held,
        }),
    }
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
    use http_body_util::Full;

    /// A body that arrives in the given chunks.
    struct Chunks(std::collections::VecDeque<&'static [u8]>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
            let next = self.0.pop_front();
            std::task::Poll::Ready(
                next.map(|c| Ok(hyper::body::Frame::data(Bytes::from_static(c)))),
            )
        }
    }

    fn chunks(parts: Vec<&'static [u8]>) -> Chunks {
        Chunks(parts.into())
    }

    #[tokio::test]
    async fn bodies_take_the_shared_budget_and_give_it_back() {
        let budget = BodyBudget::new(1000);
        let a = read_body_budgeted(
            Full::new(Bytes::from_static(&[b'x'; 600])),
            900,
            Some(600),
            Some(&budget),
        )
        .await
        .unwrap();
        assert_eq!(a.bytes.len(), 600);
        assert!(budget.available() <= 400, "the held body counts");
        // A second body that does not fit is refused on its declared length alone.
        let b = read_body_budgeted(
            Full::new(Bytes::from_static(&[b'x'; 600])),
            900,
            Some(600),
            Some(&budget),
        )
        .await;
        assert_eq!(b.err(), Some(BodyError::Overloaded));
        // Nor does one without a length, refused as its chunks arrive.
        let c = read_body_budgeted(
            chunks(vec![&[b'y'; 300], &[b'y'; 300]]),
            900,
            None,
            Some(&budget),
        )
        .await;
        assert_eq!(c.err(), Some(BodyError::Overloaded));
        drop(a);
        assert_eq!(budget.available(), 1000, "everything comes back");
        let d = read_body_budgeted(
            chunks(vec![&[b'y'; 300], &[b'y'; 300]]),
            900,
            None,
            Some(&budget),
        )
        .await
        .unwrap();
        assert_eq!(&d.bytes[..], &[b'y'; 600][..]);
        let e = read_body_budgeted(chunks(vec![&[b'z'; 300]]), 200, None, Some(&budget)).await;
        assert_eq!(e.err(), Some(BodyError::TooLarge));
        let f = read_body_budgeted(Full::new(Bytes::new()), 200, Some(900), Some(&budget)).await;
        assert_eq!(f.err(), Some(BodyError::TooLarge), "declared over the cap");
    }

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
