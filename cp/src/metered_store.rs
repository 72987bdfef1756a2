//! A store wrapper that records every operation's latency in the control plane's metrics.

use std::future::Future;
use std::time::Instant;

use async_trait::async_trait;
use atoll_core::{Resource, ResourceKey};
use atoll_store::{ChangeEvent, ListFilter, ListPage, Result, SharedStore, Store};
use tokio::sync::broadcast;

use crate::metrics::Metrics;

pub struct MeteredStore {
    inner: SharedStore,
    metrics: Metrics,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MeteredStore({})", self.inner.backend_name())
    }
}

impl MeteredStore {
    pub fn new(inner: SharedStore, metrics: Metrics) -> Self {
        Self { inner, metrics }
    }

    async fn timed<T>(&self, op: &'static str, f: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = f.await;
        self.metrics
            .observe_store(op, self.inner.backend_name(), started.elapsed());
        out
    }
}

#[async_trait]
impl Store for MeteredStore {
    fn backend_name(&self) -> &'static str {
        self.inner.backend_name()
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>> {
        self.timed("get", self.inner.get(key)).await
    }

    async fn list(&self, filter: &ListFilter) -> Result<ListPage> {
        self.timed("list", self.inner.list(filter)).await
    }

    async fn create(&self, resource: Resource) -> Result<Resource> {
        self.timed("create", self.inner.create(resource)).await
    }

    async fn update(&self, resource: Resource, expected_version: i64) -> Result<Resource> {
        self.timed("update", self.inner.update(resource, expected_version))
            .await
    }

    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()> {
        self.timed("delete", self.inner.delete(key, expected_version))
            .await
    }

    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64> {
        self.timed(
            "delete_mesh_contents",
            self.inner.delete_mesh_contents(mesh),
        )
        .await
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.inner.watch()
    }

    async fn ping(&self) -> Result<()> {
        self.timed("ping", self.inner.ping()).await
    }
}
