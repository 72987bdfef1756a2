//! Warnings about a write that is valid but likely to break traffic that flows now. They travel
//! with the accepted write (HTTP `Warning: 299` headers, which atollctl prints); nothing here
//! refuses a change.

use serde_json::Value;

use atoll_core::validate::Violation;
use atoll_core::{Kind, Resource};
use atoll_store::{ListFilter, Store, StoreError};

/// What an operator should hear about replacing `existing` (if any) with `new`.
pub async fn change_warnings(
    store: &dyn Store,
    existing: Option<&Resource>,
    new: &Resource,
) -> Result<Vec<Violation>, StoreError> {
    let mut warnings = Vec::new();
    if new.kind == Kind::Mesh
        && existing.is_some_and(mtls_enabled)
        && !mtls_enabled(new)
        && let Some(what) = cross_zone_traffic(store).await?
    {
        warnings.push(Violation {
            field: "mtls.enabledBackend".into(),
            message: format!(
                "this change turns mTLS off on mesh {:?}, which has {what}: traffic between \
                 zones (through zone ingresses) and through zone egresses needs mesh mTLS and \
                 fails (503) until mTLS is enabled again",
                new.name
            ),
        });
    }
    Ok(warnings)
}

fn mtls_enabled(mesh: &Resource) -> bool {
    mesh.spec
        .get("mtls")
        .and_then(|m| m.get("enabledBackend"))
        .and_then(Value::as_str)
        .is_some_and(|b| !b.is_empty())
}

/// Names what makes the deployment multi-zone, if anything does: zone proxies (known to a zone
/// and, synced, to global) or registered zones (global).
async fn cross_zone_traffic(store: &dyn Store) -> Result<Option<&'static str>, StoreError> {
    for (kind, what) in [
        (Kind::ZoneIngress, "zone ingresses"),
        (Kind::ZoneEgress, "zone egresses"),
        (Kind::Zone, "zones connected to it"),
    ] {
        let mut filter = ListFilter::all(kind);
        filter.limit = Some(1);
        if store.list(&filter).await?.total > 0 {
            return Ok(Some(what));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_store::memory::MemoryStore;
    use serde_json::json;

    fn mesh(mtls: Option<&str>) -> Resource {
        let mut m = Resource::new(Kind::Mesh, "", "default");
        if let Some(backend) = mtls {
            m.spec.insert(
                "mtls".into(),
                json!({"enabledBackend": backend, "backends": [{"name": backend, "type": "builtin"}]}),
            );
        }
        m
    }

    fn ingress() -> Resource {
        let mut r = Resource::new(Kind::ZoneIngress, "", "ingress-1");
        r.spec.insert(
            "networking".into(),
            json!({"address": "127.0.0.1", "port": 10001}),
        );
        r
    }

    #[tokio::test]
    async fn turning_mtls_off_with_zone_proxies_is_warned_about() {
        let store = MemoryStore::new();
        store.create(ingress()).await.expect("store ingress");
        let w = change_warnings(&store, Some(&mesh(Some("ca-1"))), &mesh(None))
            .await
            .expect("warnings");
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].field, "mtls.enabledBackend");
        assert!(w[0].message.contains("zone ingresses"), "{}", w[0].message);
    }

    #[tokio::test]
    async fn no_warning_without_zones_or_when_mtls_stays_on() {
        let store = MemoryStore::new();
        let off = change_warnings(&store, Some(&mesh(Some("ca-1"))), &mesh(None))
            .await
            .expect("warnings");
        assert!(
            off.is_empty(),
            "a single zone without zone proxies: {off:?}"
        );
        store.create(ingress()).await.expect("store ingress");
        let kept = change_warnings(&store, Some(&mesh(Some("ca-1"))), &mesh(Some("ca-2")))
            .await
            .expect("warnings");
        assert!(kept.is_empty(), "{kept:?}");
        let created = change_warnings(&store, None, &mesh(None))
            .await
            .expect("warnings");
        assert!(created.is_empty(), "{created:?}");
    }
}
