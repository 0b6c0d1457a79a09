//! The HTTP client side: one pooled client shared by every gateway that needs no TLS settings of
//! its own (so gateways on the same host reuse connections), and a capped read of answers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;

use crate::config::TlsConfig;
use crate::error::PollError;
use crate::sync::lock;

/// No gateway answer we read is anywhere near this; a larger one is broken or hostile.
pub const MAX_BODY: usize = 4 << 20;
/// The listing of a whole server (every instance with its settings, about 1.5 KiB each on
/// Evolution API) may be far larger: 64 MiB holds some 40,000 instances. A listing is read by
/// [`stream`], a piece at a time, so this caps the work of one poll, not its memory.
pub const MAX_LISTING_BODY: usize = 64 << 20;
/// Answers up to this size are read without asking the shared budget: with the polls in flight
/// capped, they add up to little.
pub const FREE_BODY: usize = 64 << 10;
/// Bytes of answers larger than [`FREE_BODY`] held in memory at once, over every gateway: six
/// answers of [`MAX_BODY`]. An answer that needs more waits (within its poll's timeout) until
/// others are done, so 200 gateways trickling 4 MiB each stay within the shipped memory limit.
pub const BODY_BUDGET: usize = 24 << 20;

static BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(BODY_BUDGET);

/// The bytes of a large answer with their share of [`BUDGET`], given back when the last
/// [`Bytes`] of them is dropped.
struct Budgeted {
    bytes: BytesMut,
    _share: tokio::sync::SemaphorePermit<'static>,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Waits for `n` bytes of the budget.
async fn budget(n: usize) -> tokio::sync::SemaphorePermit<'static> {
    let n = u32::try_from(n.min(MAX_BODY)).unwrap_or(u32::MAX);
    // The semaphore is never closed.
    BUDGET
        .acquire_many(n)
        .await
        .expect("the answer budget is never closed")
}

/// The answer of a gateway, read in full (up to [`MAX_BODY`]).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    pub retry_after: Option<Duration>,
}

impl Answer {
    /// The error a poll reports for a status other than 2xx.
    pub fn check_status(&self) -> Result<(), PollError> {
        status_error(self.status, self.retry_after)
    }
}

/// What [`stream`] tells of an answer whose body it handed over piece by piece.
#[derive(Debug)]
pub struct Streamed {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// Bytes of the body read; 0 for an answer other than 2xx, whose body is not read.
    pub bytes: usize,
}

impl Streamed {
    /// The error a poll reports for a status other than 2xx.
    pub fn check_status(&self) -> Result<(), PollError> {
        status_error(self.status, self.retry_after)
    }
}

fn status_error(status: StatusCode, retry_after: Option<Duration>) -> Result<(), PollError> {
    match status.as_u16() {
        200..=299 => Ok(()),
        code @ (401 | 403) => Err(PollError::Unauthorized(code, "")),
        429 => Err(PollError::RateLimited(retry_after)),
        code => Err(PollError::HttpStatus(code)),
    }
}

/// One request as `/probe?debug=true` tells it. The URL holds tokens in its path for some
/// providers: whoever prints it masks the gateway's secrets first.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub url: String,
    pub status: Option<u16>,
    pub bytes: usize,
    pub took: Duration,
    pub error: Option<String>,
}

tokio::task_local! {
    /// The exchanges of the poll being traced, when one is.
    static TRACE: std::cell::RefCell<Vec<Exchange>>;
}

/// Runs `f` and returns, beside its output, every request that `fetch` made inside it.
pub async fn traced<F: std::future::Future>(f: F) -> (F::Output, Vec<Exchange>) {
    TRACE
        .scope(std::cell::RefCell::new(Vec::new()), async move {
            let out = f.await;
            let trace = TRACE.with(|t| t.take());
            (out, trace)
        })
        .await
}

/// Sends a request and reads its answer, refusing bodies over [`MAX_BODY`] without buffering them.
pub async fn fetch(req: reqwest::RequestBuilder, timeout: Duration) -> Result<Answer, PollError> {
    fetch_limited(req, timeout, MAX_BODY).await
}

/// [`fetch`] with a cap of `max` bytes on the body, for the answers that may be large.
pub async fn fetch_limited(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    max: usize,
) -> Result<Answer, PollError> {
    let (client, request) = req.build_split();
    let request = request.map_err(|e| PollError::from_reqwest(e, timeout))?;
    let asked = Asked::of(&request);
    let result = send(client, request, timeout, max).await;
    asked.record(result.as_ref().map(|a| (a.status.as_u16(), a.body.len())));
    result
}

/// A request of a traced poll, kept until its outcome is known; nothing for the others.
struct Asked(Option<(String, String, std::time::Instant)>);

impl Asked {
    fn of(request: &reqwest::Request) -> Self {
        // Only a traced poll (`/probe?debug=true`) keeps the request: the others, every
        // background poll, do not format its URL.
        let traced = TRACE.try_with(|_| ()).is_ok();
        Asked(traced.then(|| {
            (
                request.method().to_string(),
                request.url().to_string(),
                std::time::Instant::now(),
            )
        }))
    }

    /// Adds the exchange to the trace: its status and bytes read, or its error.
    fn record(self, outcome: Result<(u16, usize), &PollError>) {
        let Some((method, url, start)) = self.0 else {
            return;
        };
        let _ = TRACE.try_with(|t| {
            t.borrow_mut().push(Exchange {
                method,
                url,
                status: outcome.as_ref().ok().map(|(s, _)| *s),
                bytes: outcome.as_ref().map_or(0, |(_, n)| *n),
                took: start.elapsed(),
                error: outcome.err().map(|e| e.to_string()),
            })
        });
    }
}

/// Sends a request and hands its body, when the status is 2xx, to `each` piece by piece as it
/// arrives, up to `max` bytes in all: for a server's listing, which may be far larger than
/// anything worth holding at once. Each piece holds its own size of the answer budget while
/// `each` reads it, and only one piece is held at a time, so a listing costs what it holds, not
/// what it weighs; while the budget is spent, the rest waits in the socket. An error of `each`
/// ends the read. The poll's timeout covers the whole body: whoever polls wraps the call in it.
pub async fn stream(
    req: reqwest::RequestBuilder,
    timeout: Duration,
    max: usize,
    each: impl FnMut(&[u8]) -> Result<(), PollError>,
) -> Result<Streamed, PollError> {
    let (client, request) = req.build_split();
    let request = request.map_err(|e| PollError::from_reqwest(e, timeout))?;
    let asked = Asked::of(&request);
    let result = send_streamed(client, request, timeout, max, each).await;
    asked.record(result.as_ref().map(|s| (s.status.as_u16(), s.bytes)));
    result
}

async fn send_streamed(
    client: reqwest::Client,
    request: reqwest::Request,
    timeout: Duration,
    max: usize,
    mut each: impl FnMut(&[u8]) -> Result<(), PollError>,
) -> Result<Streamed, PollError> {
    let mut resp = client
        .execute(request)
        .await
        .map_err(|e| PollError::from_reqwest(e, timeout))?;
    let mut head = Streamed {
        status: resp.status(),
        retry_after: retry_after(&resp),
        bytes: 0,
    };
    let too_large = || PollError::InvalidResponse(format!("answer larger than {} MiB", max >> 20));
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    if !head.status.is_success() {
        return Ok(head);
    }
    while let Some(piece) = resp
        .chunk()
        .await
        .map_err(|e| PollError::from_reqwest(e, timeout))?
    {
        head.bytes += piece.len();
        if head.bytes > max {
            return Err(too_large());
        }
        let _share = budget_exact(piece.len()).await;
        each(&piece)?;
    }
    Ok(head)
}

/// Waits for exactly `n` bytes of the budget (at most all of it).
async fn budget_exact(n: usize) -> tokio::sync::SemaphorePermit<'static> {
    let n = u32::try_from(n.min(BODY_BUDGET)).unwrap_or(u32::MAX);
    BUDGET
        .acquire_many(n)
        .await
        .expect("the answer budget is never closed")
}

fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()))
}

async fn send(
    client: reqwest::Client,
    request: reqwest::Request,
    timeout: Duration,
    max: usize,
) -> Result<Answer, PollError> {
    let mut resp = client
        .execute(request)
        .await
        .map_err(|e| PollError::from_reqwest(e, timeout))?;
    let status = resp.status();
    let retry_after = retry_after(&resp);
    let too_large = || PollError::InvalidResponse(format!("answer larger than {} MiB", max >> 20));
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let mut body = BytesMut::new();
    // A large answer takes its share of the budget before it is read: all of it at once (its
    // declared length, else the cap), so that answers never hold part of the budget each while
    // waiting for the rest.
    let mut share = None;
    if let Some(n) = declared.map(|n| n as usize).filter(|n| *n > FREE_BODY) {
        share = Some(budget(n).await);
        body.reserve(n);
    }
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| PollError::from_reqwest(e, timeout))?
    {
        if body.len() + chunk.len() > max {
            return Err(too_large());
        }
        if share.is_none() && body.len() + chunk.len() > FREE_BODY {
            share = Some(budget(MAX_BODY).await);
            body.reserve(MAX_BODY - body.len());
        }
        body.extend_from_slice(&chunk);
    }
    let body = match share {
        None => body.freeze(),
        Some(share) => Bytes::from_owner(Budgeted {
            bytes: body,
            _share: share,
        }),
    };
    Ok(Answer {
        status,
        body,
        retry_after,
    })
}

/// Bytes of the answer budget free now, for tests.
pub fn budget_available() -> usize {
    BUDGET.available_permits()
}

/// `Retry-After` as seconds or an HTTP date; capped at a day so a broken header cannot silence a
/// gateway for good.
pub fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let d = match v.trim().parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => httpdate::parse_http_date(v.trim())
            .ok()?
            .duration_since(now)
            .unwrap_or_default(),
    };
    Some(d.min(Duration::from_secs(86_400)))
}

/// A path segment of a URL: ids and tokens are plain alphanumerics in practice, and whatever is
/// not must not break out of its segment.
pub fn path_segment(s: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    /// RFC 3986 unreserved characters stay as they are.
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// Hands out HTTP clients: the shared one, or one per distinct TLS setting.
pub struct Clients {
    shared: reqwest::Client,
    custom: Mutex<HashMap<TlsConfig, reqwest::Client>>,
}

impl Clients {
    pub fn new() -> Result<Self, String> {
        Ok(Clients {
            shared: build(&TlsConfig::default())?,
            custom: Mutex::new(HashMap::new()),
        })
    }

    pub fn get(&self, tls: &TlsConfig) -> Result<reqwest::Client, String> {
        if *tls == TlsConfig::default() {
            return Ok(self.shared.clone());
        }
        let mut custom = lock(&self.custom);
        if let Some(c) = custom.get(tls) {
            return Ok(c.clone());
        }
        let client = build(tls)?;
        custom.insert(tls.clone(), client.clone());
        Ok(client)
    }
}

/// Every HTTP client of the exporter starts here: it names itself, and follows no redirect (a
/// redirect could carry a token or an `Authorization` header to another host, and no API we call
/// redirects).
pub fn builder() -> reqwest::ClientBuilder {
    crate::tls::install_crypto_provider();
    reqwest::Client::builder()
        .user_agent(concat!("whatsapp_exporter/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
}

fn build(tls: &TlsConfig) -> Result<reqwest::Client, String> {
    let mut b = builder().pool_idle_timeout(Duration::from_secs(90));
    if let Some(path) = &tls.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| format!("tls.ca_file: cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            format!(
                "tls.ca_file: {} holds no PEM certificate: {e}",
                path.display()
            )
        })?;
        if certs.is_empty() {
            return Err(format!(
                "tls.ca_file: {} holds no PEM certificate",
                path.display()
            ));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("3C7A1B"), "3C7A1B");
        assert_eq!(path_segment("a/../b c"), "a%2F..%2Fb%20c");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(
            parse_retry_after("99999999", now),
            Some(Duration::from_secs(86_400))
        );
    }

    #[test]
    fn status_mapping() {
        let a = |code: u16| Answer {
            status: StatusCode::from_u16(code).unwrap(),
            body: Bytes::new(),
            retry_after: Some(Duration::from_secs(5)),
        };
        assert!(a(200).check_status().is_ok());
        assert_eq!(a(401).check_status().unwrap_err().reason(), "unauthorized");
        assert_eq!(a(403).check_status().unwrap_err().reason(), "unauthorized");
        assert_eq!(
            a(429).check_status().unwrap_err().retry_after(),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            a(502).check_status().unwrap_err(),
            PollError::HttpStatus(502)
        );
    }
}
