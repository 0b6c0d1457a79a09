//! The HTTP server (hyper 1): routing, `/metrics`, `/probe`, health, reload and webhooks.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::conns::{Admitted, ConnState, Conns};
use crate::exporter::{Exporter, SHUTDOWN_GRACE};
use crate::respond::{html, text, Body, METRICS_CONTENT_TYPE};
use crate::status_page;
use crate::web_config::WebConfig;

/// Connections served at once (fewer when the limit on open files is lower): a newcomer beyond
/// it closes the oldest connection that has not sent a request yet (see [`crate::conns`]).
pub const MAX_CONNECTIONS: usize = 1024;
/// The share of [`MAX_CONNECTIONS`] one client address may hold.
pub const MAX_CONNECTIONS_PER_CLIENT: usize = MAX_CONNECTIONS / 2;
/// File descriptors kept for everything but the server's connections: polls, files, logs.
pub const FD_RESERVE: u64 = 256;
/// A client that has not sent its headers by then is dropped (slow-loris); the same bounds a TLS
/// handshake. Prometheus sends its request at once.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Request heads larger than this are answered 431.
pub const MAX_HEAD: usize = 64 * 1024;

/// How many connections the server may hold with the soft limit on open files `fds`.
pub fn connection_cap(fds: Option<u64>) -> usize {
    let room = fds
        .map_or(u64::MAX, |n| n.saturating_sub(FD_RESERVE))
        .max(16);
    MAX_CONNECTIONS.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// The endpoints' own settings from the command line.
#[derive(Debug)]
pub struct Endpoints {
    /// `--web.telemetry-path`.
    pub telemetry_path: String,
    /// Scrapes and probes served at once (`--web.max-requests`); `None` for no limit.
    pub scrapes: Option<Semaphore>,
}

impl Endpoints {
    pub fn new(telemetry_path: String, max_requests: usize) -> Self {
        Endpoints {
            telemetry_path,
            scrapes: (max_requests > 0).then(|| Semaphore::new(max_requests)),
        }
    }
}

impl Default for Endpoints {
    /// As the command line's defaults.
    fn default() -> Self {
        Endpoints::new("/metrics".into(), 40)
    }
}

/// Accepts connections until `stop`, then lets open ones finish for a moment.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    web: Arc<WebConfig>,
    endpoints: Arc<Endpoints>,
    stop: CancellationToken,
) {
    defer_accept(&listener);
    let tls = web.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let cap = connection_cap(crate::fdlimit::current());
    let conns = Conns::new(cap, MAX_CONNECTIONS_PER_CLIENT.min(cap));
    let tracker = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors: free one from the connections that wait for
                    // nothing, instead of spinning or waiting for them to time out.
                    let room = is_out_of_fds(&e) && conns.make_room();
                    crate::logging::warn_limited!(error = %e, closed_one = room, "accept failed");
                    tokio::time::sleep(Duration::from_millis(if room { 5 } else { 50 })).await;
                    continue;
                }
            },
        };
        let Some(admitted) = conns.admit(peer.ip()) else {
            crate::logging::debug_limited!("every connection is busy; closing a new one");
            continue;
        };
        let (exporter, web, stop, tls) = (exporter.clone(), web.clone(), stop.clone(), tls.clone());
        let (conns, endpoints) = (conns.clone(), endpoints.clone());
        if head_sent(&stream) {
            admitted.state.mark_head_sent();
        }
        tracker.spawn(async move {
            let evicted = admitted.state.evicted().clone();
            let served = async {
                match tls {
                    None => {
                        serve_connection(stream, exporter, web, endpoints, &conns, &admitted, stop)
                            .await
                    }
                    Some(acceptor) => {
                        // Plain HTTP sent to a TLS port fails the handshake here and is closed.
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(tls_stream)) => {
                                let site = (exporter, web, endpoints);
                                serve_connection(
                                    tls_stream, site.0, site.1, site.2, &conns, &admitted, stop,
                                )
                                .await
                            }
                            Ok(Err(e)) => crate::logging::debug_limited!(error = %e, "TLS handshake failed"),
                            Err(_) => crate::logging::debug_limited!("TLS handshake timed out"),
                        }
                    }
                }
            };
            tokio::select! {
                _ = served => {}
                _ = evicted.cancelled() => crate::logging::debug_limited!("connection closed to make room for another"),
            }
            drop(admitted);
        });
    }
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
}

/// Connections are handed over by the kernel only once their first bytes have come (or after
/// [`HEADER_READ_TIMEOUT`]): a client that connects and says nothing holds no slot meanwhile, and
/// a scraper's request head is there when its connection is accepted, so that [`head_sent`]
/// sees it. Where the option is missing, connections are accepted as before.
#[cfg(target_os = "linux")]
fn defer_accept(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    let secs: libc::c_int = HEADER_READ_TIMEOUT.as_secs().try_into().unwrap_or(5);
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a pointer to a live `c_int`, on
    // the listener's own descriptor, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            listener.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::from_ref(&secs).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "TCP_DEFER_ACCEPT not set");
    }
}

#[cfg(not(target_os = "linux"))]
fn defer_accept(_: &TcpListener) {}

/// Whether a whole request head is already waiting on a new connection, as when Prometheus
/// connects and sends its request at once; looked at without waiting and without reading (hyper
/// reads it). A TLS connection shows its handshake here, never a head.
fn head_sent(stream: &tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut peeked = tokio::io::ReadBuf::new(&mut buf);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match stream.poll_peek(&mut cx, &mut peeked) {
        std::task::Poll::Ready(Ok(_)) => peeked.filled().windows(4).any(|w| w == b"\r\n\r\n"),
        _ => false,
    }
}

fn is_out_of_fds(e: &std::io::Error) -> bool {
    // EMFILE and ENFILE on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

#[allow(clippy::too_many_arguments)]
async fn serve_connection<S>(
    stream: S,
    exporter: Arc<Exporter>,
    web: Arc<WebConfig>,
    endpoints: Arc<Endpoints>,
    conns: &Arc<Conns>,
    admitted: &Admitted,
    stop: CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (c, state) = (conns.clone(), admitted.state.clone());
    let svc = service_fn(move |req| {
        let (exporter, web, c, state) = (exporter.clone(), web.clone(), c.clone(), state.clone());
        let endpoints = endpoints.clone();
        async move {
            let _busy = c.busy(&state);
            handle(exporter, web, &endpoints, req, (&c, &state)).await
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_HEAD);
    let conn = builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_millis(500), conn).await;
        }
    }
}

async fn handle(
    ex: Arc<Exporter>,
    web: Arc<WebConfig>,
    endpoints: &Endpoints,
    req: Request<Incoming>,
    conn: (&Conns, &ConnState),
) -> Result<Response<Body>, Infallible> {
    let mut resp = match authorised(&web, &req, conn).await {
        true => {
            // Nothing after a webhook's body awaits: closing the connection for another while
            // the body arrives loses nothing of what was accepted.
            let _receiving = req
                .uri()
                .path()
                .starts_with("/webhooks/")
                .then(|| conn.0.receiving(conn.1));
            route(ex, endpoints, req).await
        }
        false => {
            let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"whatsapp_exporter\""),
            );
            r
        }
    };
    for (k, v) in &web.headers {
        resp.headers_mut().insert(k.clone(), v.clone());
    }
    Ok(resp)
}

/// Basic auth, when configured, guards every endpoint but the webhooks, which carry their own
/// secret or signature because the providers cannot send these credentials. While credentials
/// never seen before wait for their bcrypt check, the connection may be closed to make room for
/// another.
async fn authorised(web: &WebConfig, req: &Request<Incoming>, conn: (&Conns, &ConnState)) -> bool {
    let Some(auth) = &web.auth else { return true };
    if req.uri().path().starts_with("/webhooks/") {
        return true;
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(known) = auth.check_cached(header) {
        return known;
    }
    let _waiting = conn.0.waiting(conn.1);
    auth.check(header).await
}

async fn route(ex: Arc<Exporter>, endpoints: &Endpoints, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let telemetry = path == endpoints.telemetry_path;
    if get && (telemetry || path == "/probe") {
        // Past the limit a scrape is refused at once rather than queued behind renders.
        let permit = match &endpoints.scrapes {
            Some(s) => match s.try_acquire() {
                Ok(p) => Some(p),
                Err(_) => {
                    return text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many scrapes at once (--web.max-requests)\n",
                    )
                }
            },
            None => None,
        };
        let resp = if telemetry {
            metrics(ex, &req).await
        } else {
            crate::probe::handle(&ex, req.uri().query(), req.headers()).await
        };
        drop(permit);
        return resp;
    }
    match path {
        "/" if get => html(status_page::render(&ex)),
        "/-/healthy" if get => text(StatusCode::OK, "Healthy\n"),
        "/-/ready" if get => text(StatusCode::OK, "Ready\n"),
        "/sd" if get => crate::probe::sd::handle(&ex),
        "/-/reload" if matches!(*req.method(), Method::POST | Method::PUT) => reload(&ex).await,
        "/-/reload" => method_not_allowed("POST, PUT"),
        "/probe" | "/" | "/-/healthy" | "/-/ready" | "/sd" => method_not_allowed("GET, HEAD"),
        _ if telemetry => method_not_allowed("GET, HEAD"),
        p if p.starts_with("/webhooks/plugchat/") => ex.plugchat.handle(req).await,
        p if p.starts_with(crate::receiver::PATH_PREFIX) => ex.receiver.handle(req).await,
        _ => text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}

/// Rendered on the blocking pool: at 10,000 gateways a page takes tens of milliseconds, which
/// the runtime thread spends on polls and webhooks instead.
async fn metrics(ex: Arc<Exporter>, req: &Request<Incoming>) -> Response<Body> {
    let gzip = accepts_gzip(req);
    let body = match tokio::task::spawn_blocking(move || ex.render_metrics(gzip)).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            return text(StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n");
        }
    };
    let mut resp = Response::new(Body::new(body.into()));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    resp
}

/// Whether the client takes gzip; Prometheus always does.
fn accepts_gzip(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';').map(str::trim);
            parts.next() == Some("gzip") && !parts.any(|p| p == "q=0")
        })
}

async fn reload(ex: &Exporter) -> Response<Body> {
    match ex.reload().await {
        Ok(()) => text(StatusCode::OK, "configuration reloaded\n"),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("configuration refused, the running one stays:\n{e}\n"),
        ),
    }
}
