//! Checks that need other resources: the mesh a resource names exists, and the Secrets a provided
//! CA names exist and hold a PEM certificate and private key.

use base64::Engine;
use serde_json::Value;

use atoll_core::{FieldPath, Kind, Resource, ResourceKey, Violations};
use atoll_store::{Store, StoreError};

/// Every reference violation of `resource` against what is stored now.
pub async fn check_references(
    store: &dyn Store,
    resource: &Resource,
) -> Result<Violations, StoreError> {
    let mut v = Violations::new();
    let root = FieldPath::root();
    if resource.kind.is_mesh_scoped()
        && store
            .get(&ResourceKey::global(Kind::Mesh, &resource.mesh))
            .await?
            .is_none()
    {
        v.add(
            &root.field("mesh"),
            format!(
                "mesh {:?} does not exist: create the Mesh first",
                resource.mesh
            ),
        );
    }
    if resource.kind == Kind::Mesh {
        check_provided_ca(store, resource, &mut v).await?;
    }
    Ok(v)
}

/// What a provided CA's `cert` or `key` data source must contain.
#[derive(Clone, Copy)]
enum PemKind {
    Certificate,
    PrivateKey,
}

impl PemKind {
    fn matches(self, pem: &str) -> bool {
        match self {
            PemKind::Certificate => {
                pem.contains("-----BEGIN CERTIFICATE-----")
                    && pem.contains("-----END CERTIFICATE-----")
            }
            PemKind::PrivateKey => pem.contains("-----BEGIN") && pem.contains("PRIVATE KEY-----"),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            PemKind::Certificate => "a PEM certificate",
            PemKind::PrivateKey => "a PEM private key",
        }
    }
}

async fn check_provided_ca(
    store: &dyn Store,
    mesh: &Resource,
    v: &mut Violations,
) -> Result<(), StoreError> {
    let Some(backends) = mesh
        .spec
        .get("mtls")
        .and_then(|m| m.get("backends"))
        .and_then(Value::as_array)
    else {
        return Ok(());
    };
    let at = FieldPath::root().field("mtls").field("backends");
    for (i, backend) in backends.iter().enumerate() {
        if backend.get("type").and_then(Value::as_str) != Some("provided") {
            continue;
        }
        let conf = at.index(i).field("conf");
        for (field, kind) in [("cert", PemKind::Certificate), ("key", PemKind::PrivateKey)] {
            let Some(source) = backend.get("conf").and_then(|c| c.get(field)) else {
                continue; // a missing cert/key is the model's violation
            };
            check_data_source(store, &mesh.name, source, &conf.field(field), kind, v).await?;
        }
    }
    Ok(())
}

async fn check_data_source(
    store: &dyn Store,
    mesh: &str,
    source: &Value,
    at: &FieldPath,
    kind: PemKind,
    v: &mut Violations,
) -> Result<(), StoreError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(name) = source.get("secret").and_then(Value::as_str) {
        let key = ResourceKey::new(Kind::Secret, mesh, name);
        let Some(secret) = store.get(&key).await? else {
            v.add(
                &at.field("secret"),
                format!(
                    "secret {name:?} not found in mesh {mesh:?}: create it before the Mesh uses it"
                ),
            );
            return Ok(());
        };
        let data = secret
            .spec
            .get("data")
            .and_then(Value::as_str)
            .and_then(|d| b64.decode(d).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok());
        if !data.as_deref().is_some_and(|pem| kind.matches(pem)) {
            v.add(
                &at.field("secret"),
                format!(
                    "secret {name:?} must hold {} (base64 of PEM in `data`)",
                    kind.describe()
                ),
            );
        }
    } else if let Some(inline) = source.get("inlineString").and_then(Value::as_str) {
        if !kind.matches(inline) {
            v.add(
                &at.field("inlineString"),
                format!("must be {}", kind.describe()),
            );
        }
    } else if let Some(inline) = source.get("inline").and_then(Value::as_str) {
        let ok = b64
            .decode(inline)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .is_some_and(|pem| kind.matches(&pem));
        if !ok {
            v.add(
                &at.field("inline"),
                format!("must be base64 of {}", kind.describe()),
            );
        }
    }
    Ok(())
}
