//! Certificates over time: when the next proxy certificate is due for renewal, and the steps of
//! a mesh CA switch, each taken once the mesh's connected proxies ACKed the previous one.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ProxyKey, ProxyKind, ZoneDirectory, stopped};
use crate::ca::MeshCa;

/// The shortest wait before a rotation pass, so an overdue rotation that fails to build cannot
/// spin the loop.
const MIN_ROTATION_WAIT: Duration = Duration::from_millis(250);

/// How often CA switches in progress are looked at.
const CA_SWITCH_CHECK: Duration = Duration::from_millis(200);

impl ZoneDirectory {
    /// How long until the earliest certificate of a known proxy is due for renewal.
    pub(super) fn next_rotation(&self) -> Option<Duration> {
        let at = self.cache.read(|entries| {
            entries
                .values()
                .filter_map(|e| e.last.as_ref())
                .flat_map(|b| b.certs())
                .map(|c| atoll_identity::rotation_at(&c.issued))
                .min()
        })?;
        Some(
            (at - self.clock.now())
                .to_std()
                .unwrap_or_default()
                .max(MIN_ROTATION_WAIT),
        )
    }

    /// Drives CA switches (`index::plan_ca_switch`): a mesh moves to the next step once every
    /// connected proxy holding a certificate of the mesh has ACKed a snapshot built on the
    /// current step, or after `max_wait` (a proxy that never answers must not hold the mesh's
    /// CA back forever; it is named in the log).
    pub async fn drive_ca_switches(
        self: Arc<Self>,
        max_wait: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(CA_SWITCH_CHECK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                _ = tick.tick() => {}
            }
            for (mesh, since) in self.index.ca_switches().await {
                let Ok(state) = self.index.mesh(&mesh).await else {
                    continue;
                };
                let Some(current) = state.ca.as_ref() else {
                    continue;
                };
                let behind = self.behind_on_ca(&mesh, current);
                if !behind.is_empty() && since.elapsed() < max_wait {
                    continue;
                }
                if !behind.is_empty() {
                    tracing::warn!(%mesh, proxies = ?behind, waited = ?max_wait, "mesh CA switch goes on without these proxies' ACK");
                }
                let _guard = self.rebuild.lock().await;
                if self.index.advance_ca(&mesh).await {
                    let keys: Vec<ProxyKey> = self
                        .cache
                        .keys()
                        .into_iter()
                        .filter(|k| k.kind == ProxyKind::Egress || k.mesh == mesh)
                        .collect();
                    self.refresh_all(keys, false).await;
                }
            }
        }
    }

    /// The connected proxies of `mesh` that have not ACKed a snapshot built on `ca`.
    fn behind_on_ca(&self, mesh: &str, ca: &MeshCa) -> Vec<String> {
        self.cache.read(|entries| {
            entries
                .iter()
                .filter(|(_, e)| e.online())
                .filter_map(|(key, e)| {
                    let build = e.last.as_ref()?;
                    let cert = match key.kind {
                        ProxyKind::Sidecar if key.mesh == mesh => build.cert.as_ref(),
                        ProxyKind::Egress => build.mesh_certs.get(mesh),
                        _ => None,
                    }?;
                    (!cert.matches(ca) || !e.acked_current()).then(|| key.to_string())
                })
                .collect()
        })
    }
}
