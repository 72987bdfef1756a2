//! Publishes which services this zone offers: one MeshService per `kuma.io/service` of the
//! local dataplanes, with its healthy instance count in `status.dataplaneProxies`. KDS carries
//! each one to global, which relays it to the other zones; their sidecars then reach the service
//! through this zone's ingress, weighted by that count. One small resource per service, so a
//! change to one service syncs one resource (not a giant list on the ZoneIngress, which is what
//! made Kuma's `availableServices` scale badly).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, watch};

use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::{FieldPath, Kind, Resource, ResourceKey, Violations};
use atoll_store::{ListFilter, SharedStore, StoreError};

use atoll_core::labels::{MANAGED_BY_LABEL, PROTOCOL_TAG, SERVICE_TAG};

use crate::remote::{MANAGED_BY_ZONE_CP, is_remote};

/// How long changes are gathered before the MeshServices are rewritten: a burst of dataplane
/// registrations becomes one write per service.
const SETTLE: Duration = Duration::from_millis(150);
/// A full pass now and then repairs anything a lost event left behind.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// What one service looks like from this zone's dataplanes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LocalService {
    port: Option<i64>,
    protocol: Option<String>,
    total: u64,
    healthy: u64,
}

/// The services of a mesh's local dataplanes.
fn local_services(dataplanes: &[Resource], local_zone: &str) -> BTreeMap<String, LocalService> {
    let mut out: BTreeMap<String, LocalService> = BTreeMap::new();
    for r in dataplanes {
        if is_remote(r, local_zone) {
            continue;
        }
        let Ok(doc) = serde_json::from_value::<DataplaneDoc>(Value::Object(r.spec.clone())) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for inbound in doc.networking.iter().flat_map(|n| n.inbound.iter()) {
            let Some(service) = inbound.tags.get(SERVICE_TAG) else {
                continue;
            };
            let entry = out.entry(service.clone()).or_default();
            if seen.insert(service.clone()) {
                entry.total += 1;
            }
            let ready = inbound
                .health
                .as_ref()
                .and_then(|h| h.ready)
                .unwrap_or(true);
            if ready {
                entry.healthy += 1;
            }
            if entry.port.is_none() {
                entry.port = inbound.service_port.or(inbound.port);
                entry.protocol = inbound.tags.get(PROTOCOL_TAG).cloned();
            }
        }
    }
    out
}

/// The MeshService this zone publishes for a service.
fn mesh_service(mesh: &str, name: &str, service: &str, local: &LocalService) -> Resource {
    let mut r = Resource::new(Kind::MeshService, mesh, name);
    r.labels
        .insert(MANAGED_BY_LABEL.into(), MANAGED_BY_ZONE_CP.into());
    let mut port = Map::new();
    if let Some(p) = local.port {
        port.insert("port".into(), json!(p));
        port.insert("targetPort".into(), json!(p));
    }
    port.insert(
        "appProtocol".into(),
        json!(local.protocol.clone().unwrap_or_else(|| "tcp".into())),
    );
    r.spec.insert(
        "spec".into(),
        json!({
            "selector": {"dataplaneTags": {SERVICE_TAG: service}},
            "ports": if local.port.is_some() { vec![Value::Object(port)] } else { Vec::new() },
            "state": if local.healthy > 0 { "Available" } else { "Unavailable" },
        }),
    );
    r.spec.insert(
        "status".into(),
        json!({"dataplaneProxies": {"healthy": local.healthy, "total": local.total}}),
    );
    r
}

fn is_managed(r: &Resource) -> bool {
    r.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_ZONE_CP)
}

/// Brings the published MeshServices of `mesh` in line with its dataplanes. Returns how many
/// resources were written or deleted.
pub async fn reconcile(
    store: &SharedStore,
    mesh: &str,
    local_zone: &str,
) -> Result<usize, StoreError> {
    let dataplanes = store
        .list(&ListFilter::in_mesh(Kind::Dataplane, mesh))
        .await?;
    let wanted = local_services(&dataplanes.items, local_zone);
    let existing: BTreeMap<String, Resource> = store
        .list(&ListFilter::in_mesh(Kind::MeshService, mesh))
        .await?
        .items
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect();
    let mut writes = 0;
    for (service, local) in &wanted {
        let mut v = Violations::new();
        atoll_core::name::check_resource_name(service, &FieldPath::root(), &mut v);
        if !v.is_empty() {
            tracing::warn!(%mesh, %service, "service name is not a valid resource name; it is not offered to other zones");
            continue;
        }
        let desired = mesh_service(mesh, service, service, local);
        match existing.get(service) {
            Some(current) if !is_managed(current) => {
                tracing::debug!(%mesh, %service, "a MeshService written by someone else has this name; leaving it");
            }
            Some(current) if current.spec == desired.spec && current.labels == desired.labels => {}
            Some(current) => match store.update(desired, current.version).await {
                Ok(_) => writes += 1,
                // Someone else wrote in between: the next pass sees it.
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            },
            None => match store.create(desired).await {
                Ok(_) => writes += 1,
                Err(StoreError::AlreadyExists(_)) => {}
                Err(e) => return Err(e),
            },
        }
    }
    for (name, current) in &existing {
        if is_managed(current) && !is_remote(current, local_zone) && !wanted.contains_key(name) {
            match store
                .delete(
                    &ResourceKey::new(Kind::MeshService, mesh, name),
                    Some(current.version),
                )
                .await
            {
                Ok(()) => writes += 1,
                Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(writes)
}

async fn all_meshes(store: &SharedStore) -> BTreeSet<String> {
    match store.list(&ListFilter::all(Kind::Mesh)).await {
        Ok(page) => page.items.into_iter().map(|m| m.name).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list meshes to publish their services");
            BTreeSet::new()
        }
    }
}

/// Keeps every mesh's published MeshServices current until `shutdown`.
pub async fn publish(store: SharedStore, local_zone: String, mut shutdown: watch::Receiver<bool>) {
    let mut events = store.watch();
    let mut dirty = all_meshes(&store).await;
    let mut resync = tokio::time::interval(RESYNC_EVERY);
    resync.tick().await;
    loop {
        for mesh in std::mem::take(&mut dirty) {
            match reconcile(&store, &mesh, &local_zone).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(%mesh, writes = n, "published this zone's services"),
                Err(e) => {
                    tracing::warn!(%mesh, error = %e, "cannot publish this zone's services; retrying");
                    dirty.insert(mesh);
                }
            }
        }
        let retry_soon = !dirty.is_empty();
        let wake = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            () = tokio::time::sleep(Duration::from_secs(1)), if retry_soon => Wake::Retry,
            _ = resync.tick() => Wake::Resync,
            received = events.recv() => Wake::Event(received),
        };
        match wake {
            Wake::Retry => continue,
            Wake::Resync => dirty = all_meshes(&store).await,
            Wake::Event(received) => {
                match received {
                    Ok(ev) => note(&mut dirty, &ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => dirty = all_meshes(&store).await,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
                if dirty.is_empty() {
                    continue;
                }
                // Let a burst settle, then take everything it queued.
                tokio::time::sleep(SETTLE).await;
                loop {
                    match events.try_recv() {
                        Ok(ev) => note(&mut dirty, &ev),
                        Err(broadcast::error::TryRecvError::Lagged(_)) => {
                            dirty = all_meshes(&store).await;
                        }
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

enum Wake {
    Retry,
    Resync,
    Event(Result<atoll_store::ChangeEvent, broadcast::error::RecvError>),
}

/// Marks the mesh an event concerns as needing a pass.
fn note(dirty: &mut BTreeSet<String>, ev: &atoll_store::ChangeEvent) {
    match ev.key.kind {
        Kind::Dataplane => {
            dirty.insert(ev.key.mesh.clone());
        }
        Kind::Mesh => {
            dirty.insert(ev.key.name.clone());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn dataplane(name: &str, service: &str, ready: bool) -> Resource {
        let mut r = Resource::new(Kind::Dataplane, "default", name);
        let spec = json!({"networking": {"address": "127.0.0.1", "inbound": [
            {"port": 8080, "servicePort": 9090, "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"},
             "health": {"ready": ready}}]}});
        if let Value::Object(m) = spec {
            r.spec = m;
        }
        r
    }

    #[tokio::test]
    async fn one_mesh_service_per_local_service_with_its_healthy_count() {
        let store: SharedStore = Arc::new(atoll_store::MemoryStore::new());
        store
            .create(Resource::new(Kind::Mesh, "", "default"))
            .await
            .expect("mesh");
        for (name, service, ready) in [
            ("b-1", "backend", true),
            ("b-2", "backend", true),
            ("b-3", "backend", false),
            ("w-1", "web", true),
        ] {
            store
                .create(dataplane(name, service, ready))
                .await
                .expect("dp");
        }
        assert_eq!(reconcile(&store, "default", "zone-2").await.expect("ok"), 2);
        let backend = store
            .get(&ResourceKey::new(Kind::MeshService, "default", "backend"))
            .await
            .expect("get")
            .expect("published");
        assert_eq!(
            backend.spec["status"]["dataplaneProxies"],
            json!({"healthy": 2, "total": 3})
        );
        assert_eq!(backend.spec["spec"]["ports"][0]["appProtocol"], "http");
        // Nothing changed: nothing written.
        assert_eq!(reconcile(&store, "default", "zone-2").await.expect("ok"), 0);
        // The last web dataplane goes: its MeshService goes too; an operator's stays.
        let mut own = Resource::new(Kind::MeshService, "default", "db");
        own.spec.insert(
            "spec".into(),
            json!({"selector": {"dataplaneTags": {"kuma.io/service": "db"}}}),
        );
        store.create(own).await.expect("operator's");
        store
            .delete(&ResourceKey::new(Kind::Dataplane, "default", "w-1"), None)
            .await
            .expect("delete");
        assert_eq!(reconcile(&store, "default", "zone-2").await.expect("ok"), 1);
        let left: Vec<String> = store
            .list(&ListFilter::in_mesh(Kind::MeshService, "default"))
            .await
            .expect("list")
            .items
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(left, ["backend", "db"]);
    }
}
