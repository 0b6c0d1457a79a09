//! Test support: mock gateways on 127.0.0.1, the exporter started on port 0 from a config file,
//! captured logs, and reading samples out of `/metrics`.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use whatsapp_exporter::{ConfigSource, RunOptions, Running};

/// A request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub type MockBody = BoxBody<Bytes, Infallible>;
type Handler =
    Arc<dyn Fn(Seen) -> Pin<Box<dyn Future<Output = Response<MockBody>> + Send>> + Send + Sync>;

/// A gateway on 127.0.0.1 that answers with `handler`, and remembers what it was asked.
pub struct Mock {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Seen>>>,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Mock {
    pub async fn start<F, Fut>(handler: F) -> Mock
    where
        F: Fn(Seen) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<MockBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |s| Box::pin(handler(s)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(AtomicUsize::new(0));
        let (r, h) = (requests.clone(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, r, h) = (handler.clone(), r.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (handler, r, h) = (handler.clone(), r.clone(), h.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method,
                                path: parts.uri.path().to_string(),
                                query: parts.uri.query().unwrap_or("").to_string(),
                                headers: parts.headers,
                                body,
                            };
                            r.lock().unwrap().push(seen.clone());
                            h.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(handler(seen).await)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Mock {
            addr,
            requests,
            hits,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A JSON (or any text) answer.
pub fn reply(status: u16, body: impl Into<Bytes>) -> Response<MockBody> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// An answer whose body never ends (and never exceeds memory on our side either).
pub fn endless(status: u16) -> Response<MockBody> {
    let mut r = Response::new(Endless.boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 64 * 1024] = [b' '; 64 * 1024];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK)))))
    }
}

/// Everything the exporter logged in this test binary (logfmt, debug level).
pub fn logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = CaptureWriter(buf.clone());
        let _ = whatsapp_exporter::logging::init(
            whatsapp_exporter::logging::Level::Debug,
            whatsapp_exporter::logging::Format::Logfmt,
            move || writer.clone(),
        );
        buf
    })
}

#[derive(Clone)]
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The exporter, started on 127.0.0.1:0 from `yaml` written to a file (so that reload works).
pub struct Exporter {
    pub running: Option<Running>,
    pub config_path: PathBuf,
    _dir: TempDir,
}

impl Exporter {
    pub async fn start(yaml: &str) -> Exporter {
        Self::try_start(yaml)
            .await
            .unwrap_or_else(|e| panic!("exporter did not start: {e}"))
    }

    pub async fn try_start(yaml: &str) -> Result<Exporter, String> {
        Self::try_start_with_web(yaml, None).await
    }

    /// Starts with `--web.config.file` holding `web_yaml`; `dir` may hold its certificates.
    pub async fn try_start_with_web(
        yaml: &str,
        web_yaml: Option<&str>,
    ) -> Result<Exporter, String> {
        Self::try_start_full(yaml, web_yaml, whatsapp_exporter::Polling::default()).await
    }

    pub async fn try_start_full(
        yaml: &str,
        web_yaml: Option<&str>,
        polling: whatsapp_exporter::Polling,
    ) -> Result<Exporter, String> {
        Self::try_start_stored(yaml, web_yaml, polling, None).await
    }

    /// Starts with `--storage.path` `storage` too.
    pub async fn try_start_stored(
        yaml: &str,
        web_yaml: Option<&str>,
        polling: whatsapp_exporter::Polling,
        storage: Option<PathBuf>,
    ) -> Result<Exporter, String> {
        log_buffer();
        let dir = TempDir::new();
        let web_config = web_yaml.map(|w| {
            let p = dir.0.join("web.yml");
            std::fs::write(&p, w).unwrap();
            p
        });
        let config_path = dir.0.join("whatsapp_exporter.yml");
        std::fs::File::create(&config_path)
            .and_then(|mut f| f.write_all(yaml.as_bytes()))
            .unwrap();
        let running = whatsapp_exporter::start(RunOptions {
            config: ConfigSource::File(config_path.clone()),
            listen: vec!["127.0.0.1:0".into()],
            demo: false,
            web_config,
            polling,
            endpoints: Default::default(),
            storage,
        })
        .await
        .map_err(|e| e.to_string())?;
        Ok(Exporter {
            running: Some(running),
            config_path,
            _dir: dir,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.running.as_ref().unwrap().addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr(), path)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let r = client().get(self.url(path)).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// The status of a GET, or `None` when the connection failed.
    pub async fn get_checked(&self, path: &str) -> Option<u16> {
        client()
            .get(self.url(path))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    pub async fn metrics(&self) -> String {
        let (code, body) = self.get("/metrics").await;
        assert_eq!(code, 200);
        body
    }

    pub fn write_config(&self, yaml: &str) {
        std::fs::write(&self.config_path, yaml).unwrap();
    }

    /// Polls `/metrics` until `cond` holds, for at most `secs` seconds (real time).
    pub async fn wait_for(&self, secs: u64, cond: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let m = self.metrics().await;
            if cond(&m) {
                return m;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("condition not met within {secs}s; last /metrics:\n{m}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

pub fn client() -> reqwest::Client {
    whatsapp_exporter::install_crypto_provider();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The value of the sample `name{labels...}` whose labels include all of `labels`.
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text, name, labels).into_iter().next()
}

/// Every value of `name` whose labels include all of `labels`.
pub fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap(),
            })
        })
        .collect()
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "wa-exporter-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The answer a fixture of `tests/fixtures/real/` gives for `path`: its status and its body as
/// the provider sends it (`<provider>/<case>.json`, `answers.<path>.{status, body}`).
pub fn fixture(file: &str, path: &str) -> (u16, String) {
    let full = format!("tests/fixtures/real/{file}");
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let a = &v["answers"][path];
    assert!(!a.is_null(), "{full} has no answer for {path}");
    (a["status"].as_u64().unwrap() as u16, a["body"].to_string())
}

impl Exporter {
    /// Polls the gateway `name` once now, as its schedule would.
    pub async fn poll(&self, name: &str) {
        let gw = self
            .running
            .as_ref()
            .unwrap()
            .exporter
            .gateway(name)
            .unwrap_or_else(|| panic!("no gateway {name}"));
        let _ = gw.poll().await;
    }
}

/// A configuration whose gateways poll once an hour, at a point of the hour far from now: the
/// test polls them itself with [`Exporter::poll`].
pub fn hourly(gateways: &str) -> String {
    for name in gateways
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
    {
        let offset = whatsapp_exporter::scheduler::start_offset(name, Duration::from_secs(3600));
        assert!(
            offset > Duration::from_secs(120),
            "gateway {name} would be polled by its schedule during the test: pick another name"
        );
    }
    format!("global:\n  interval: 1h\n  timeout: 5s\ngateways:\n{gateways}")
}

/// A webhook fixture of `tests/fixtures/webhooks/<provider>/<name>.json` (documented bodies, each
/// with its source).
pub fn webhook_fixture(provider: &str, name: &str) -> serde_json::Value {
    let path = format!(
        "{}/tests/fixtures/webhooks/{provider}/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

/// The body of a fixture as it is posted: its `raw_body` when it has one (signed bytes), else
/// its `body` serialised.
pub fn fixture_body(provider: &str, name: &str) -> String {
    let f = webhook_fixture(provider, name);
    match f["raw_body"].as_str() {
        Some(raw) => raw.to_string(),
        None => serde_json::to_string(&f["body"]).unwrap(),
    }
}

/// The current Unix time in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The exporter with `--demo` on port 0: the simulated gateways in the process, and a fixed
/// configuration (there is no file to reload).
pub async fn start_demo() -> Running {
    let config = whatsapp_exporter::demo::start().await.unwrap();
    assert!(matches!(config, ConfigSource::Fixed(_)));
    whatsapp_exporter::start(RunOptions {
        config,
        listen: vec!["127.0.0.1:0".into()],
        demo: true,
        web_config: None,
        polling: Default::default(),
        endpoints: Default::default(),
        storage: None,
    })
    .await
    .unwrap()
}
