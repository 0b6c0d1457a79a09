//! TLS set-up shared by the client (gateways) and the server (`--web.config.file`).

/// rustls needs one process-wide crypto provider; installing it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
