//! Building proxies' config: one proxy (a connecting one, a zone proxy), or many sidecars of a
//! mesh in parallel, each from the mesh's indexed state and the proxy's last build (whose
//! certificate is reused while it is valid), published to the cache.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use super::{ProxyKey, ProxyKind, ZoneDirectory};
use crate::error::BuildError;
use crate::snapshot::ProxyBuild;

impl ZoneDirectory {
    /// Builds one proxy's config (kept without the inspect views).
    pub(super) async fn build_for(&self, key: &ProxyKey) -> Result<Arc<ProxyBuild>, BuildError> {
        let started = Instant::now();
        let built = match key.kind {
            ProxyKind::Sidecar => {
                let previous_cert = self.cache.last_build(key).and_then(|b| b.cert.clone());
                let state = self.index.mesh(&key.mesh).await?;
                crate::snapshot::build_to_serve(
                    &state,
                    &key.name,
                    previous_cert.as_ref(),
                    self.clock.now(),
                )?
            }
            ProxyKind::Ingress => {
                crate::zone_proxies::build_ingress(&self.index, self.store.as_ref(), &key.name)
                    .await?
            }
            ProxyKind::Egress => {
                let previous = self
                    .cache
                    .last_build(key)
                    .map(|b| b.mesh_certs.clone())
                    .unwrap_or_default();
                crate::zone_proxies::build_egress(
                    &self.index,
                    self.store.as_ref(),
                    &key.name,
                    &previous,
                    self.clock.now(),
                )
                .await?
            }
        };
        let label = match key.kind {
            ProxyKind::Sidecar => "sidecar",
            ProxyKind::Ingress => "ingress",
            ProxyKind::Egress => "egress",
        };
        self.metrics.observe_generation(label, started.elapsed());
        let mut built = built;
        built.forget_models();
        Ok(Arc::new(built))
    }

    /// Rebuilds one proxy and publishes its snapshot if it changed.
    pub(super) async fn refresh(&self, key: &ProxyKey) {
        let built = self.build_for(key).await;
        self.cache.publish(key, built);
    }

    /// Rebuilds many proxies: sidecars in parallel on every core (a build is pure and
    /// synchronous once the mesh state is read), zone proxies one by one. With `inbound_only`
    /// (only policies that reach inbounds changed), sidecars rebuild just their inbound side.
    pub(super) async fn refresh_all(&self, keys: Vec<ProxyKey>, inbound_only: bool) {
        let mut by_mesh: BTreeMap<String, Vec<ProxyKey>> = BTreeMap::new();
        for key in keys {
            if key.kind == ProxyKind::Sidecar {
                by_mesh.entry(key.mesh.clone()).or_default().push(key);
            } else {
                self.refresh(&key).await;
            }
        }
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        for (mesh, keys) in by_mesh {
            let state = match self.index.mesh(&mesh).await {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(%mesh, proxies = keys.len(), error = %e, "cannot build the mesh's proxies; they keep their last config");
                    continue;
                }
            };
            let jobs: Vec<(ProxyKey, Option<Arc<ProxyBuild>>)> = keys
                .into_iter()
                .map(|key| {
                    let previous = self.cache.last_build(&key);
                    (key, previous)
                })
                .collect();
            let chunk = jobs.len().div_ceil(workers).max(1);
            let now = self.clock.now();
            let mut handles = Vec::new();
            let mut jobs = jobs.into_iter().peekable();
            while jobs.peek().is_some() {
                let part: Vec<_> = jobs.by_ref().take(chunk).collect();
                let state = state.clone();
                handles.push(tokio::task::spawn_blocking(move || {
                    part.into_iter()
                        .map(|(key, previous)| {
                            let started = Instant::now();
                            let built = match &previous {
                                Some(previous) if inbound_only => {
                                    crate::snapshot::rebuild_inbounds(
                                        &state, &key.name, previous, now,
                                    )
                                }
                                _ => crate::snapshot::build_to_serve(
                                    &state,
                                    &key.name,
                                    previous.as_ref().and_then(|p| p.cert.as_ref()),
                                    now,
                                ),
                            }
                            .map(|mut b| {
                                // build_to_serve kept no models; an inbound rebuild made new ones.
                                b.forget_models();
                                Arc::new(b)
                            });
                            (key, built, started.elapsed())
                        })
                        .collect::<Vec<_>>()
                }));
            }
            for handle in handles {
                match handle.await {
                    Ok(results) => {
                        for (key, built, took) in results {
                            self.metrics.observe_generation("sidecar", took);
                            self.cache.publish(&key, built);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a build worker failed; its proxies keep their config")
                    }
                }
            }
        }
    }
}
