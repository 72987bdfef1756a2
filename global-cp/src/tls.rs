//! The KDS server's TLS certificate: the operator's files, or a self-signed CA and server
//! certificate generated once in the data directory (`kds-tls/`).

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use atoll_cp::Config;

/// Certificate chain, key, and the CA that clients should trust.
#[derive(Debug, Clone)]
pub struct KdsTls {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

const VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

pub fn load_or_generate(config: &Config) -> anyhow::Result<KdsTls> {
    if let (Some(cert), Some(key)) = (&config.kds_tls_cert_file, &config.kds_tls_key_file) {
        let cert_chain_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading ATOLL_KDS_TLS_CERT_FILE {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("reading ATOLL_KDS_TLS_KEY_FILE {}", key.display()))?;
        // The last certificate of the chain is the one clients should trust.
        let ca_pem = last_certificate(&cert_chain_pem).unwrap_or_else(|| cert_chain_pem.clone());
        return Ok(KdsTls {
            cert_chain_pem,
            key_pem,
            ca_pem,
        });
    }
    let dir = config.data_dir.join("kds-tls");
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    if paths.iter().all(|p| p.exists()) {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        return Ok(KdsTls {
            ca_pem: read(&paths[0])?,
            cert_chain_pem: read(&paths[1])?,
            key_pem: read(&paths[2])?,
        });
    }
    let mut hosts = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        let h = h.trim();
        if !h.is_empty() && !hosts.iter().any(|x| x == h) {
            hosts.push(h.to_string());
        }
    }
    if !config.kds_address.ip().is_unspecified() {
        hosts.push(config.kds_address.ip().to_string());
    }
    hosts.dedup();
    let generated = atoll_identity::generate_server_cert(&hosts, VALIDITY, Utc::now())
        .context("generating the KDS server certificate")?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&paths[0], &generated.ca_cert_pem)?;
    std::fs::write(&paths[1], generated.cert_chain_pem())?;
    write_private(&paths[2], &generated.key_pem)?;
    tracing::info!(dir = %dir.display(), ?hosts, "generated a self-signed KDS server certificate; give zones ca.pem as ATOLL_GLOBAL_CA_FILE");
    Ok(KdsTls {
        cert_chain_pem: generated.cert_chain_pem(),
        key_pem: generated.key_pem.clone(),
        ca_pem: generated.ca_cert_pem.clone(),
    })
}

fn last_certificate(chain: &str) -> Option<String> {
    let start = chain.rfind("-----BEGIN CERTIFICATE-----")?;
    Some(chain[start..].to_string())
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}
