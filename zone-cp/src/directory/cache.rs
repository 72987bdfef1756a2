//! The proxies the zone knows (connected now or before): each one's latest build, the watch
//! its xDS stream reads snapshots from, its stream status, and how many streams it has open.
//! Publishing a build here is what pushes config to a proxy.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use atoll_clock::SharedClock;
use atoll_xds_server::directory::{ProxySubscription, SharedStatus};
use atoll_xds_server::session::Snapshot;

use super::ProxyKey;
use crate::error::BuildError;
use crate::snapshot::ProxyBuild;

/// One known proxy.
pub(super) struct ProxyEntry {
    snapshots: watch::Sender<Arc<Snapshot>>,
    pub(super) status: SharedStatus,
    pub(super) last: Option<Arc<ProxyBuild>>,
    streams: Arc<OpenStreams>,
}

impl ProxyEntry {
    /// Whether an ADS stream of this proxy is open.
    pub(super) fn online(&self) -> bool {
        self.streams.open.load(Ordering::SeqCst) > 0
    }

    /// When the proxy's last stream ended, while it has none open.
    pub(super) fn offline_since(&self) -> Option<DateTime<Utc>> {
        if self.online() {
            return None;
        }
        *self.streams.last_closed.lock().ok()?
    }

    /// Whether the proxy ACKed the snapshot it is served now.
    pub(super) fn acked_current(&self) -> bool {
        let current = self.snapshots.borrow().version.clone();
        self.status
            .lock()
            .ok()
            .and_then(|s| s.last_acked_version.clone())
            .is_some_and(|v| v == current)
    }
}

/// A proxy's open ADS streams: a reconnect overlaps the old stream, so the proxy is offline only
/// when the last one ends, and from then on.
struct OpenStreams {
    open: AtomicUsize,
    last_closed: Mutex<Option<DateTime<Utc>>>,
    clock: SharedClock,
}

/// Held by a stream's subscription; counts the proxy's open streams.
struct StreamGuard(Arc<OpenStreams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut closed) = self.0.last_closed.lock() {
            *closed = Some(self.0.clock.now());
        }
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The known proxies, by key.
pub(super) struct ProxyCache {
    entries: Mutex<HashMap<ProxyKey, ProxyEntry>>,
    clock: SharedClock,
}

impl ProxyCache {
    pub(super) fn new(clock: SharedClock) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// Serves `built` to a proxy opening a stream, and subscribes the stream to its snapshots.
    /// `None` if the cache is poisoned.
    pub(super) fn admit(
        &self,
        key: ProxyKey,
        proxy_id: &str,
        built: Arc<ProxyBuild>,
    ) -> Option<ProxySubscription> {
        let mut entries = self.entries.lock().ok()?;
        let entry = entries.entry(key).or_insert_with(|| ProxyEntry {
            snapshots: watch::channel(built.snapshot.clone()).0,
            status: SharedStatus::default(),
            last: None,
            streams: Arc::new(OpenStreams {
                open: AtomicUsize::new(0),
                last_closed: Mutex::new(None),
                clock: self.clock.clone(),
            }),
        });
        entry.streams.open.fetch_add(1, Ordering::SeqCst);
        let guard = StreamGuard(entry.streams.clone());
        entry.snapshots.send_replace(built.snapshot.clone());
        entry.last = Some(built);
        Some(ProxySubscription {
            proxy_id: proxy_id.to_string(),
            snapshots: entry.snapshots.subscribe(),
            status: entry.status.clone(),
            connection: Some(Box::new(guard)),
        })
    }

    /// The proxy's latest build.
    pub(super) fn last_build(&self, key: &ProxyKey) -> Option<Arc<ProxyBuild>> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).and_then(|e| e.last.clone())
    }

    /// Every known proxy.
    pub(super) fn keys(&self) -> Vec<ProxyKey> {
        self.entries
            .lock()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs `read` over the known proxies (under the cache's lock: keep it short).
    pub(super) fn read<R>(&self, read: impl FnOnce(&HashMap<ProxyKey, ProxyEntry>) -> R) -> R
    where
        R: Default,
    {
        self.entries.lock().map(|e| read(&e)).unwrap_or_default()
    }

    pub(super) fn forget(&self, key: &ProxyKey) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Publishes a build's snapshot if it changed; a deleted proxy's entry is dropped (which
    /// ends its stream); a failed build leaves the last config in place.
    pub(super) fn publish(&self, key: &ProxyKey, built: Result<Arc<ProxyBuild>, BuildError>) {
        match built {
            Ok(built) => {
                let Ok(mut entries) = self.entries.lock() else {
                    return;
                };
                if let Some(entry) = entries.get_mut(key) {
                    let changed = entry.snapshots.borrow().version != built.snapshot.version;
                    if changed {
                        entry.snapshots.send_replace(built.snapshot.clone());
                        tracing::debug!(proxy = %key, version = %built.snapshot.version, "new snapshot");
                    }
                    entry.last = Some(built);
                }
            }
            Err(BuildError::MissingDataplane(_) | BuildError::MissingZoneProxy { .. }) => {
                // Deleted: drop the entry, which ends its stream.
                self.forget(key);
            }
            Err(e) => {
                tracing::error!(proxy = %key, error = %e, "cannot build proxy config; it keeps its last config")
            }
        }
    }
}
