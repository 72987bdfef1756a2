//! The global's side of the REST API's zone endpoints ([`ZoneInspector`]): zone insights from
//! the KDS server's [`ZoneStatus`], and zone deletion.
//!
//! Deleting a zone is refused while any of its KDS streams is open (its resources would come
//! straight back). Otherwise connects of that zone are held off while global deletes every
//! resource the zone owned (labels `kuma.io/origin: zone` and `kuma.io/zone: <name>`, of every
//! kind and mesh), then the Zone itself. The store's change events carry the deletions to the
//! KDS senders, which remove the relayed copies (ZoneIngresses, MeshServices) from the other
//! zones.

use async_trait::async_trait;
use serde_json::Value;

use atoll_core::labels::{ORIGIN_LABEL, ORIGIN_ZONE, ZONE_LABEL};
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_cp::extension::{ZoneDeleteError, ZoneDeletion, ZoneInspector};
use atoll_store::{ListFilter, SharedStore, StoreError};

use crate::insights::ZoneStatus;

/// [`ZoneInspector`] over the KDS server's zone status and the store.
#[derive(Clone)]
pub struct GlobalZones {
    store: SharedStore,
    status: ZoneStatus,
}

impl GlobalZones {
    pub fn new(store: SharedStore, status: ZoneStatus) -> Self {
        Self { store, status }
    }
}

/// Whether `r` was synced to global from `zone`.
pub fn owned_by_zone(r: &Resource, zone: &str) -> bool {
    r.labels.get(ORIGIN_LABEL).map(String::as_str) == Some(ORIGIN_ZONE)
        && r.labels.get(ZONE_LABEL).map(String::as_str) == Some(zone)
}

/// Deletes every resource synced from `zone`, of every kind and mesh; returns how many.
pub async fn delete_zone_resources(store: &SharedStore, zone: &str) -> Result<usize, StoreError> {
    let mut removed = 0;
    for kind in Kind::ALL {
        if *kind == Kind::Zone {
            continue;
        }
        let owned: Vec<ResourceKey> = store
            .list(&ListFilter::all(*kind))
            .await?
            .items
            .iter()
            .filter(|r| owned_by_zone(r, zone))
            .map(Resource::key)
            .collect();
        for key in owned {
            match store.delete(&key, None).await {
                Ok(()) => removed += 1,
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

#[async_trait]
impl ZoneInspector for GlobalZones {
    fn insight(&self, zone: &str) -> Value {
        self.status.insight(zone)
    }

    async fn delete_zone(&self, zone: &str) -> Result<ZoneDeletion, ZoneDeleteError> {
        let key = ResourceKey::global(Kind::Zone, zone);
        if self.store.get(&key).await?.is_none() {
            return Err(ZoneDeleteError::NotFound(zone.to_string()));
        }
        self.status
            .begin_delete(zone)
            .map_err(|c| ZoneDeleteError::Online {
                zone: zone.to_string(),
                since: Some(c.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            })?;
        let result = async {
            let removed = delete_zone_resources(&self.store, zone).await?;
            match self.store.delete(&key, None).await {
                Ok(()) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            Ok(removed)
        }
        .await;
        self.status.end_delete(zone, result.is_ok());
        let removed = result?;
        tracing::info!(
            zone,
            resources_removed = removed,
            "deleted an offline zone and the resources it owned"
        );
        Ok(ZoneDeletion {
            resources_removed: removed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use atoll_kds::transport::ZoneDescription;
    use atoll_store::MemoryStore;
    use chrono::Utc;
    use serde_json::json;

    fn from_zone(kind: Kind, mesh: &str, name: &str, zone: &str) -> Resource {
        let mut r = Resource::new(kind, mesh, name);
        r.labels.insert(ORIGIN_LABEL.into(), ORIGIN_ZONE.into());
        r.labels.insert(ZONE_LABEL.into(), zone.into());
        r
    }

    #[tokio::test]
    async fn deleting_an_offline_zone_takes_exactly_what_it_owned() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let status = ZoneStatus::new("g");
        let zones = GlobalZones::new(store.clone(), status.clone());
        let mut zone = Resource::new(Kind::Zone, "", "east");
        zone.spec.insert("enabled".into(), json!(true));
        store.create(zone).await.expect("zone");
        store
            .create(Resource::new(Kind::Mesh, "", "default"))
            .await
            .expect("mesh");
        for r in [
            from_zone(Kind::Dataplane, "default", "dp-1-x", "east"),
            from_zone(Kind::MeshService, "default", "backend-x", "east"),
            from_zone(Kind::ZoneIngress, "", "zone-ingress-x", "east"),
            from_zone(Kind::Dataplane, "default", "dp-1-y", "west"),
            Resource::new(Kind::Dataplane, "default", "local"),
        ] {
            store.create(r).await.expect("stored");
        }

        // Connected: refused, nothing touched.
        let open = status
            .open_stream("east", &ZoneDescription::default(), true, Utc::now())
            .expect("open");
        let refused = zones.delete_zone("east").await.expect_err("online");
        assert!(
            matches!(&refused, ZoneDeleteError::Online { zone, .. } if zone == "east"),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("\"east\" is online"),
            "{refused}"
        );
        status.close_stream(open, None, Utc::now());

        let done = zones.delete_zone("east").await.expect("deleted");
        assert_eq!(done.resources_removed, 3);
        let left = store
            .list(&ListFilter::all(Kind::Dataplane))
            .await
            .expect("list")
            .items;
        let names: Vec<&str> = left.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["dp-1-y", "local"]);
        assert!(
            store
                .get(&ResourceKey::global(Kind::Zone, "east"))
                .await
                .expect("get")
                .is_none()
        );
        assert!(matches!(
            zones.delete_zone("east").await,
            Err(ZoneDeleteError::NotFound(_))
        ));
    }
}
