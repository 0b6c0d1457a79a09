//! `--web.config.file`: TLS, client certificates, basic auth, and certificate rotation.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Exporter, TempDir};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    Pki {
        ca_pem: issuer.pem(),
        issuer,
    }
}

/// A leaf certificate and key (PEM) for `names`, signed by `pki`.
fn leaf(pki: &Pki, names: &[&str]) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let cert = params.signed_by(&key, &pki.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn write_pair(dir: &Path, prefix: &str, (cert, key): &(String, String)) {
    std::fs::write(dir.join(format!("{prefix}.crt")), cert).unwrap();
    std::fs::write(dir.join(format!("{prefix}.key")), key).unwrap();
}

fn tls_client(ca_pem: &str, identity: Option<&(String, String)>) -> reqwest::Client {
    whatsapp_exporter::install_crypto_provider();
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        b = b.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    b.build().unwrap()
}

fn basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[tokio::test]
async fn tls_and_basic_auth_guard_every_endpoint_but_webhooks() {
    let dir = TempDir::new();
    let pki = ca("test CA");
    write_pair(&dir.0, "server", &leaf(&pki, &["localhost", "127.0.0.1"]));
    let hash = bcrypt::hash("pa55-W0rd-xyz", 4).unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\nbasic_auth_users:\n  prometheus: {hash}\n",
        d = dir.0.display()
    );
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let base = format!("https://localhost:{}", ex.addr().port());
    let client = tls_client(&pki.ca_pem, None);

    for path in ["/metrics", "/", "/-/healthy", "/probe?target=x"] {
        let r = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without credentials");
        assert!(r.headers().get("www-authenticate").is_some());
        let r = client
            .get(format!("{base}{path}"))
            .header("authorization", basic("prometheus", "wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with a wrong password");
    }
    let r = client
        .get(format!("{base}/metrics"))
        .header("authorization", basic("prometheus", "pa55-W0rd-xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("whatsapp_exporter_build_info"));
    // Webhooks are not behind basic auth (PlugChat cannot send it); their own secret applies.
    let r = client
        .post(format!(
            "{base}/webhooks/plugchat/none/startAttendance?secret=x"
        ))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status().as_u16(), 401, "webhook routes skip basic auth");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = common::client()
        .get(format!("http://127.0.0.1:{}/metrics", ex.addr().port()))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status().as_u16() != 200);
    assert!(!common::logs().contains("pa55-W0rd-xyz"));
    ex.stop().await;
}

#[tokio::test]
async fn client_certificates_are_required_when_configured() {
    let dir = TempDir::new();
    let pki = ca("server CA");
    let clients = ca("client CA");
    write_pair(&dir.0, "server", &leaf(&pki, &["localhost"]));
    std::fs::write(dir.0.join("clients.pem"), &clients.ca_pem).unwrap();
    let web = format!(
        "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {d}/clients.pem\n  min_version: TLS13\n",
        d = dir.0.display()
    );
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let url = format!("https://localhost:{}/-/healthy", ex.addr().port());
    assert!(
        tls_client(&pki.ca_pem, None)
            .get(&url)
            .send()
            .await
            .is_err(),
        "no client certificate"
    );
    let stranger = leaf(&ca("other CA"), &["client"]);
    assert!(
        tls_client(&pki.ca_pem, Some(&stranger))
            .get(&url)
            .send()
            .await
            .is_err(),
        "untrusted client certificate"
    );
    let good = leaf(&clients, &["client"]);
    let r = tls_client(&pki.ca_pem, Some(&good))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    ex.stop().await;
}

#[tokio::test]
async fn a_rotated_certificate_is_served_without_restart() {
    let dir = TempDir::new();
    let old = ca("old CA");
    let new = ca("new CA");
    write_pair(&dir.0, "server", &leaf(&old, &["localhost"]));
    let web = format!(
        "tls_server_config:\n  cert_file: {d}/server.crt\n  key_file: {d}/server.key\n",
        d = dir.0.display()
    );
    let ex = Exporter::try_start_with_web("{}", Some(&web))
        .await
        .unwrap();
    let url = format!("https://localhost:{}/-/healthy", ex.addr().port());
    assert!(
        tls_client(&new.ca_pem, None)
            .get(&url)
            .send()
            .await
            .is_err(),
        "the new CA does not yet match"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_pair(&dir.0, "server", &leaf(&new, &["localhost"]));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // A fresh client each time: a new connection means a new handshake.
        if let Ok(r) = tls_client(&new.ca_pem, None).get(&url).send().await {
            assert_eq!(r.status().as_u16(), 200);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotated certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ex.stop().await;
}

#[tokio::test]
async fn a_bad_web_config_stops_startup_with_a_clear_error() {
    let err = Exporter::try_start_with_web(
        "{}",
        Some("tls_server_config:\n  cert_file: /nonexistent.crt\n"),
    )
    .await
    .err()
    .unwrap();
    assert!(
        err.contains("--web.config.file") && err.contains("needs cert_file and key_file"),
        "{err}"
    );
}
