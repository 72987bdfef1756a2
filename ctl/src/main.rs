//! `atollctl`: the command line over Atoll's REST API (apply, get, delete).
//!
//! It validates documents locally before sending anything, so a broken file changes nothing, and
//! prints the server's field-level violations when the control plane refuses a write.

mod client;
mod table;
mod transport;

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use serde_json::Value;

use atoll_core::format::{parse_documents, to_yaml};
use atoll_core::{Kind, Resource};

use crate::client::{ApiClient, ClientError};

#[derive(Debug, Parser)]
#[command(name = "atollctl", version, about = "Manage an Atoll service mesh")]
struct Cli {
    /// URL of the control plane's REST API.
    #[arg(
        long,
        global = true,
        env = "ATOLL_API",
        default_value = "http://127.0.0.1:5681"
    )]
    api: String,

    /// Bearer token: a user token (`atollctl generate user-token`) or the admin token (the
    /// control plane's DATA_DIR/admin-token).
    #[arg(long, global = true, env = "ATOLL_API_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// PEM file of the CA that signed the control plane's HTTPS certificate (for a generated
    /// one: the control plane's DATA_DIR/api-tls/ca.pem). Without it, https:// URLs are verified
    /// against the system's CA bundle.
    #[arg(long, global = true, env = "ATOLL_API_CA_FILE", value_name = "FILE")]
    ca_cert_file: Option<PathBuf>,

    /// INSECURE: do not verify the control plane's HTTPS certificate (anyone in the path can
    /// read the token and answer in the control plane's name).
    #[arg(
        long,
        global = true,
        env = "ATOLL_API_INSECURE_SKIP_VERIFY",
        conflicts_with = "ca_cert_file"
    )]
    insecure_skip_verify: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or update resources from a file (multi-document YAML or JSON); `-` reads stdin.
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Show resources: `get meshtimeouts -m default`, `get mesh default -o yaml`.
    Get {
        /// Kind, plural as in Kuma (meshes, dataplanes, meshtimeouts, ...) or singular.
        kind: String,
        /// One resource by name; all of the kind when omitted.
        name: Option<String>,
        /// Mesh of mesh-scoped kinds.
        #[arg(short = 'm', long, default_value = "default")]
        mesh: String,
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Delete one resource.
    Delete {
        kind: String,
        name: String,
        #[arg(short = 'm', long, default_value = "default")]
        mesh: String,
    },
    /// Generate tokens.
    Generate {
        #[command(subcommand)]
        what: GenerateCommand,
    },
    /// Show what a zone control plane generated for a proxy.
    Inspect {
        #[command(subcommand)]
        what: InspectCommand,
    },
    /// Revoke tokens.
    Revoke {
        #[command(subcommand)]
        what: RevokeCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RevokeCommand {
    /// A user token: it is refused on every later request (listed in the GlobalSecret
    /// user-token-revocations).
    UserToken {
        /// The token's id (its `jti` claim).
        #[arg(
            long,
            required_unless_present = "token_file",
            conflicts_with = "token_file"
        )]
        id: Option<String>,
        /// A file holding the token itself.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

// The variant names are the subcommands (`generate dataplane-token`, ...), as kumactl spells them.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
enum GenerateCommand {
    /// A token a dataplane presents to its zone control plane (`atoll-dp --dataplane-token-file`).
    DataplaneToken {
        #[arg(long, default_value = "default")]
        mesh: String,
        /// The dataplane the token is for.
        #[arg(long)]
        name: String,
        /// How long the token stays valid.
        #[arg(long, default_value = "24h")]
        valid_for: String,
        /// Binds the token to a tag the dataplane must carry, `NAME=VALUE[,VALUE...]`
        /// (repeatable), e.g. `--tag kuma.io/service=backend`: the token then serves only
        /// dataplanes of that service.
        #[arg(long = "tag", value_name = "NAME=VALUES")]
        tags: Vec<String>,
    },
    /// A token a user presents to the REST API (`--token`, `ATOLL_API_TOKEN`), for the
    /// control plane that minted it. What it may do depends on its groups (the RBAC rules).
    UserToken {
        /// The user's name.
        #[arg(long)]
        name: String,
        /// A group the user belongs to (repeatable); `mesh-system:admin` makes an admin.
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// How long the token stays valid.
        #[arg(long, default_value = "24h")]
        valid_for: String,
    },
    /// A token a zone control plane (scope cp), or its ingress or egress, presents to the
    /// global control plane. Call it against the global API.
    ZoneToken {
        #[arg(long)]
        zone: String,
        #[arg(long, value_parser = ["cp", "ingress", "egress"], default_value = "cp")]
        scope: String,
        #[arg(long, default_value = "8760h")]
        valid_for: String,
    },
    /// A TLS certificate for a control plane's KDS, xDS or API server (or a client), signed by
    /// a CA generated with it; give the server the certificate and key, and its clients the CA
    /// (`ATOLL_GLOBAL_CA_FILE`, atoll-dp `--ca-cert-file`). Made here, offline.
    TlsCertificate {
        #[arg(long = "type", value_parser = ["server", "client"])]
        usage: String,
        /// A DNS name or IP the certificate is for (repeatable; the first is its CN).
        #[arg(long = "hostname", required = true)]
        hostnames: Vec<String>,
        /// Where to write the certificate (PEM, followed by its CA).
        #[arg(long)]
        cert_file: PathBuf,
        /// Where to write the private key (PEM, mode 0600).
        #[arg(long)]
        key_file: PathBuf,
        /// Where to write the CA that clients trust.
        #[arg(long)]
        ca_cert_file: Option<PathBuf>,
        #[arg(long, default_value = "8760h")]
        valid_for: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum InspectType {
    /// The generated Envoy resources.
    Config,
    /// The policies resolved for each inbound and outbound.
    Rules,
}

#[derive(Debug, Subcommand)]
enum InspectCommand {
    /// One dataplane.
    Dataplane {
        name: String,
        #[arg(short = 'm', long, default_value = "default")]
        mesh: String,
        #[arg(long = "type", value_enum, default_value = "config")]
        inspect_type: InspectType,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let trust = match (&cli.ca_cert_file, cli.insecure_skip_verify) {
        (Some(file), _) => transport::Trust::CaFile(file.clone()),
        (None, true) => {
            if cli.api.starts_with("https://") {
                eprintln!(
                    "Warning: --insecure-skip-verify: the control plane's certificate is NOT verified"
                );
            }
            transport::Trust::InsecureSkipVerify
        }
        (None, false) => transport::Trust::SystemRoots,
    };
    let client = match ApiClient::new(&cli.api, cli.token.clone(), trust) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(&client, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{}", message.trim_end());
            ExitCode::FAILURE
        }
    }
}

/// Writes a TLS certificate, its key and its CA (`generate tls-certificate`).
fn generate_tls_certificate(
    usage: &str,
    hostnames: &[String],
    cert_file: &std::path::Path,
    key_file: &std::path::Path,
    ca_cert_file: Option<&std::path::Path>,
    valid_for: &str,
) -> Result<(), String> {
    let usage = match usage {
        "client" => atoll_identity::TlsUsage::Client,
        _ => atoll_identity::TlsUsage::Server,
    };
    let validity = atoll_core::types::parse_go_duration(valid_for)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("--valid-for {valid_for:?}: must be a positive duration such as 8760h")
        })?;
    let tls = atoll_identity::generate_tls_cert(usage, hostnames, validity, chrono::Utc::now())
        .map_err(|e| format!("cannot make the certificate: {e}"))?;
    let write = |path: &std::path::Path, text: &str, private: bool| -> Result<(), String> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let _ = private;
        use std::io::Write;
        options
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))
    };
    write(cert_file, &tls.cert_chain_pem(), false)?;
    write(key_file, &tls.key_pem, true)?;
    if let Some(ca) = ca_cert_file {
        write(ca, &tls.ca_cert_pem, false)?;
    }
    eprintln!(
        "wrote {} (for {}) and {}{}",
        cert_file.display(),
        hostnames.join(", "),
        key_file.display(),
        ca_cert_file
            .map(|p| format!("; clients trust {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

async fn execute(client: &ApiClient, command: Command) -> Result<(), String> {
    match command {
        Command::Apply { file } => apply(client, &file).await,
        Command::Get {
            kind,
            name,
            mesh,
            output,
        } => get(client, &kind, name.as_deref(), &mesh, output).await,
        Command::Generate {
            what:
                GenerateCommand::DataplaneToken {
                    mesh,
                    name,
                    valid_for,
                    tags,
                },
        } => {
            let mut bound: std::collections::BTreeMap<String, Vec<String>> = Default::default();
            for tag in &tags {
                let Some((tag_name, values)) = tag.split_once('=') else {
                    return Err(format!("--tag {tag:?}: expected NAME=VALUE[,VALUE...]"));
                };
                bound
                    .entry(tag_name.to_string())
                    .or_default()
                    .extend(values.split(',').map(str::to_string));
            }
            let mut body = serde_json::json!({"mesh": mesh, "name": name, "validFor": valid_for});
            if !bound.is_empty() {
                body["tags"] = serde_json::json!(bound);
            }
            let token = client
                .post_text("/tokens/dataplane", &body)
                .await
                .map_err(|e| render_error(&e))?;
            println!("{}", token.trim());
            Ok(())
        }
        Command::Generate {
            what:
                GenerateCommand::UserToken {
                    name,
                    groups,
                    valid_for,
                },
        } => {
            let body = serde_json::json!({"name": name, "groups": groups, "validFor": valid_for});
            let token = client
                .post_text("/tokens/user", &body)
                .await
                .map_err(|e| render_error(&e))?;
            println!("{}", token.trim());
            Ok(())
        }
        Command::Revoke {
            what: RevokeCommand::UserToken { id, token_file },
        } => {
            let body = match (id, token_file) {
                (Some(id), _) => serde_json::json!({"jti": id}),
                (None, Some(file)) => {
                    let token = std::fs::read_to_string(&file)
                        .map_err(|e| format!("Error: cannot read {}: {e}", file.display()))?;
                    serde_json::json!({"token": token.trim()})
                }
                (None, None) => return Err("Error: give --id or --token-file".into()),
            };
            let answer = client
                .post_json("/tokens/user/_revoke", &body)
                .await
                .map_err(|e| render_error(&e))?;
            let id = answer.get("revoked").and_then(Value::as_str).unwrap_or("?");
            println!("revoked user token {id}");
            Ok(())
        }
        Command::Generate {
            what:
                GenerateCommand::ZoneToken {
                    zone,
                    scope,
                    valid_for,
                },
        } => {
            let body = serde_json::json!({"zone": zone, "scope": scope, "validFor": valid_for});
            let token = client
                .post_text("/tokens/zone", &body)
                .await
                .map_err(|e| render_error(&e))?;
            println!("{}", token.trim());
            Ok(())
        }
        Command::Generate {
            what:
                GenerateCommand::TlsCertificate {
                    usage,
                    hostnames,
                    cert_file,
                    key_file,
                    ca_cert_file,
                    valid_for,
                },
        } => generate_tls_certificate(
            &usage,
            &hostnames,
            &cert_file,
            &key_file,
            ca_cert_file.as_deref(),
            &valid_for,
        ),
        Command::Inspect {
            what:
                InspectCommand::Dataplane {
                    name,
                    mesh,
                    inspect_type,
                },
        } => {
            let suffix = match inspect_type {
                InspectType::Config => "_config",
                InspectType::Rules => "_rules",
            };
            let doc = client
                .get_path(&format!("/meshes/{mesh}/dataplanes/{name}/{suffix}"))
                .await
                .map_err(|e| render_error(&e))?;
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            Ok(())
        }
        Command::Delete { kind, name, mesh } => {
            let kind = parse_kind(&kind)?;
            client
                .delete(kind, &mesh, &name)
                .await
                .map_err(|e| render_error(&e))?;
            println!("deleted {}", describe(kind, &mesh, &name));
            Ok(())
        }
    }
}

/// Zone overviews from global (`/zones/_overview`, or one zone's); `None` when the control
/// plane has none (a zone control plane answers 400), so the plain Zone resources are shown.
async fn zone_overviews(
    client: &ApiClient,
    name: Option<&str>,
) -> Result<Option<Vec<Value>>, String> {
    let result = match name {
        Some(n) => client
            .get_path(&format!("/zones/{n}/_overview"))
            .await
            .map(|o| vec![o]),
        None => client.list_all_at("/zones/_overview").await,
    };
    match result {
        Ok(items) => Ok(Some(items)),
        Err(ClientError::Api { status: 400, .. }) => Ok(None),
        Err(e) => Err(render_error(&e)),
    }
}

fn parse_kind(s: &str) -> Result<Kind, String> {
    Kind::from_cli_name(s).ok_or_else(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.plural()).collect();
        format!(
            "Error: unknown kind {s:?}; known kinds: {}",
            known.join(", ")
        )
    })
}

fn describe(kind: Kind, mesh: &str, name: &str) -> String {
    if kind.is_mesh_scoped() {
        format!("{kind} {name:?} in mesh {mesh:?}")
    } else {
        format!("{kind} {name:?}")
    }
}

async fn apply(client: &ApiClient, file: &PathBuf) -> Result<(), String> {
    let (source, text) = if file.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("Error: cannot read stdin: {e}"))?;
        ("stdin".to_string(), s)
    } else {
        let s = std::fs::read_to_string(file)
            .map_err(|e| format!("Error: cannot read {}: {e}", file.display()))?;
        (file.display().to_string(), s)
    };
    let docs = parse_documents(&text).map_err(|e| format!("Error: {source}: {e}"))?;
    if docs.is_empty() {
        return Err(format!("Error: {source}: no documents to apply"));
    }
    // Check every document before writing any, so a broken file changes nothing.
    let mut problems = String::new();
    let mut resources = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        match Resource::from_value(doc.clone()) {
            Ok(r) => resources.push((r, doc.clone())),
            Err(v) => {
                problems.push_str(&format!(
                    "Error: {source}: document {} ({}) is invalid:\n",
                    i + 1,
                    doc_label(doc)
                ));
                for x in v.iter() {
                    problems.push_str(&format!("  {}: {}\n", field_or_doc(&x.field), x.message));
                }
            }
        }
    }
    if !problems.is_empty() {
        problems.push_str("Nothing was applied.\n");
        return Err(problems);
    }
    let mut failures = String::new();
    for (res, doc) in resources {
        match client.put(res.kind, &res.mesh, &res.name, &doc).await {
            Ok(created) => println!(
                "{} {}",
                describe(res.kind, &res.mesh, &res.name),
                if created { "created" } else { "updated" }
            ),
            Err(e) => {
                failures.push_str(&format!(
                    "Error: {} was not applied: {}\n",
                    describe(res.kind, &res.mesh, &res.name),
                    render_error(&e).trim_start_matches("Error: ")
                ));
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

fn doc_label(doc: &Value) -> String {
    let t = doc.get("type").and_then(Value::as_str).unwrap_or("?");
    match doc.get("name").and_then(Value::as_str) {
        Some(n) => format!("{t} {n:?}"),
        None => t.to_string(),
    }
}

fn field_or_doc(field: &str) -> &str {
    if field.is_empty() {
        "(document)"
    } else {
        field
    }
}

fn render_error(e: &ClientError) -> String {
    match e {
        ClientError::Api {
            status,
            details,
            causes,
            ..
        } => {
            let mut s = format!("Error: {details} (HTTP {status})\n");
            for c in causes {
                s.push_str(&format!("  {}: {}\n", field_or_doc(&c.field), c.message));
            }
            s
        }
        other => format!("Error: {other}\n"),
    }
}

/// The zone of the control plane `client` talks to, when it is a zone control plane.
async fn local_zone(client: &ApiClient) -> Option<String> {
    let index = client.get_path("/").await.ok()?;
    if index.get("mode").and_then(Value::as_str) != Some("zone") {
        return None;
    }
    index
        .get("zone")
        .and_then(Value::as_str)
        .map(str::to_string)
}

async fn get(
    client: &ApiClient,
    kind: &str,
    name: Option<&str>,
    mesh: &str,
    output: Output,
) -> Result<(), String> {
    let kind = parse_kind(kind)?;
    if kind == Kind::Zone
        && let Some(overviews) = zone_overviews(client, name).await?
    {
        match output {
            Output::Table => print!("{}", table::zone_overviews(&overviews)),
            Output::Yaml | Output::Json => {
                let doc = match name {
                    Some(_) => overviews.into_iter().next().unwrap_or_default(),
                    None => serde_json::json!({"total": overviews.len(), "items": overviews}),
                };
                if matches!(output, Output::Yaml) {
                    print!("{}", to_yaml(&doc));
                } else {
                    println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                }
            }
        }
        return Ok(());
    }
    match name {
        Some(name) => {
            let res = match client.get(kind, mesh, name).await {
                Ok(res) => res,
                // A resource synced from a zone is stored under a hash-suffixed name; the name
                // its zone knows it by is its display name.
                Err(e) if e.is_not_found() && kind.is_mesh_scoped() => {
                    let items = client
                        .list_all(kind, mesh)
                        .await
                        .map_err(|e| render_error(&e))?;
                    match table::find_by_display_name(&items, name) {
                        Ok(Some(found)) => found.clone(),
                        Ok(None) => return Err(render_error(&e)),
                        Err(ambiguous) => return Err(format!("Error: {ambiguous}\n")),
                    }
                }
                Err(e) => return Err(render_error(&e)),
            };
            match output {
                Output::Yaml => print!("{}", to_yaml(&res)),
                Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&res).unwrap_or_default())
                }
                Output::Table => print!("{}", table::render(kind, std::slice::from_ref(&res))),
            }
        }
        None => {
            let mut items = client
                .list_all(kind, mesh)
                .await
                .map_err(|e| render_error(&e))?;
            if kind == Kind::Dataplane && matches!(output, Output::Table) {
                // Zone control planes know which proxies are online; others answer 404.
                if let Ok(overview) = client
                    .get_path(&format!("/meshes/{mesh}/dataplanes/_overview"))
                    .await
                {
                    table::attach_status(&mut items, &overview);
                }
                if let Some(zone) = local_zone(client).await {
                    table::attach_local_zone(&mut items, &zone);
                }
            }
            match output {
                Output::Table => print!("{}", table::render(kind, &items)),
                Output::Yaml | Output::Json => {
                    let doc = serde_json::json!({"total": items.len(), "items": items});
                    if matches!(output, Output::Yaml) {
                        print!("{}", to_yaml(&doc));
                    } else {
                        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
                    }
                }
            }
        }
    }
    Ok(())
}
