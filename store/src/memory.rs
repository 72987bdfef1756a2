//! The in-memory store: a sorted map under a lock. For tests and throwaway runs; nothing survives
//! a restart.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use atoll_core::{Resource, ResourceKey};
use tokio::sync::broadcast;

use crate::{
    ChangeEvent, ChangeOp, EVENT_BUFFER, ListFilter, ListPage, Result, Store, StoreError, now,
};

/// Resources in a `BTreeMap` ordered by (kind, mesh, name). Change events are sent while the
/// lock is held, so watchers see them in the order the writes happened.
pub struct MemoryStore {
    resources: Mutex<BTreeMap<ResourceKey, Resource>>,
    events: broadcast::Sender<ChangeEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            resources: Mutex::new(BTreeMap::new()),
            events: broadcast::channel(EVENT_BUFFER).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<ResourceKey, Resource>> {
        // No code panics while holding the lock, but a poisoned map is still consistent.
        self.resources.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, op: ChangeOp, key: ResourceKey, version: i64) {
        // No receivers is fine.
        let _ = self.events.send(ChangeEvent { op, key, version });
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn backend_name(&self) -> &'static str {
        "memory"
    }

    async fn get(&self, key: &ResourceKey) -> Result<Option<Resource>> {
        Ok(self.lock().get(key).cloned())
    }

    async fn list(&self, filter: &ListFilter) -> Result<ListPage> {
        let map = self.lock();
        let start = ResourceKey::new(
            filter.kind,
            filter.mesh.clone().unwrap_or_default(),
            filter.name_prefix.clone().unwrap_or_default(),
        );
        let matching = map
            .range(start..)
            .take_while(|(k, _)| {
                k.kind == filter.kind && filter.mesh.as_ref().is_none_or(|m| *m == k.mesh)
            })
            .filter(|(k, _)| {
                filter
                    .name_prefix
                    .as_ref()
                    .is_none_or(|p| k.name.starts_with(p.as_str()))
            })
            .map(|(_, r)| r);
        let mut total = 0u64;
        let mut items = Vec::new();
        let limit = filter.limit.unwrap_or(u64::MAX);
        for r in matching {
            if total >= filter.offset && (items.len() as u64) < limit {
                items.push(r.clone());
            }
            total += 1;
        }
        Ok(ListPage { items, total })
    }

    async fn create(&self, mut resource: Resource) -> Result<Resource> {
        let mut map = self.lock();
        let key = resource.key();
        if map.contains_key(&key) {
            return Err(StoreError::AlreadyExists(key));
        }
        let t = now();
        resource.version = 1;
        resource.creation_time = Some(t);
        resource.modification_time = Some(t);
        map.insert(key.clone(), resource.clone());
        self.emit(ChangeOp::Created, key, 1);
        Ok(resource)
    }

    async fn update(&self, mut resource: Resource, expected_version: i64) -> Result<Resource> {
        let mut map = self.lock();
        let key = resource.key();
        let Some(stored) = map.get_mut(&key) else {
            return Err(StoreError::NotFound(key));
        };
        if stored.version != expected_version {
            return Err(StoreError::Conflict {
                key,
                expected: expected_version,
                found: stored.version,
            });
        }
        resource.version = expected_version + 1;
        resource.creation_time = stored.creation_time;
        resource.modification_time = Some(now());
        *stored = resource.clone();
        self.emit(ChangeOp::Updated, key, resource.version);
        Ok(resource)
    }

    async fn delete(&self, key: &ResourceKey, expected_version: Option<i64>) -> Result<()> {
        let mut map = self.lock();
        let Some(stored) = map.get(key) else {
            return Err(StoreError::NotFound(key.clone()));
        };
        let version = stored.version;
        if let Some(expected) = expected_version
            && expected != version
        {
            return Err(StoreError::Conflict {
                key: key.clone(),
                expected,
                found: version,
            });
        }
        map.remove(key);
        self.emit(ChangeOp::Deleted, key.clone(), version);
        Ok(())
    }

    async fn delete_mesh_contents(&self, mesh: &str) -> Result<u64> {
        if mesh.is_empty() {
            // Global resources belong to no mesh.
            return Ok(0);
        }
        let mut map = self.lock();
        let doomed: Vec<ResourceKey> = map.keys().filter(|k| k.mesh == mesh).cloned().collect();
        for key in &doomed {
            if let Some(r) = map.remove(key) {
                self.emit(ChangeOp::Deleted, key.clone(), r.version);
            }
        }
        Ok(doomed.len() as u64)
    }

    fn watch(&self) -> broadcast::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
