//! An in-memory index of each mesh the zone serves: its Mesh, CA, dataplanes, the endpoints of
//! every service, and the policies the zone applies (kept by kind, see
//! [`atoll_core::policies::reach`]). Built from the store once per mesh and
//! kept current from store events, so building one proxy's config costs what that proxy needs
//! (its outbounds' endpoints), not a scan of the mesh.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::RwLock;

use atoll_clock::SharedClock;
use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::kinds::mesh::MeshDoc;
use atoll_core::labels::{PROTOCOL_TAG, SERVICE_TAG};
use atoll_core::matching::PolicyView;
use atoll_core::policies::{MeshPolicies, reach};
use atoll_core::{Kind, Resource, ResourceKey};
use atoll_store::{ChangeEvent, ListFilter, SharedStore, StoreError};
use atoll_xds::context::{Endpoint, Protocol};

use crate::ca::{Generation, MeshCa, mesh_ca};
use crate::error::BuildError;
use crate::external::resolve as resolve_external;
use crate::remote::{RemoteOffer, ZoneRoutes, remote_offer};
use atoll_xds::zone_context::ExternalService;

/// One dataplane as generation reads it.
#[derive(Debug, Clone)]
pub struct DataplaneEntry {
    pub labels: BTreeMap<String, String>,
    pub doc: DataplaneDoc,
    /// The `kuma.io/service` of each inbound.
    pub services: BTreeSet<String>,
}

/// One endpoint of a service, with the protocol its inbound declares.
#[derive(Debug, Clone)]
struct IndexedEndpoint {
    endpoint: Endpoint,
    protocol: Protocol,
}

/// The endpoints of one service, keyed by (dataplane name, inbound port).
#[derive(Debug, Clone, Default)]
pub struct ServiceEndpoints {
    endpoints: BTreeMap<(String, u16), IndexedEndpoint>,
}

impl ServiceEndpoints {
    /// Ready endpoints, sorted.
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut out: Vec<Endpoint> = self
            .endpoints
            .values()
            .map(|e| e.endpoint.clone())
            .collect();
        out.sort();
        out
    }

    /// The protocol the service's inbounds declare (the first one's; `tcp` when none).
    pub fn protocol(&self) -> Protocol {
        self.endpoints
            .values()
            .next()
            .map_or(Protocol::Tcp, |e| e.protocol)
    }
}

/// Everything known about one mesh.
#[derive(Debug, Clone)]
pub struct MeshState {
    pub name: String,
    pub doc: MeshDoc,
    pub ca: Option<MeshCa>,
    pub dataplanes: HashMap<String, Arc<DataplaneEntry>>,
    pub services: HashMap<String, ServiceEndpoints>,
    /// The policies of every kind that takes effect in Envoy, by kind then name.
    pub policies: MeshPolicies,
    /// Services other zones offer, from their relayed MeshServices (by resource name).
    pub offers: HashMap<String, RemoteOffer>,
    /// The same by service: protocol and healthy instances per zone.
    pub remote: BTreeMap<String, RemoteService>,
    /// The zone proxies known to this zone (shared by every mesh).
    pub routes: Arc<ZoneRoutes>,
    /// MeshExternalServices, resolved, by the name they are reached by.
    pub external_services: BTreeMap<String, ExternalService>,
    /// Stored MeshExternalService name -> the name it is reached by.
    pub external_names: HashMap<String, String>,
    /// Dataplanes whose endpoints are left out of every other proxy's config, with the reason
    /// (stored before validation refused such input, or synced from a zone that allowed it):
    /// one bad resource must not stop the config of every proxy that reaches its service.
    pub unusable: BTreeMap<String, String>,
    /// A CA switch in progress: the CAs (issuer and trust bundle) to move to, in order, each
    /// once every connected proxy of the mesh runs on the current one (`ca`), with when the
    /// current step began. See [`plan_ca_switch`].
    pub ca_steps: std::collections::VecDeque<MeshCa>,
    pub ca_step_since: Option<tokio::time::Instant>,
    /// ClusterLoadAssignments shared by the mesh's proxies (kept across state changes: an
    /// entry is reused only for the same endpoints).
    pub assignments: Arc<atoll_xds::generate::AssignmentCache>,
}

/// A service that runs in other zones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteService {
    pub protocol: Option<Protocol>,
    /// Healthy instances per zone.
    pub zones: BTreeMap<String, u32>,
}

pub fn protocol_of(tags: &BTreeMap<String, String>) -> Protocol {
    match tags.get(PROTOCOL_TAG).map(String::as_str) {
        Some("http") => Protocol::Http,
        Some("http2") => Protocol::Http2,
        Some("grpc") => Protocol::Grpc,
        _ => Protocol::Tcp,
    }
}

fn parse_dataplane(r: &Resource) -> Option<DataplaneEntry> {
    let doc: DataplaneDoc = serde_json::from_value(Value::Object(r.spec.clone())).ok()?;
    let services = doc
        .networking
        .iter()
        .flat_map(|n| n.inbound.iter())
        .filter_map(|i| i.tags.get(SERVICE_TAG).cloned())
        .collect();
    Some(DataplaneEntry {
        labels: r.labels.clone(),
        doc,
        services,
    })
}

impl MeshState {
    /// An empty mesh (for tests and benchmarks; the index loads real ones from the store).
    pub fn new(name: &str, doc: MeshDoc, ca: Option<MeshCa>) -> Self {
        Self {
            name: name.to_string(),
            doc,
            ca,
            dataplanes: HashMap::new(),
            services: HashMap::new(),
            policies: MeshPolicies::default(),
            offers: HashMap::new(),
            remote: BTreeMap::new(),
            routes: Arc::new(ZoneRoutes::default()),
            external_services: BTreeMap::new(),
            external_names: HashMap::new(),
            unusable: BTreeMap::new(),
            ca_steps: Default::default(),
            ca_step_since: None,
            assignments: Arc::default(),
        }
    }

    /// Adds, replaces (`Some`) or removes (`None`) a MeshExternalService.
    pub fn set_external(&mut self, resource_name: &str, external: Option<ExternalService>) {
        if let Some(old) = self.external_names.remove(resource_name) {
            self.external_services.remove(&old);
        }
        if let Some(external) = external {
            self.external_names
                .insert(resource_name.to_string(), external.name.clone());
            self.external_services
                .insert(external.name.clone(), external);
        }
    }

    /// Adds, replaces (`Some`) or removes (`None`) the remote offer a MeshService makes.
    pub fn set_offer(&mut self, resource_name: &str, offer: Option<RemoteOffer>) {
        let old = match offer {
            Some(offer) => self.offers.insert(resource_name.to_string(), offer),
            None => self.offers.remove(resource_name),
        };
        let mut services: BTreeSet<String> = old.into_iter().map(|o| o.service).collect();
        if let Some(new) = self.offers.get(resource_name) {
            services.insert(new.service.clone());
        }
        for service in services {
            let mut remote = RemoteService::default();
            for offer in self.offers.values().filter(|o| o.service == service) {
                *remote.zones.entry(offer.zone.clone()).or_default() += offer.instances;
                remote.protocol.get_or_insert(offer.protocol);
            }
            if remote.zones.is_empty() {
                self.remote.remove(&service);
            } else {
                self.remote.insert(service, remote);
            }
        }
    }

    /// Endpoints of `service` in other zones, as this mesh reaches them.
    pub fn remote_endpoints(&self, service: &str) -> Vec<Endpoint> {
        match self.remote.get(service) {
            Some(remote) => self
                .routes
                .remote_endpoints(&remote.zones, self.doc.zone_egress_enabled()),
            None => Vec::new(),
        }
    }

    /// Adds or replaces a dataplane and its endpoints.
    pub fn upsert_dataplane(&mut self, name: &str, entry: DataplaneEntry) {
        self.remove_dataplane(name);
        if let Some(net) = &entry.doc.networking {
            let host = net
                .advertised_address
                .clone()
                .or_else(|| net.address.clone())
                .unwrap_or_default();
            for inbound in &net.inbound {
                let Some(service) = inbound.tags.get(SERVICE_TAG) else {
                    continue;
                };
                let ready = inbound
                    .health
                    .as_ref()
                    .and_then(|h| h.ready)
                    .unwrap_or(true);
                let Some(port) = inbound.port.and_then(|p| u16::try_from(p).ok()) else {
                    continue;
                };
                if !ready {
                    continue;
                }
                let address = inbound.address.clone().unwrap_or_else(|| host.clone());
                if address.parse::<std::net::IpAddr>().is_err() {
                    let why = format!(
                        "its address {address:?} is not an IP: left out of the endpoints of {service}"
                    );
                    tracing::warn!(mesh = %self.name, dataplane = %name, "{why}");
                    self.unusable.insert(name.to_string(), why);
                    continue;
                }
                self.services
                    .entry(service.clone())
                    .or_default()
                    .endpoints
                    .insert(
                        (name.to_string(), port),
                        IndexedEndpoint {
                            endpoint: Endpoint {
                                address,
                                port,
                                weight: 1,
                                zone: None,
                            },
                            protocol: protocol_of(&inbound.tags),
                        },
                    );
            }
        }
        self.dataplanes.insert(name.to_string(), Arc::new(entry));
    }

    pub fn remove_dataplane(&mut self, name: &str) {
        self.unusable.remove(name);
        let Some(old) = self.dataplanes.remove(name) else {
            return;
        };
        for service in &old.services {
            if let Some(s) = self.services.get_mut(service) {
                s.endpoints.retain(|(dp, _), _| dp != name);
                if s.endpoints.is_empty() {
                    self.services.remove(service);
                }
            }
        }
    }
}

/// The index of every mesh loaded so far.
pub struct MeshIndex {
    store: SharedStore,
    local_zone: String,
    generation: Generation,
    clock: SharedClock,
    meshes: RwLock<HashMap<String, Arc<MeshState>>>,
    /// The zone proxies, read from the store on first use and re-read on their change events.
    /// `None` until then: a restarted zone CP must derive its routes to other zones from what
    /// it stored before, not wait for the next ZoneIngress/ZoneEgress change.
    routes: RwLock<Option<Arc<ZoneRoutes>>>,
    /// Serializes loads and applies (see [`MeshIndex::apply`]).
    apply_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for MeshIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshIndex").finish_non_exhaustive()
    }
}

impl MeshIndex {
    /// `local_zone` tells this zone's resources from those relayed from others; `generation`
    /// says who creates a missing builtin CA (this zone or global: the index only reads it);
    /// `clock` judges the validity of provided CAs.
    pub fn new(
        store: SharedStore,
        local_zone: &str,
        generation: Generation,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            local_zone: local_zone.to_string(),
            generation,
            clock,
            meshes: RwLock::new(HashMap::new()),
            routes: RwLock::new(None),
            apply_lock: tokio::sync::Mutex::new(()),
        }
    }

    pub fn local_zone(&self) -> &str {
        &self.local_zone
    }

    /// The zone proxies known to this zone (read from the store on first use).
    pub async fn routes(&self) -> Result<Arc<ZoneRoutes>, StoreError> {
        if let Some(routes) = self.routes.read().await.as_ref() {
            return Ok(routes.clone());
        }
        self.reload_routes().await
    }

    /// Re-reads every ZoneIngress and ZoneEgress, and hands the result to every loaded mesh.
    pub async fn reload_routes(&self) -> Result<Arc<ZoneRoutes>, StoreError> {
        let ingresses = self.store.list(&ListFilter::all(Kind::ZoneIngress)).await?;
        let egresses = self.store.list(&ListFilter::all(Kind::ZoneEgress)).await?;
        let routes = Arc::new(ZoneRoutes::from_resources(
            &self.local_zone,
            &ingresses.items,
            &egresses.items,
        ));
        *self.routes.write().await = Some(routes.clone());
        let mut meshes = self.meshes.write().await;
        for state in meshes.values_mut() {
            if state.routes != routes {
                Arc::make_mut(state).routes = routes.clone();
            }
        }
        Ok(routes)
    }

    /// Forgets every loaded mesh and the zone proxies, so that they are read again from the
    /// store when next used: for when change events were missed and the index may be stale.
    pub async fn forget_all(&self) {
        let _serial = self.apply_lock.lock().await;
        self.meshes.write().await.clear();
        *self.routes.write().await = None;
    }

    /// Why a dataplane's endpoints are left out of other proxies' config, if they are.
    pub async fn unusable(&self, mesh: &str, dataplane: &str) -> Option<String> {
        let meshes = self.meshes.read().await;
        meshes.get(mesh)?.unusable.get(dataplane).cloned()
    }

    /// How many resources of the loaded meshes are left out of proxy config.
    pub async fn unusable_count(&self) -> usize {
        let meshes = self.meshes.read().await;
        meshes.values().map(|m| m.unusable.len()).sum()
    }

    /// Meshes with a CA switch in progress, with when their current step began.
    pub async fn ca_switches(&self) -> Vec<(String, tokio::time::Instant)> {
        let meshes = self.meshes.read().await;
        meshes
            .values()
            .filter(|m| !m.ca_steps.is_empty())
            .filter_map(|m| Some((m.name.clone(), m.ca_step_since?)))
            .collect()
    }

    /// Moves a mesh's CA switch to its next step. Returns whether it moved.
    pub async fn advance_ca(&self, mesh: &str) -> bool {
        let _serial = self.apply_lock.lock().await;
        let mut meshes = self.meshes.write().await;
        let Some(current) = meshes.get_mut(mesh) else {
            return false;
        };
        if current.ca_steps.is_empty() {
            return false;
        }
        let state = Arc::make_mut(current);
        state.ca = state.ca_steps.pop_front();
        state.ca_step_since = (!state.ca_steps.is_empty()).then(tokio::time::Instant::now);
        tracing::info!(%mesh, steps_left = state.ca_steps.len(), "mesh CA switch: next step");
        true
    }

    /// Every mesh in the store, loaded (zone proxies serve them all).
    pub async fn all_meshes(&self) -> Result<Vec<Arc<MeshState>>, BuildError> {
        let meshes = self.store.list(&ListFilter::all(Kind::Mesh)).await?;
        let mut out = Vec::new();
        for m in &meshes.items {
            match self.mesh(&m.name).await {
                Ok(state) => out.push(state),
                Err(BuildError::MissingMesh(_)) => {}
                Err(e) => {
                    tracing::warn!(mesh = %m.name, error = %e, "zone proxies skip a mesh that cannot be loaded")
                }
            }
        }
        Ok(out)
    }

    /// The current state of `mesh`, loading it from the store on first use.
    pub async fn mesh(&self, mesh: &str) -> Result<Arc<MeshState>, BuildError> {
        if let Some(state) = self.meshes.read().await.get(mesh) {
            return Ok(state.clone());
        }
        let _serial = self.apply_lock.lock().await;
        // Loaded meanwhile by another caller?
        if let Some(state) = self.meshes.read().await.get(mesh) {
            return Ok(state.clone());
        }
        let state = Arc::new(self.load(mesh).await?);
        self.meshes
            .write()
            .await
            .insert(mesh.to_string(), state.clone());
        Ok(state)
    }

    async fn load(&self, mesh: &str) -> Result<MeshState, BuildError> {
        let mesh_res = self
            .store
            .get(&ResourceKey::global(Kind::Mesh, mesh))
            .await?
            .ok_or_else(|| BuildError::MissingMesh(mesh.to_string()))?;
        let doc: MeshDoc =
            serde_json::from_value(Value::Object(mesh_res.spec.clone())).map_err(|e| {
                BuildError::Unreadable {
                    what: "Mesh",
                    name: mesh.to_string(),
                    reason: e.to_string(),
                }
            })?;
        let ca = mesh_ca(
            self.store.as_ref(),
            mesh,
            &doc,
            self.clock.now(),
            self.generation,
        )
        .await?;
        let mut state = MeshState::new(mesh, doc, ca);
        state.routes = self.routes().await?;
        let services = self
            .store
            .list(&ListFilter::in_mesh(Kind::MeshService, mesh))
            .await?;
        for r in &services.items {
            if let Some(offer) = remote_offer(r, &self.local_zone) {
                state.set_offer(&r.name, Some(offer));
            }
        }
        let externals = self
            .store
            .list(&ListFilter::in_mesh(Kind::MeshExternalService, mesh))
            .await?;
        for r in &externals.items {
            state.set_external(&r.name, self.external(r).await);
        }
        let dataplanes = self
            .store
            .list(&ListFilter::in_mesh(Kind::Dataplane, mesh))
            .await?;
        for r in &dataplanes.items {
            if let Some(entry) = parse_dataplane(r) {
                state.upsert_dataplane(&r.name, entry);
            }
        }
        for kind in Kind::ALL.iter().copied().filter(|k| reach(*k).applies()) {
            let page = self.store.list(&ListFilter::in_mesh(kind, mesh)).await?;
            for r in &page.items {
                if let Ok(view) = PolicyView::from_resource(r) {
                    state.policies.upsert(view);
                }
            }
        }
        Ok(state)
    }

    /// A MeshExternalService resolved, or `None` (logged) when it cannot be served.
    async fn external(&self, r: &Resource) -> Option<ExternalService> {
        match resolve_external(self.store.as_ref(), r).await {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!(error = %e, "MeshExternalService left out of the zone egress");
                None
            }
        }
    }

    /// The stored view of a policy of a loaded mesh (for the kinds the index keeps).
    pub async fn policy_view(&self, key: &ResourceKey) -> Option<PolicyView> {
        let meshes = self.meshes.read().await;
        let state = meshes.get(&key.mesh)?;
        state.policies.get(key.kind, &key.name).cloned()
    }

    /// The service a MeshService of a loaded mesh offers from another zone, if any.
    pub async fn offered_service(&self, key: &ResourceKey) -> Option<String> {
        let meshes = self.meshes.read().await;
        let state = meshes.get(&key.mesh)?;
        state.offers.get(&key.name).map(|o| o.service.clone())
    }

    /// Re-reads one dataplane into its (loaded) mesh: a proxy connecting right after registering
    /// must not wait for the change event to reach the index.
    pub async fn refresh_dataplane(&self, mesh: &str, name: &str) -> Result<(), StoreError> {
        let event = ChangeEvent {
            op: atoll_store::ChangeOp::Updated,
            key: ResourceKey::new(Kind::Dataplane, mesh, name),
            version: 0,
        };
        self.apply(&event).await
    }

    /// Applies a store change to a loaded mesh (meshes not loaded yet are read when first used).
    /// Applies are serialized (a connecting proxy's refresh and the event loop must not undo
    /// each other's changes); the store is read first, then the mesh is changed in place under
    /// a short write lock (copied only when a build still holds the previous state).
    pub async fn apply(&self, event: &ChangeEvent) -> Result<(), StoreError> {
        let _serial = self.apply_lock.lock().await;
        let key = &event.key;
        let mesh = if key.kind == Kind::Mesh {
            &key.name
        } else {
            &key.mesh
        };
        if !self.meshes.read().await.contains_key(mesh) {
            return Ok(());
        }
        let change = match key.kind {
            Kind::Mesh | Kind::Secret => {
                // The mesh itself or its CA material changed: reload (rare, mesh-wide anyway).
                match self.load(mesh).await {
                    Ok(state) => Change::Reload(Box::new(state)),
                    Err(BuildError::MissingMesh(_)) => {
                        self.meshes.write().await.remove(mesh);
                        return Ok(());
                    }
                    Err(BuildError::Store(e)) => return Err(e),
                    Err(e @ BuildError::Ca(crate::ca::CaError::NotYet { .. })) => {
                        // Its Secrets' own events reload it once they are stored.
                        tracing::info!(%mesh, reason = %e, "the mesh's proxies keep their config until its CA is stored");
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::error!(%mesh, error = %e, "cannot reload the mesh; keeping the previous state");
                        return Ok(());
                    }
                }
            }
            Kind::Dataplane => Change::Dataplane(
                self.store
                    .get(key)
                    .await?
                    .as_ref()
                    .and_then(parse_dataplane),
            ),
            Kind::MeshExternalService => Change::External(match self.store.get(key).await? {
                Some(r) => self.external(&r).await,
                None => None,
            }),
            Kind::MeshService => Change::Offer(match self.store.get(key).await? {
                Some(r) => remote_offer(&r, &self.local_zone),
                None => None,
            }),
            kind if reach(kind).applies() => Change::Policy(match self.store.get(key).await? {
                Some(r) => PolicyView::from_resource(&r).ok(),
                None => None,
            }),
            _ => return Ok(()),
        };
        let mut meshes = self.meshes.write().await;
        let Some(current) = meshes.get_mut(mesh) else {
            return Ok(());
        };
        match change {
            Change::Reload(mut state) => {
                state.assignments = current.assignments.clone();
                plan_ca_switch(current, &mut state);
                *current = Arc::new(*state);
            }
            Change::Dataplane(entry) => {
                let state = Arc::make_mut(current);
                match entry {
                    Some(entry) => state.upsert_dataplane(&key.name, entry),
                    None => state.remove_dataplane(&key.name),
                }
            }
            Change::External(external) => Arc::make_mut(current).set_external(&key.name, external),
            Change::Offer(offer) => {
                if current.offers.get(&key.name) != offer.as_ref() {
                    Arc::make_mut(current).set_offer(&key.name, offer);
                }
            }
            Change::Policy(view) => {
                let policies = &mut Arc::make_mut(current).policies;
                match view {
                    Some(view) => policies.upsert(view),
                    None => policies.remove(key.kind, &key.name),
                }
            }
        }
        Ok(())
    }
}

/// Kuma's CA rotation without a failed request: when the issuing CA changes, proxies first
/// trust both roots (still on certificates of the old CA), then move to certificates of the new
/// one (still trusting both), then drop the old root (unless the old backend is still listed in
/// `mtls.backends`, whose roots stay trusted). Each step waits until every connected proxy of
/// the mesh has ACKed the previous one (the directory drives it: [`MeshIndex::advance_ca`]).
fn plan_ca_switch(old: &MeshState, new: &mut MeshState) {
    // What the proxies run on now: the last step served, not the end of a previous plan.
    let (Some(serving), Some(target)) = (old.ca.clone(), new.ca.clone()) else {
        return;
    };
    // A reload in the middle of a switch to the same target (the new CA's Secrets arriving,
    // say) keeps the switch where it is.
    if let Some(end) = old.ca_steps.back()
        && end.bundle.cert_pem == target.bundle.cert_pem
        && end.trust_pem == target.trust_pem
    {
        new.ca = old.ca.clone();
        new.ca_steps = old.ca_steps.clone();
        new.ca_step_since = old.ca_step_since;
        return;
    }
    if serving.bundle.cert_pem == target.bundle.cert_pem {
        // Same issuer: certificates stay valid everywhere, the trust bundle may change at once.
        return;
    }
    let mut union = serving.trust_pem.clone();
    for root in pem_certificates(&target.trust_pem) {
        crate::ca::add_root(&mut union, &root);
    }
    let trust_both = MeshCa {
        trust_pem: union.clone(),
        ..serving
    };
    let new_issuer = MeshCa {
        trust_pem: union.clone(),
        ..target.clone()
    };
    new.ca = Some(trust_both);
    new.ca_steps = [new_issuer].into_iter().collect();
    if target.trust_pem != union {
        new.ca_steps.push_back(target);
    }
    new.ca_step_since = Some(tokio::time::Instant::now());
    tracing::info!(mesh = %new.name, steps = new.ca_steps.len() + 1, "switching the mesh CA: proxies trust both roots first");
}

/// The certificates of a PEM bundle, each as its own PEM block.
fn pem_certificates(pem: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    pem.split_inclusive(END)
        .filter(|block| block.contains(END))
        .map(|block| format!("{}\n", block.trim()))
        .collect()
}

/// What a store change does to a loaded mesh, read from the store before the mesh is locked.
enum Change {
    Reload(Box<MeshState>),
    Dataplane(Option<DataplaneEntry>),
    External(Option<ExternalService>),
    Offer(Option<RemoteOffer>),
    Policy(Option<PolicyView>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_store::MemoryStore;
    use serde_json::json;

    fn relayed(kind: Kind, mesh: &str, name: &str, zone: &str, spec: Value) -> Resource {
        let mut r = Resource::new(kind, mesh, name);
        r.labels.insert("kuma.io/origin".into(), "zone".into());
        r.labels.insert("kuma.io/zone".into(), zone.into());
        if let Value::Object(m) = spec {
            r.spec = m;
        }
        r
    }

    /// A fresh index over a store that already holds another zone's ingress and service (what
    /// a restarted zone CP finds) reaches that service: its routes come from the store, not
    /// only from change events.
    #[tokio::test]
    async fn a_new_index_reads_the_zone_proxies_already_stored() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create(Resource::new(Kind::Mesh, "", "default"))
            .await
            .expect("mesh");
        store
            .create(relayed(
                Kind::ZoneIngress,
                "",
                "ingress-2",
                "zone-2",
                json!({"zone": "zone-2", "networking": {"address": "127.0.0.2", "port": 10001}}),
            ))
            .await
            .expect("ingress");
        store
            .create(relayed(
                Kind::MeshService,
                "default",
                "backend-zone-2",
                "zone-2",
                json!({"spec": {"selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
                                "ports": [{"port": 80}]},
                       "status": {"dataplaneProxies": {"healthy": 2}}}),
            ))
            .await
            .expect("service");
        let index = MeshIndex::new(store, "zone-1", Generation::Allowed, atoll_clock::system());
        let state = index.mesh("default").await.expect("mesh loads");
        assert_eq!(
            state.remote_endpoints("backend"),
            vec![Endpoint {
                address: "127.0.0.2".into(),
                port: 10001,
                weight: 2,
                zone: Some("zone-2".into()),
            }]
        );
        // Forgetting everything (missed events) and reading again gives the same.
        index.forget_all().await;
        let state = index.mesh("default").await.expect("mesh reloads");
        assert_eq!(state.remote_endpoints("backend").len(), 1);
    }

    /// A Dataplane whose address is not an IP (stored before validation refused it, or synced)
    /// is left out of its service's endpoints with the reason kept; the good one stays.
    #[tokio::test]
    async fn a_dataplane_with_an_unusable_address_is_contained() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create(Resource::new(Kind::Mesh, "", "default"))
            .await
            .expect("mesh");
        for (name, address) in [("good", "10.0.0.1"), ("poison", "not-an-ip")] {
            let mut dp = Resource::new(Kind::Dataplane, "default", name);
            if let Value::Object(m) = json!({"networking": {"address": address, "inbound": [
                {"port": 8080, "tags": {"kuma.io/service": "backend"}}]}})
            {
                dp.spec = m;
            }
            store.create(dp).await.expect("stored without validation");
        }
        let index = MeshIndex::new(store, "zone-1", Generation::Allowed, atoll_clock::system());
        let state = index.mesh("default").await.expect("mesh loads");
        let endpoints = state.services.get("backend").expect("backend").endpoints();
        assert_eq!(endpoints.len(), 1);
        assert_eq!(endpoints[0].address, "10.0.0.1");
        let why = index.unusable("default", "poison").await.expect("reported");
        assert!(why.contains("not an IP"), "{why}");
        assert_eq!(index.unusable("default", "good").await, None);
        assert_eq!(index.unusable_count().await, 1);
    }

    /// Building reads the store and never writes it: a standalone mesh whose builtin CA is not
    /// stored yet fails to load with a reason (nothing is created), and loads once it is.
    #[tokio::test]
    async fn loading_a_mesh_never_creates_its_ca() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create(mesh_with(&["ca-1"], "ca-1"))
            .await
            .expect("mesh");
        let index = MeshIndex::new(
            store.clone(),
            "zone-1",
            Generation::Allowed,
            atoll_clock::system(),
        );
        let err = index.mesh("default").await.expect_err("no CA yet");
        assert!(
            matches!(err, BuildError::Ca(crate::ca::CaError::NotYet { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("this zone creates it"), "{err}");
        let secrets = store
            .list(&ListFilter::in_mesh(Kind::Secret, "default"))
            .await
            .expect("list");
        assert!(secrets.items.is_empty(), "a load wrote {:?}", secrets.items);

        crate::ca::provision_builtin_cas(store.as_ref(), "default", chrono::Utc::now())
            .await
            .expect("CA created");
        let state = index
            .mesh("default")
            .await
            .expect("loads once the CA is stored");
        assert!(state.ca.is_some());
    }

    fn mesh_with(backends: &[&str], enabled: &str) -> Resource {
        let mut r = Resource::new(Kind::Mesh, "", "default");
        let backends: Vec<Value> = backends
            .iter()
            .map(|b| json!({"name": b, "type": "builtin"}))
            .collect();
        if let Value::Object(m) = json!({"mtls": {"enabledBackend": enabled, "backends": backends}})
        {
            r.spec = m;
        }
        r
    }

    async fn replace_mesh(store: &SharedStore, mesh: Resource) {
        let current = store
            .get(&ResourceKey::global(Kind::Mesh, "default"))
            .await
            .expect("get")
            .expect("mesh");
        store.update(mesh, current.version).await.expect("update");
    }

    fn roots(ca: &MeshCa) -> usize {
        ca.trust_pem.matches("BEGIN CERTIFICATE").count()
    }

    /// Switching `enabledBackend` (adding the new backend and dropping the old in one edit):
    /// first both roots are trusted with the old issuer, then the new issuer with both roots,
    /// then the new root alone; never a certificate that a peer does not trust yet.
    #[tokio::test]
    async fn a_ca_switch_trusts_both_roots_before_moving_certificates() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store
            .create(mesh_with(&["ca-1"], "ca-1"))
            .await
            .expect("mesh");
        // The index only reads CAs: the event loop creates them when it sees the Mesh.
        crate::ca::provision_builtin_cas(store.as_ref(), "default", chrono::Utc::now())
            .await
            .expect("CA created");
        let index = MeshIndex::new(
            store.clone(),
            "zone-1",
            Generation::Allowed,
            atoll_clock::system(),
        );
        let before = index.mesh("default").await.expect("loads");
        let ca_1 = before.ca.clone().expect("mTLS");
        assert_eq!(roots(&ca_1), 1);

        replace_mesh(&store, mesh_with(&["ca-2"], "ca-2")).await;
        crate::ca::provision_builtin_cas(store.as_ref(), "default", chrono::Utc::now())
            .await
            .expect("CA created");
        let event = ChangeEvent {
            op: atoll_store::ChangeOp::Updated,
            key: ResourceKey::global(Kind::Mesh, "default"),
            version: 0,
        };
        index.apply(&event).await.expect("apply");
        let step_1 = index.mesh("default").await.expect("mesh");
        let serving = step_1.ca.clone().expect("ca");
        assert_eq!(
            serving.bundle.cert_pem, ca_1.bundle.cert_pem,
            "still the old issuer"
        );
        assert_eq!(roots(&serving), 2, "but both roots trusted");
        assert_eq!(index.ca_switches().await.len(), 1);
        // A reload meanwhile (the new CA's Secrets arriving) keeps the switch where it is.
        index.apply(&event).await.expect("apply");
        let again = index.mesh("default").await.expect("mesh");
        assert_eq!(
            again.ca.as_ref().map(|c| c.trust_pem.clone()),
            Some(serving.trust_pem.clone())
        );
        assert_eq!(again.ca_steps.len(), 2);

        assert!(index.advance_ca("default").await);
        let step_2 = index
            .mesh("default")
            .await
            .expect("mesh")
            .ca
            .clone()
            .expect("ca");
        assert_ne!(
            step_2.bundle.cert_pem, ca_1.bundle.cert_pem,
            "the new issuer"
        );
        assert_eq!(roots(&step_2), 2, "both roots still trusted");

        assert!(index.advance_ca("default").await);
        let step_3 = index
            .mesh("default")
            .await
            .expect("mesh")
            .ca
            .clone()
            .expect("ca");
        assert_eq!(step_3.bundle.cert_pem, step_2.bundle.cert_pem);
        assert_eq!(roots(&step_3), 1, "the old root dropped");
        assert!(!step_3.trust_pem.contains(ca_1.bundle.cert_pem.trim()));
        assert!(!index.advance_ca("default").await);
        assert!(index.ca_switches().await.is_empty());
    }
}
