//! TLS client settings shared by the PostgreSQL and Redis connections: rustls on ring,
//! verifying the server against the certificates of a given PEM file, or else the
//! system's roots plus the Mozilla roots built into the binary (a minimal image has no
//! system roots). Never a plaintext fallback: a connection that asked for TLS and cannot
//! verify fails.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// A client configuration trusting `ca_file` (named `var` in errors) or the default
/// roots.
pub fn client_config(ca_file: Option<&Path>, var: &str) -> anyhow::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| anyhow::anyhow!("{var} {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("{var} {}: no usable certificate", path.display());
            }
        }
        None => {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let system = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(system.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
