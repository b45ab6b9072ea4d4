//! TLS over a connection Steward opened itself (IMAP, Slack's Socket Mode),
//! checked against the platform's trusted roots.

use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The TLS handshake with `host` over `tcp`; the error names the host only.
pub(crate) async fn client(host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_platform_verifier())
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| format!("host {host}: {e}"))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|_| format!("the TLS handshake with {host} failed"))
}
