//! TLS for connections to ElastiCache groups with in-transit encryption (rustls, the
//! public web roots).

use std::sync::{Arc, LazyLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The configuration that checks the certificate against the public roots and the name.
static CHECKED: LazyLock<Result<Arc<ClientConfig>, rustls::Error>> = LazyLock::new(|| {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth(),
    ))
});

/// The configuration for a connection through a `--resolve` override: the certificate
/// names the real endpoint, not the tunnel's address, so its name is not checked (its
/// signatures still are).
static ANY_NAME: LazyLock<Result<Arc<ClientConfig>, rustls::Error>> = LazyLock::new(|| {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(provider())))
            .with_no_client_auth(),
    ))
});

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The client configuration; `redirected` when the connection goes through an override.
pub(super) fn config(redirected: bool) -> Result<Arc<ClientConfig>, rustls::Error> {
    let config: &Result<_, _> = if redirected { &ANY_NAME } else { &CHECKED };
    config.clone()
}

/// The name the certificate must carry.
pub(super) fn server_name(
    host: &str,
) -> Result<ServerName<'static>, rustls::pki_types::InvalidDnsNameError> {
    ServerName::try_from(host.to_string())
}

/// Accepts the server's certificate whatever name it carries (signatures still checked).
#[derive(Debug)]
struct AnyName(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
