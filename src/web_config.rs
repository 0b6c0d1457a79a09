//! `--web.config.file`: TLS (with optional client certificates) and basic auth for every
//! endpoint, in the exporter-toolkit `web-config.yml` format that Prometheus users already know.
//!
//! Certificate and key files are checked for changes at most once a second and read again when
//! they change, so a rotated certificate is served without a restart. Basic auth applies to every
//! endpoint except the webhook routes, which PlugChat cannot send credentials to: those are
//! authenticated by their own secret.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    // Accepted for compatibility with existing files; rustls chooses only secure suites and curves.
    #[allow(dead_code)]
    cipher_suites: Option<Vec<String>>,
    #[allow(dead_code)]
    curve_preferences: Option<Vec<String>>,
    #[allow(dead_code)]
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The web configuration, validated; the default serves plain HTTP with no auth.
#[derive(Default)]
pub struct WebConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub auth: Option<Arc<BasicAuth>>,
    pub headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("basic_auth", &self.auth.is_some())
            .finish()
    }
}

/// Reads and validates a web configuration file; every error says which key is wrong.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    crate::tls::install_crypto_provider();
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let raw: RawWebConfig = if text.trim().is_empty() {
        RawWebConfig {
            tls_server_config: None,
            http_server_config: None,
            basic_auth_users: BTreeMap::new(),
        }
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
    };
    let tls = raw.tls_server_config.map(tls_config).transpose()?;
    let auth = if raw.basic_auth_users.is_empty() {
        None
    } else {
        for (user, hash) in &raw.basic_auth_users {
            check_hash(hash).map_err(|why| format!("basic_auth_users: {user}: {why} (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"))?;
        }
        Some(Arc::new(BasicAuth::new(raw.basic_auth_users)))
    };
    let mut headers = Vec::new();
    for (k, v) in raw
        .http_server_config
        .map(|h| h.headers)
        .unwrap_or_default()
    {
        let name = hyper::header::HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("http_server_config: headers: {k:?} is not a header name"))?;
        let value = hyper::header::HeaderValue::from_str(&v)
            .map_err(|_| format!("http_server_config: headers: {k}: not a valid header value"))?;
        headers.push((name, value));
    }
    Ok(WebConfig { tls, auth, headers })
}

fn tls_config(raw: RawTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let (Some(cert_file), Some(key_file)) = (raw.cert_file, raw.key_file) else {
        return Err("tls_server_config: needs cert_file and key_file".into());
    };
    let versions = protocol_versions(raw.min_version.as_deref(), raw.max_version.as_deref())?;
    let builder = rustls::ServerConfig::builder_with_protocol_versions(&versions);
    let client_auth = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match client_auth {
        "NoClientCert" => builder.with_no_client_auth(),
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let ca = raw
                .client_ca_file
                .as_ref()
                .ok_or_else(|| format!("tls_server_config: client_auth_type {client_auth} needs client_ca_file"))?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(ca, "client_ca_file")? {
                roots
                    .add(cert)
                    .map_err(|e| format!("tls_server_config: client_ca_file: {e}"))?;
            }
            let mut verifier = WebPkiClientVerifier::builder(Arc::new(roots));
            if client_auth == "VerifyClientCertIfGiven" {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config: client_ca_file: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
        other => {
            return Err(format!(
                "tls_server_config: client_auth_type: {other:?} is not supported (use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            ))
        }
    };
    let resolver = ReloadingCert::new(cert_file, key_file)?;
    let mut cfg = builder.with_cert_resolver(Arc::new(resolver));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

fn protocol_versions(
    min: Option<&str>,
    max: Option<&str>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let rank = |v: &str, key: &str| match v {
        "TLS10" | "TLS11" => Err(format!(
            "tls_server_config: {key}: {v} is not supported; TLS12 is the oldest"
        )),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(format!(
            "tls_server_config: {key}: {other:?} is not one of TLS12, TLS13"
        )),
    };
    let lo = min
        .map(|v| rank(v, "min_version"))
        .transpose()?
        .unwrap_or(12);
    let hi = max
        .map(|v| rank(v, "max_version"))
        .transpose()?
        .unwrap_or(13);
    let mut v = Vec::new();
    if lo <= 13 && hi >= 13 {
        v.push(&rustls::version::TLS13);
    }
    if lo <= 12 && hi >= 12 {
        v.push(&rustls::version::TLS12);
    }
    if v.is_empty() {
        return Err("tls_server_config: min_version is above max_version".into());
    }
    Ok(v)
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            format!(
                "tls_server_config: {key}: cannot read {}: {e}",
                path.display()
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config: {key}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config: {key}: {} holds no certificate",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(cert_file: &Path, key_file: &Path) -> Result<Arc<CertifiedKey>, String> {
    let certs = read_certs(cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("tls_server_config: key_file: {}: {e}", key_file.display()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("tls_server_config: key_file: {}: {e}", key_file.display()))?;
    let ck = CertifiedKey::new(certs, signer);
    ck.keys_match()
        .map_err(|e| format!("tls_server_config: key_file does not match cert_file: {e}"))?;
    Ok(Arc::new(ck))
}

/// Serves the certificate from its files, reading them again after they change.
#[derive(Debug)]
struct ReloadingCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: Mutex<CertState>,
}

#[derive(Debug)]
struct CertState {
    key: Arc<CertifiedKey>,
    stamp: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

impl ReloadingCert {
    fn new(cert_file: PathBuf, key_file: PathBuf) -> Result<Self, String> {
        let key = read_key(&cert_file, &key_file)?;
        let stamp = (modified(&cert_file), modified(&key_file));
        Ok(ReloadingCert {
            cert_file,
            key_file,
            state: Mutex::new(CertState {
                key,
                stamp,
                checked: Instant::now(),
            }),
        })
    }
}

fn modified(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.checked.elapsed() >= Duration::from_secs(1) {
            st.checked = Instant::now();
            let stamp = (modified(&self.cert_file), modified(&self.key_file));
            if stamp != st.stamp {
                // A half-written pair fails to load; keep the old one and try again next second.
                match read_key(&self.cert_file, &self.key_file) {
                    Ok(key) => {
                        st.key = key;
                        st.stamp = stamp;
                        tracing::info!("TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate changed but cannot be loaded; serving the previous one")
                    }
                }
            }
        }
        Some(st.key.clone())
    }
}

/// Whether `hash` is a bcrypt hash that verifies can use; the reason when not. Never quotes the
/// hash (it is as good as a password to an offline attack).
fn check_hash(hash: &str) -> Result<(), String> {
    if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
        return Err("not a bcrypt hash".into());
    }
    let parts: bcrypt::HashParts = hash
        .parse()
        .map_err(|_| "a malformed bcrypt hash".to_string())?;
    let cost = parts.get_cost();
    if !(4..=31).contains(&cost) {
        return Err(format!("bcrypt cost {cost} is outside 4..31"));
    }
    // The same salt and digest at the lowest cost: checks that they decode, in a millisecond.
    let cheap = format!("{}04{}", &hash[..4], &hash[6..]);
    bcrypt::verify("", &cheap).map_err(|_| "a malformed bcrypt hash".to_string())?;
    if cost > 12 {
        tracing::warn!(cost, "a basic_auth_users hash has a bcrypt cost over 12: each check of a new password takes over a quarter of a second");
    }
    Ok(())
}

/// Basic auth against bcrypt hashes. A bcrypt check costs tens of milliseconds by design, so:
/// - checks run on a pool of their own ([`HashPool`]: half the cores, at least one thread), never
///   on the runtime thread that polls nor on the blocking pool that renders `/metrics`, and at
///   most [`QUEUE_PER_THREAD`] per thread wait for one; a request that finds no place within
///   [`QUEUE_WAIT`] is refused, so a flood of wrong passwords costs a bounded share of the CPU;
/// - successes are remembered by a SHA-256 of the credentials (never the password itself), so
///   the scraper, whose credentials do not change, pays once; failures are not remembered, so
///   a flood cannot push the scraper's entry out;
/// - an unknown user is checked against a configured hash, so that it costs what a known one
///   does and the answer time tells nothing about which users exist.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    cache: Mutex<HashSet<[u8; 32]>>,
    pool: HashPool,
    places: Arc<tokio::sync::Semaphore>,
}

const CACHE_MAX: usize = 1024;
/// Checks that may wait for a thread of the pool, per thread.
pub const QUEUE_PER_THREAD: usize = 4;
/// How long a request waits for a place in the queue before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get() / 2)
            .unwrap_or(1)
            .max(1);
        BasicAuth {
            users,
            cache: Mutex::new(HashSet::new()),
            pool: HashPool::new(threads),
            places: Arc::new(tokio::sync::Semaphore::new(
                threads * (QUEUE_PER_THREAD + 1),
            )),
        }
    }

    /// `Some(true)` for credentials that passed before, `Some(false)` for a header that cannot
    /// pass (absent, not Basic, no such user nor any); `None` when only a bcrypt check can tell.
    pub fn check_cached(&self, header: Option<&str>) -> Option<bool> {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            return Some(false);
        };
        let known = self.users.get(&user);
        if lock(&self.cache).contains(&cache_key(&user, &pass, known)) {
            return Some(true);
        }
        if self.users.is_empty() {
            return Some(false);
        }
        None
    }

    /// Whether an `Authorization` header value holds valid credentials.
    pub async fn check(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            return false;
        };
        let known = self.users.get(&user);
        let key = cache_key(&user, &pass, known);
        if lock(&self.cache).contains(&key) {
            return true;
        }
        // An unknown user costs what a known one does: the same work against a real hash.
        let Some(hash) = known.or_else(|| self.users.values().next()).cloned() else {
            return false;
        };
        let Ok(Ok(place)) =
            tokio::time::timeout(QUEUE_WAIT, self.places.clone().acquire_owned()).await
        else {
            tracing::debug!("basic auth: every bcrypt place is taken; refused");
            return false;
        };
        // The place goes with the job: a request dropped while it waits (its connection closed)
        // frees it only once the check is done, so the queue never holds more than the places.
        let matches = self
            .pool
            .run(move || {
                let _place = place;
                bcrypt::verify(pass, &hash).unwrap_or(false)
            })
            .await
            .unwrap_or(false);
        let ok = matches && known.is_some();
        if ok {
            let mut cache = lock(&self.cache);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(key);
        }
        ok
    }
}

/// What successes are remembered by: a SHA-256 of the user, the password and the hash.
fn cache_key(user: &str, pass: &str, hash: Option<&String>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(user.as_bytes());
    h.update([0]);
    h.update(pass.as_bytes());
    h.update([0]);
    h.update(hash.map_or("", String::as_str).as_bytes());
    h.finalize().into()
}

/// A few threads of their own for bcrypt.
struct HashPool {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl HashPool {
    fn new(threads: usize) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("bcrypt-{i}"))
                .spawn(move || loop {
                    let job = lock(&rx).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a bcrypt thread");
            }
        }
        HashPool { jobs: tx }
    }

    /// Runs `f` on the pool; `None` if the pool is gone.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .ok()?;
        rx.await.ok()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = std::env::temp_dir().join(format!("wa-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = load(&write(&dir, "a.yml", "tls_server_config:\n  certfile: x\n")).unwrap_err();
        assert!(e.contains("unknown field `certfile`"), "{e}");
        let e = load(&write(
            &dir,
            "b.yml",
            "basic_auth_users:\n  alice: plaintext\n",
        ))
        .unwrap_err();
        assert!(e.contains("alice: not a bcrypt hash"), "{e}");
        assert!(
            !e.contains("plaintext"),
            "never echo what could be a password"
        );
        let e = load(&write(
            &dir,
            "c.yml",
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
        ))
        .unwrap_err();
        assert!(e.contains("cert_file"), "{e}");
        let e = load(&write(
            &dir,
            "d.yml",
            "tls_server_config:\n  cert_file: x\n  key_file: y\n  min_version: TLS10\n",
        ))
        .unwrap_err();
        assert!(e.contains("min_version"), "{e}");
        assert!(load(&write(&dir, "e.yml", "")).unwrap().tls.is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn basic_auth_checks_bcrypt_and_caches() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([(
            "alice".to_string(),
            hash,
        )])));
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert!(auth.check(Some(&enc("alice:s3cret"))).await);
        assert!(auth.check(Some(&enc("alice:s3cret"))).await, "cached");
        assert!(!auth.check(Some(&enc("alice:wrong"))).await);
        assert!(!auth.check(Some(&enc("bob:s3cret"))).await);
        assert!(!auth.check(Some("Bearer x")).await);
        assert!(!auth.check(None).await);
        assert!(!auth.check(Some("Basic !!!")).await);
    }

    #[test]
    fn malformed_hashes_are_refused_at_load_without_being_quoted() {
        let dir = std::env::temp_dir().join(format!("wa-web-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = bcrypt::hash("x", 4).unwrap();
        let bad_salt = format!("$2y$04${}", "!".repeat(53));
        for bad in [
            "$2y$10$short".to_string(),
            format!("$2y$99${}", &good[7..]),
            format!("$2y$xx${}", &good[7..]),
            bad_salt,
        ] {
            let e = load(&write(
                &dir,
                "h.yml",
                &format!("basic_auth_users:\n  alice: '{bad}'\n"),
            ))
            .map(|_| ())
            .unwrap_err();
            assert!(e.contains("alice:"), "{e}");
            assert!(!e.contains(&bad[7..]), "the hash is quoted: {e}");
        }
        let ok = load(&write(
            &dir,
            "g.yml",
            &format!("basic_auth_users:\n  alice: '{good}'\n"),
        ));
        assert!(ok.is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_unknown_user_costs_what_a_known_one_does() {
        let auth = Arc::new(BasicAuth::new(BTreeMap::from([(
            "alice".to_string(),
            bcrypt::hash("s3cret", 8).unwrap(),
        )])));
        let enc = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for i in 0..9 {
            let t = std::time::Instant::now();
            assert!(!auth.check(Some(&enc(&format!("alice:wrong-{i}")))).await);
            known.push(t.elapsed());
            let t = std::time::Instant::now();
            assert!(!auth.check(Some(&enc(&format!("mallory:wrong-{i}")))).await);
            unknown.push(t.elapsed());
        }
        known.sort();
        unknown.sort();
        let (k, u) = (known[4].as_secs_f64(), unknown[4].as_secs_f64());
        assert!(
            u > 0.5 * k && u < 2.0 * k,
            "median {:.1} ms for an unknown user, {:.1} ms for a known one",
            u * 1e3,
            k * 1e3
        );
    }
}
