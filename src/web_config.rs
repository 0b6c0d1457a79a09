//! `--web.config.file`: TLS (with optional client certificates) and basic auth for every
//! endpoint, in the exporter-toolkit `web-config.yml` format that Prometheus users already know.
//!
//! Certificate and key files are checked for changes at most once a second and read again when
//! they change, so a rotated certificate is served without a restart. Basic auth applies to every
//! endpoint except the webhook routes, which PlugChat cannot send credentials to: those are
//! authenticated by their own secret.

use std::collections::{BTreeMap, HashMap};
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
            if !(hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$")) {
                return Err(format!("basic_auth_users: {user}: not a bcrypt hash (make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"));
            }
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

/// Basic auth against bcrypt hashes. A bcrypt check costs tens of milliseconds by design, so
/// outcomes are remembered by a SHA-256 of the credentials (never the password itself).
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    cache: Mutex<HashMap<[u8; 32], bool>>,
}

const CACHE_MAX: usize = 1024;
/// Checked when the user is unknown, so that a wrong name costs as long as a wrong password.
const DUMMY_HASH: &str = "$2b$10$C1gJ0cQF2sHqfT7N3c8cQOzV6PZp9Q1c3Kx8yCZq6s0yG1a9Y0XyS";

impl BasicAuth {
    fn new(users: BTreeMap<String, String>) -> Self {
        BasicAuth {
            users,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an `Authorization` header value holds valid credentials.
    pub async fn check(self: &Arc<Self>, header: Option<&str>) -> bool {
        let Some((user, pass)) = header.and_then(decode_basic) else {
            return false;
        };
        let hash = self.users.get(&user).cloned();
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(user.as_bytes());
            h.update([0]);
            h.update(pass.as_bytes());
            h.update([0]);
            h.update(hash.as_deref().unwrap_or("").as_bytes());
            h.finalize().into()
        };
        if let Some(ok) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return *ok;
        }
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.to_string());
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false)
            && known;
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, ok);
        ok
    }
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
}
