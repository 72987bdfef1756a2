//! `atoll-dp run`: check the inputs, fetch the bootstrap, write it, run Envoy until told to stop.

use std::path::{Path, PathBuf};

use tokio::sync::watch;

use crate::bootstrap_client::{self, BootstrapRequest, ControlPlane, Trust, Versions};
use crate::config::RunArgs;
use crate::dataplane::{self, Document};
use crate::envoy::{self, EnvoyCommand, RestartPolicy};

/// Everything checked before contacting anyone.
struct Inputs {
    document: Document,
    token: String,
    control_plane: ControlPlane,
    envoy: PathBuf,
}

/// Reads and checks every input; each problem found is one line.
fn check_inputs(args: &RunArgs) -> Result<Inputs, Vec<String>> {
    let mut problems = Vec::new();
    let document = dataplane::read_document(&args.dataplane_file, args.proxy_type)
        .map_err(|p| problems.extend(p))
        .ok();
    let token = match (&args.dataplane_token_file, &args.dataplane_token) {
        (Some(file), _) => dataplane::read_token_file(file),
        (None, Some(t)) => dataplane::check_token(t.clone(), "--dataplane-token"),
        (None, None) => Err("a dataplane token is needed: --dataplane-token-file".to_string()),
    }
    .map_err(|p| problems.push(p))
    .ok();
    // The token is a credential: it goes only to a control plane whose certificate is
    // verified, unless the operator says otherwise in so many words.
    let trust = match (&args.ca_cert_file, args.insecure_skip_verify) {
        (Some(file), _) => Trust::from_ca_file(file).map_err(|p| problems.push(p)).ok(),
        (None, true) => Some(Trust::AcceptAnyCertificateInsecure),
        (None, false) => {
            problems.push(
                "no --ca-cert-file: atoll-dp does not send its dataplane token to a control plane \
                 it cannot verify; give the CA that signed the control plane's certificate \
                 (for a generated one, the zone's DATA_DIR/xds-tls/ca.pem) with --ca-cert-file, \
                 or pass --insecure-skip-verify to send it unverified"
                    .to_string(),
            );
            None
        }
    };
    if args.cp_address.starts_with("http://") && !args.insecure_skip_verify {
        problems.push(format!(
            "--cp-address {} is plain http: the dataplane token would travel unencrypted; use \
             https:// (or pass --insecure-skip-verify)",
            args.cp_address
        ));
    }
    let control_plane = trust.and_then(|t| {
        ControlPlane::new(&args.cp_address, t)
            .map_err(|p| problems.push(p))
            .ok()
    });
    let envoy = envoy::resolve_program(&args.envoy_binary);
    if envoy.is_none() {
        problems.push(format!(
            "cannot find an executable Envoy at {:?} (set --envoy-binary or ATOLL_DP_ENVOY_BINARY)",
            args.envoy_binary.display().to_string()
        ));
    }
    match (document, token, control_plane, envoy) {
        (Some(document), Some(token), Some(control_plane), Some(envoy)) if problems.is_empty() => {
            Ok(Inputs {
                document,
                token,
                control_plane,
                envoy,
            })
        }
        _ => Err(problems),
    }
}

/// Where the bootstrap lives: a temporary directory of ours, or the operator's `--work-dir`.
enum WorkDir {
    Temporary(tempfile::TempDir),
    Given(PathBuf),
}

impl WorkDir {
    fn create(given: Option<&Path>) -> Result<WorkDir, String> {
        match given {
            Some(dir) => std::fs::create_dir_all(dir)
                .map(|()| WorkDir::Given(dir.to_path_buf()))
                .map_err(|e| format!("cannot create the work directory {}: {e}", dir.display())),
            None => tempfile::Builder::new()
                .prefix("atoll-dp-")
                .tempdir()
                .map(WorkDir::Temporary)
                .map_err(|e| format!("cannot create a temporary work directory: {e}")),
        }
    }

    fn path(&self) -> &Path {
        match self {
            WorkDir::Temporary(t) => t.path(),
            WorkDir::Given(p) => p,
        }
    }

    /// Removes what is ours: the whole temporary directory, or only our file in a given one.
    fn clean_up(self, bootstrap: &Path) {
        match self {
            WorkDir::Temporary(t) => {
                let shown = t.path().display().to_string();
                if let Err(e) = t.close() {
                    tracing::warn!("cannot remove the work directory {shown}: {e}");
                }
            }
            WorkDir::Given(_) => {
                if let Err(e) = std::fs::remove_file(bootstrap) {
                    tracing::warn!("cannot remove {}: {e}", bootstrap.display());
                }
            }
        }
    }
}

/// Writes a file only its owner can read: the bootstrap carries the dataplane token.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open: set it explicitly.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn bootstrap_file_name(mesh: &str, name: &str) -> String {
    if mesh.is_empty() {
        format!("bootstrap-{name}.json")
    } else {
        format!("bootstrap-{mesh}-{name}.json")
    }
}

/// Runs until Envoy is stopped by `shutdown`. Err: the lines to print, exit code 1.
pub async fn run(args: RunArgs, mut shutdown: watch::Receiver<bool>) -> Result<(), Vec<String>> {
    let inputs = check_inputs(&args)?;
    let resource = &inputs.document.resource;
    tracing::info!(
        kind = %resource.kind, mesh = %resource.mesh, name = %resource.name,
        "read {}", args.dataplane_file.display()
    );
    if args.insecure_skip_verify {
        tracing::warn!(
            "WARNING: --insecure-skip-verify: the control plane's certificate is NOT verified; \
             anyone able to intercept {} gets the dataplane token",
            args.cp_address
        );
    }
    let setpriv = envoy::find_setpriv();
    if setpriv.is_none() {
        tracing::warn!(
            "WARNING: setpriv (util-linux) with --pdeathsig not found: Envoy is started directly \
             and would outlive atoll-dp if atoll-dp were killed with SIGKILL"
        );
    }
    let envoy_version = tokio::select! {
        v = envoy::envoy_version(&inputs.envoy) => v,
        () = envoy::stopped(&mut shutdown) => return Ok(()),
    };
    tracing::info!(
        envoy = %inputs.envoy.display(),
        version = envoy_version.as_deref().unwrap_or("unknown"),
        "Envoy found"
    );

    let request = BootstrapRequest {
        mesh: resource.mesh.clone(),
        name: resource.name.clone(),
        proxy_type: args.proxy_type.as_str().to_string(),
        dataplane: inputs.document.value.clone(),
        token: inputs.token.clone(),
        version: Versions {
            atoll_dp: env!("CARGO_PKG_VERSION").to_string(),
            envoy: envoy_version,
        },
        admin_port: args.admin_port,
    };
    tracing::info!(address = %args.cp_address, "requesting the Envoy bootstrap");
    let bootstrap = tokio::select! {
        r = bootstrap_client::fetch_bootstrap(&inputs.control_plane, &request, args.cp_connect_timeout) => {
            r.map_err(|e| e.lines())?
        }
        () = envoy::stopped(&mut shutdown) => {
            tracing::info!("stopped before the bootstrap was received");
            return Ok(());
        }
    };

    let work_dir = WorkDir::create(args.work_dir.as_deref()).map_err(|e| vec![e])?;
    let file = work_dir
        .path()
        .join(bootstrap_file_name(&resource.mesh, &resource.name));
    let text = serde_json::to_vec_pretty(&bootstrap).map_err(|e| vec![e.to_string()])?;
    if let Err(e) = write_private(&file, &text) {
        let problem = format!("cannot write the bootstrap to {}: {e}", file.display());
        work_dir.clean_up(&file);
        return Err(vec![problem]);
    }
    tracing::info!("bootstrap written to {}", file.display());

    let base_id = args
        .admin_port
        .map(u32::from)
        .unwrap_or_else(|| envoy::base_id(&resource.mesh, &resource.name));
    let command = EnvoyCommand::new(
        inputs.envoy.clone(),
        &file,
        base_id,
        &args.envoy_log_level,
        &args.envoy_args,
        setpriv,
    );
    envoy::supervise(
        &command,
        RestartPolicy::default(),
        args.envoy_grace_period,
        shutdown,
    )
    .await;
    work_dir.clean_up(&file);
    tracing::info!("atoll-dp stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_files_are_named_after_the_proxy() {
        assert_eq!(
            bootstrap_file_name("default", "web-1"),
            "bootstrap-default-web-1.json"
        );
        assert_eq!(
            bootstrap_file_name("", "ingress-1"),
            "bootstrap-ingress-1.json"
        );
    }

    #[test]
    fn the_bootstrap_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("b.json");
        std::fs::write(&p, "old").expect("write");
        write_private(&p, b"{}").expect("write");
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read(&p).expect("read"), b"{}");
    }
}
