//! A control-plane server's TLS certificate (xDS on the zone, KDS on the global): the operator's
//! files, or a self-signed CA and server certificate generated once in the data directory.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use std::net::SocketAddr;
use std::path::PathBuf;

/// Certificate chain, key, and the CA that clients should trust.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert_chain_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

const VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 3600);

/// Which server's certificate, and where it comes from.
#[derive(Debug, Clone)]
pub struct ServerTlsSource {
    /// For messages: `xDS`, `KDS`.
    pub server: &'static str,
    /// The settings naming the files, for messages: `ATOLL_XDS_TLS`.
    pub setting_prefix: &'static str,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Where a generated certificate is kept.
    pub dir: PathBuf,
    /// The listen address; a specific IP goes in the certificate's names.
    pub listen: SocketAddr,
    /// Logged when a certificate is generated: how clients get to trust it.
    pub trust_hint: &'static str,
}

/// The operator's certificate files when both are set, else the generated one (created once).
pub fn load_or_generate(source: &ServerTlsSource) -> anyhow::Result<ServerTls> {
    let prefix = source.setting_prefix;
    if let (Some(cert), Some(key)) = (&source.cert_file, &source.key_file) {
        let cert_chain_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("reading {prefix}_CERT_FILE {}", cert.display()))?;
        let key_pem = std::fs::read_to_string(key)
            .with_context(|| format!("reading {prefix}_KEY_FILE {}", key.display()))?;
        // rustls clients (zones, atoll-dp, atollctl) refuse a CA certificate as a server's
        // own: say so at start-up, with the fix, rather than leave it to their handshakes.
        if atoll_identity::is_ca_certificate(&cert_chain_pem)
            .with_context(|| format!("{prefix}_CERT_FILE {}", cert.display()))?
        {
            anyhow::bail!(
                "{prefix}_CERT_FILE {}: the certificate is a CA certificate (basic constraints CA:TRUE, what `openssl req -x509` makes by default); TLS clients refuse it as a server certificate. Make a server certificate signed by a CA, e.g. `atollctl generate tls-certificate --type server --hostname <host> --cert-file cert.pem --key-file key.pem --ca-cert-file ca.pem`, and give clients ca.pem",
                cert.display()
            );
        }
        // The last certificate of the chain is the one clients should trust.
        let ca_pem = last_certificate(&cert_chain_pem).unwrap_or_else(|| cert_chain_pem.clone());
        return Ok(ServerTls {
            cert_chain_pem,
            key_pem,
            ca_pem,
        });
    }
    let dir = &source.dir;
    let paths = [
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ];
    if paths.iter().all(|p| p.exists()) {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        return Ok(ServerTls {
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
    if !source.listen.ip().is_unspecified() {
        hosts.push(source.listen.ip().to_string());
    }
    hosts.dedup();
    let generated = atoll_identity::generate_server_cert(&hosts, VALIDITY, Utc::now())
        .with_context(|| format!("generating the {} server certificate", source.server))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&paths[0], &generated.ca_cert_pem)?;
    std::fs::write(&paths[1], generated.cert_chain_pem())?;
    write_private(&paths[2], &generated.key_pem)?;
    tracing::info!(
        dir = %dir.display(),
        ?hosts,
        server = source.server,
        "generated a self-signed server certificate; {}",
        source.trust_hint
    );
    Ok(ServerTls {
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
