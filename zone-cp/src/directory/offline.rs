//! Removing proxies that went away: a Dataplane or zone proxy whose last stream ended longer
//! than the grace period ago is deleted from the store (Kuma's dataplane cleanup), and
//! forgotten here.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{ProxyKey, ZoneDirectory, stopped};

impl ZoneDirectory {
    /// Removes dataplanes and zone proxies whose proxy has been disconnected for longer than
    /// `grace`, until `shutdown`.
    pub async fn collect_offline(
        self: Arc<Self>,
        grace: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let period = (grace / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
        loop {
            tokio::select! {
                () = stopped(&mut shutdown) => return,
                () = tokio::time::sleep(period) => {}
            }
            for proxy in self.offline_longer_than(grace) {
                let key = proxy.resource_key();
                match self.store.delete(&key, None).await {
                    Ok(()) | Err(atoll_store::StoreError::NotFound(_)) => {
                        tracing::info!(resource = %key, ?grace, "removed a proxy that stayed offline past the grace period");
                        self.cache.forget(&proxy);
                    }
                    Err(e) => {
                        tracing::warn!(resource = %key, error = %e, "cannot remove an offline proxy")
                    }
                }
            }
        }
    }

    /// The known proxies whose last stream ended more than `grace` ago.
    fn offline_longer_than(&self, grace: Duration) -> Vec<ProxyKey> {
        let now = self.clock.now();
        self.cache.read(|entries| {
            entries
                .iter()
                .filter(|(_, e)| {
                    e.offline_since()
                        .is_some_and(|since| (now - since).to_std().is_ok_and(|gone| gone > grace))
                })
                .map(|(k, _)| k.clone())
                .collect()
        })
    }
}
