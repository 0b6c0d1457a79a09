//! Gateway faults at the transport: TLS with a private CA, untrusted certificates, connections
//! reset before an answer.

mod common;

use std::convert::Infallible;
use std::sync::Arc;

use common::{sample, Exporter, TempDir};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;

/// A PlugzAPI-like gateway on HTTPS, with a certificate for `localhost` from its own CA.
async fn tls_gateway() -> (u16, String) {
    whatsapp_exporter::install_crypto_provider();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert.pem().as_bytes()).unwrap()];
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(bytes::Bytes::from_static(
                        br#"{"connected":true,"session":true,"error":"","smartphoneConnected":true}"#,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (port, ca.pem())
}

#[tokio::test]
async fn tls_gateways_with_a_private_ca() {
    let (port, ca_pem) = tls_gateway().await;
    let dir = TempDir::new();
    let ca_file = dir.0.join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let gw = |name: &str, tls: &str| {
        format!("  - name: {name}\n    provider: plugzapi\n    url: https://localhost:{port}\n    instance: I\n    token: tok-TLS-5150\n{tls}")
    };
    let yaml = format!(
        "global:\n  interval: 1s\n  timeout: 900ms\ngateways:\n{}{}{}",
        gw("untrusted", ""),
        gw(
            "private-ca",
            &format!("    tls:\n      ca_file: {}\n", ca_file.display())
        ),
        gw("unverified", "    tls:\n      insecure_skip_verify: true\n"),
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(8, |m| {
            sample(
                m,
                "whatsapp_poll_failures_total",
                &[("gateway", "untrusted"), ("reason", "connect")],
            ) >= Some(1.0)
                && sample(m, "whatsapp_up", &[("gateway", "private-ca")]) == Some(1.0)
                && sample(m, "whatsapp_up", &[("gateway", "unverified")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        sample(&m, "whatsapp_up", &[("gateway", "untrusted")]),
        Some(0.0)
    );
    let (_, page) = ex.get("/").await;
    assert!(
        page.contains("certificate") || page.contains("Certificate"),
        "the TLS problem is told"
    );
    assert!(
        common::logs().contains("gateway=unverified")
            && common::logs().contains("insecure_skip_verify"),
        "skipping verification is warned about"
    );
    assert!(!page.contains("tok-TLS-5150") && !common::logs().contains("tok-TLS-5150"));
    ex.stop().await;
}

#[tokio::test]
async fn a_connection_reset_before_the_answer_is_a_connect_failure() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            // Linger 0: closing sends a reset instead of a clean end of stream. (Deprecated as it
            // can block on drop; with a zero linger it cannot.)
            #[allow(deprecated)]
            let _ = tcp.set_linger(Some(std::time::Duration::ZERO));
            drop(tcp);
        }
    });
    let yaml = format!(
        "gateways:\n  - name: reset\n    provider: plugzapi\n    url: http://127.0.0.1:{port}\n    instance: I\n    token: tok-RESET-77\n    interval: 1s\n    timeout: 900ms\n"
    );
    let ex = Exporter::start(&yaml).await;
    let m = ex
        .wait_for(8, |m| {
            sample(
                m,
                "whatsapp_poll_failures_total",
                &[("gateway", "reset"), ("reason", "connect")],
            ) >= Some(1.0)
        })
        .await;
    assert_eq!(
        sample(&m, "whatsapp_up", &[("gateway", "reset")]),
        Some(0.0)
    );
    assert!(!common::logs().contains("tok-RESET-77"));
    ex.stop().await;
}
