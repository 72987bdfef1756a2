//! The directory's event loop: follows store changes (describing each to the planner with what
//! it touched, and creating the builtin CAs of a standalone zone's meshes as they appear),
//! wakes for certificate renewals, and rebuilds what needs it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use tokio::sync::{broadcast, watch};

use atoll_core::{Kind, ResourceKey};
use atoll_store::{ChangeEvent, ChangeOp, ListFilter};

use super::planner::{self, StoreChange};
use super::{ZoneDirectory, stopped};

/// What the loop remembers between batches to describe changes: the services each dataplane
/// offered when last seen, so that its change (or deletion) concerns their clients.
#[derive(Default)]
struct SeenServices {
    of_dataplane: HashMap<(String, String), BTreeSet<String>>,
}

impl ZoneDirectory {
    /// Follows store changes and certificate rotations until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut events = self.store.watch();
        // Meshes and zone proxies written before this subscription (by an earlier run of this
        // zone CP, or while it started) produced no event here: read them now.
        self.provision_all_cas().await;
        self.reload_routes().await;
        let mut seen = SeenServices::default();
        loop {
            let next_rotation = self.next_rotation();
            let sleep = async {
                match next_rotation {
                    Some(at) => tokio::time::sleep(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                () = self.wake.notified() => {}
                () = sleep => {
                    self.refresh_all(self.cache.keys(), false).await;
                }
                received = events.recv() => {
                    let mut batch = Vec::new();
                    match received {
                        Ok(ev) => batch.push(ev),
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            tracing::warn!(missed, "missed store events; rebuilding every proxy");
                            self.provision_all_cas().await;
                            let _guard = self.rebuild.lock().await;
                            // The index may be stale in any way: read everything again.
                            self.index.forget_all().await;
                            self.refresh_all(self.cache.keys(), false).await;
                            continue;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    // Coalesce whatever else is already queued.
                    while let Ok(ev) = events.try_recv() {
                        batch.push(ev);
                    }
                    self.handle(&batch, &mut seen).await;
                }
            }
        }
    }

    /// Applies a batch of changes to the index and rebuilds the proxies they concern.
    async fn handle(&self, batch: &[ChangeEvent], seen: &mut SeenServices) {
        for ev in batch {
            match (ev.key.kind, ev.op) {
                (Kind::Mesh, ChangeOp::Created | ChangeOp::Updated) => {
                    self.provision_cas(&ev.key.name).await;
                }
                // A deleted CA Secret is created again, as a build used to do on next load.
                (Kind::Secret, ChangeOp::Deleted) => self.provision_cas(&ev.key.mesh).await,
                _ => {}
            }
        }
        let _guard = self.rebuild.lock().await;
        // Services a changed MeshService stood for, and the services outbound policies named,
        // before the change.
        let mut offered_before: HashMap<&ResourceKey, String> = HashMap::new();
        let mut policy_before: HashMap<&ResourceKey, Option<BTreeSet<String>>> = HashMap::new();
        for ev in batch {
            if ev.key.kind == Kind::MeshService
                && let Some(service) = self.index.offered_service(&ev.key).await
            {
                offered_before.insert(&ev.key, service);
            }
            if planner::is_outbound_policy(ev.key.kind) {
                let view = self.index.policy_view(&ev.key).await;
                policy_before.insert(&ev.key, planner::outbound_policy_services(view.as_ref()));
            }
        }
        let mut routes_changed = false;
        for ev in batch {
            if let Err(e) = self.index.apply(ev).await {
                tracing::warn!(error = %e, "cannot read a changed resource; its proxies keep their config");
            }
            routes_changed |= matches!(ev.key.kind, Kind::ZoneIngress | Kind::ZoneEgress);
        }
        if routes_changed {
            self.reload_routes().await;
        }
        let mut changes = Vec::with_capacity(batch.len());
        for ev in batch {
            let mut change = StoreChange::of(ev.key.clone());
            match ev.key.kind {
                Kind::MeshService => {
                    change.services.extend(offered_before.get(&ev.key).cloned());
                    change
                        .services
                        .extend(self.index.offered_service(&ev.key).await);
                }
                Kind::Dataplane => {
                    let k = (ev.key.mesh.clone(), ev.key.name.clone());
                    if let Some(old) = seen.of_dataplane.get(&k) {
                        change.services.extend(old.iter().cloned());
                    }
                    if let Some(now) = self.current_services(&ev.key).await {
                        change.services.extend(now.iter().cloned());
                        seen.of_dataplane.insert(k, now);
                    } else {
                        seen.of_dataplane.remove(&k);
                    }
                }
                kind if planner::is_outbound_policy(kind) => {
                    let after = self.index.policy_view(&ev.key).await;
                    change.policy_services = match (
                        policy_before.get(&ev.key).cloned().flatten(),
                        planner::outbound_policy_services(after.as_ref()),
                    ) {
                        (Some(mut before), Some(after)) => {
                            before.extend(after);
                            Some(before)
                        }
                        _ => None,
                    };
                }
                _ => {}
            }
            changes.push(change);
        }
        let plan = self.cache.read(|entries| {
            planner::plan(
                &changes,
                entries
                    .iter()
                    .map(|(key, e)| (key, e.last.as_ref().map(|b| &b.outbound_services))),
            )
        });
        self.metrics
            .unusable
            .set(i64::try_from(self.index.unusable_count().await).unwrap_or(i64::MAX));
        self.refresh_all(plan.proxies.into_iter().collect(), plan.inbound_only)
            .await;
    }

    /// Creates the missing builtin CAs of `mesh` when this zone owns its meshes' CAs. A failure
    /// is logged: the mesh's builds report the missing CA until a later change succeeds.
    async fn provision_cas(&self, mesh: &str) {
        if !self.creates_cas {
            return;
        }
        if let Err(e) =
            crate::ca::provision_builtin_cas(self.store.as_ref(), mesh, self.clock.now()).await
        {
            tracing::error!(%mesh, error = %e, "cannot create the mesh's builtin CA; its proxies get no certificates");
        }
    }

    /// [`Self::provision_cas`] for every stored mesh.
    async fn provision_all_cas(&self) {
        if !self.creates_cas {
            return;
        }
        match self.store.list(&ListFilter::all(Kind::Mesh)).await {
            Ok(meshes) => {
                for mesh in &meshes.items {
                    self.provision_cas(&mesh.name).await;
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot list the meshes to create their builtin CAs")
            }
        }
    }

    async fn reload_routes(&self) {
        if let Err(e) = self.index.reload_routes().await {
            tracing::warn!(error = %e, "cannot read the zone proxies; sidecars keep their routes to other zones");
        }
    }

    async fn current_services(&self, key: &ResourceKey) -> Option<BTreeSet<String>> {
        let state = self.index.mesh(&key.mesh).await.ok()?;
        state.dataplanes.get(&key.name).map(|d| d.services.clone())
    }
}
