//! Builds the snapshots of this zone's zone proxies from the index: a zone ingress forwards, by
//! SNI and without decrypting, to every local service of every mesh; a zone egress passes
//! cross-zone traffic of meshes with `routing.zoneEgress` on to the other zones' ingresses, and
//! terminates mesh mTLS for MeshExternalService traffic before originating the outside
//! connection.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use atoll_core::kinds::zone_egress::ZoneEgressDoc;
use atoll_core::kinds::zone_ingress::ZoneIngressDoc;
use atoll_core::{Kind, ResourceKey};
use atoll_store::Store;
use atoll_xds::zone_context::{
    DEFAULT_EGRESS_PORT, DEFAULT_INGRESS_PORT, EgressMesh, EgressRemoteService, IngressService,
    ZoneEgressContext, ZoneIngressContext,
};

use crate::error::BuildError;
use crate::index::MeshIndex;
use crate::snapshot::{ProxyBuild, ProxyCert, certificate, snapshot_of};

/// The address a zone proxy listens on when its resource names none.
const ANY_ADDRESS: &str = "0.0.0.0";

fn unreadable(kind: Kind, name: &str, reason: String) -> BuildError {
    BuildError::Unreadable {
        what: kind.name(),
        name: name.to_string(),
        reason,
    }
}

async fn read_doc<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    kind: Kind,
    name: &str,
) -> Result<T, BuildError> {
    let resource = store
        .get(&ResourceKey::global(kind, name))
        .await?
        .ok_or_else(|| BuildError::MissingZoneProxy {
            kind,
            name: name.to_string(),
        })?;
    serde_json::from_value(Value::Object(resource.spec))
        .map_err(|e| unreadable(kind, name, e.to_string()))
}

fn port_or(port: Option<i64>, default: u16) -> u16 {
    port.and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(default)
}

/// The zone ingress `name`: one SNI route per (mesh, service) with local endpoints. Meshes
/// without mTLS are left out (without mTLS there is no SNI to route on).
pub async fn build_ingress(
    index: &MeshIndex,
    store: &dyn Store,
    name: &str,
) -> Result<ProxyBuild, BuildError> {
    let doc: ZoneIngressDoc = read_doc(store, Kind::ZoneIngress, name).await?;
    let net = doc.networking.unwrap_or_default();
    let mut services = Vec::new();
    let mut offered = BTreeSet::new();
    for state in index.all_meshes().await? {
        if state.ca.is_none() {
            continue;
        }
        let mut names: Vec<&String> = state.services.keys().collect();
        names.sort();
        for service in names {
            let endpoints = state.services[service].endpoints();
            if endpoints.is_empty() {
                continue;
            }
            offered.insert(format!("{}/{service}", state.name));
            services.push(IngressService {
                mesh: state.name.clone(),
                service: service.clone(),
                endpoints,
            });
        }
    }
    let ctx = ZoneIngressContext {
        name: name.to_string(),
        zone: index.local_zone().to_string(),
        address: net.address.unwrap_or_else(|| ANY_ADDRESS.into()),
        port: port_or(net.port, DEFAULT_INGRESS_PORT),
        services,
    };
    let resources = atoll_zone_ingress::generate_ingress(&ctx)?;
    Ok(ProxyBuild {
        snapshot: Arc::new(snapshot_of(&resources)),
        resources: Arc::new(resources),
        rules_json: json!({"zoneIngress": {"zone": ctx.zone, "services": offered}}),
        outbound_services: BTreeSet::new(),
        own_services: BTreeSet::new(),
        cert: None,
        mesh_certs: BTreeMap::new(),
    })
}

/// The zone egress `name`: for each mesh with `routing.zoneEgress`, one passthrough route per
/// service that runs in other zones, to those zones' ingresses.
pub async fn build_egress(
    index: &MeshIndex,
    store: &dyn Store,
    name: &str,
    previous_certs: &BTreeMap<String, ProxyCert>,
    now: DateTime<Utc>,
) -> Result<ProxyBuild, BuildError> {
    let doc: ZoneEgressDoc = read_doc(store, Kind::ZoneEgress, name).await?;
    let net = doc.networking.unwrap_or_default();
    let routes = index.routes().await?;
    let mut meshes = Vec::new();
    let mut secrets = Vec::new();
    let mut mesh_certs = BTreeMap::new();
    for state in index.all_meshes().await? {
        let Some(ca) = &state.ca else {
            continue;
        };
        let mut remote_services = Vec::new();
        let remote = if state.doc.zone_egress_enabled() {
            state.remote.iter().collect()
        } else {
            Vec::new()
        };
        for (service, remote) in remote {
            let zones = routes.remote_ingresses(&remote.zones);
            if !zones.is_empty() {
                remote_services.push(EgressRemoteService {
                    service: service.clone(),
                    zones,
                });
            }
        }
        // MeshExternalService traffic always leaves through the egress, which terminates mesh
        // mTLS with its own identity in the mesh.
        let external_services: Vec<_> = state.external_services.values().cloned().collect();
        if !external_services.is_empty() {
            let identity: BTreeSet<String> =
                [atoll_xds::zone_proxy::EGRESS_SERVICE.to_string()].into();
            let cert = certificate(
                ca,
                &state.name,
                &identity,
                &BTreeMap::new(),
                previous_certs.get(&state.name),
                now,
            )?;
            secrets.extend(atoll_zone_egress::egress_secrets(
                &state.name,
                &cert.issued.cert_chain_pem,
                &cert.issued.key_pem,
                &ca.trust_pem,
            ));
            mesh_certs.insert(state.name.clone(), cert);
        }
        if !remote_services.is_empty() || !external_services.is_empty() {
            meshes.push(EgressMesh {
                mesh: state.name.clone(),
                remote_services,
                external_services,
            });
        }
    }
    let ctx = ZoneEgressContext {
        name: name.to_string(),
        zone: index.local_zone().to_string(),
        address: net.address.unwrap_or_else(|| ANY_ADDRESS.into()),
        port: port_or(net.port, DEFAULT_EGRESS_PORT),
        meshes,
    };
    let mut resources = atoll_zone_egress::generate_egress(&ctx)?;
    resources.extend(secrets);
    let summary: Vec<Value> = ctx
        .meshes
        .iter()
        .map(|m| {
            json!({
                "mesh": m.mesh,
                "remoteServices": m.remote_services.iter().map(|r| &r.service).collect::<Vec<_>>(),
                "externalServices": m.external_services.iter().map(|e| &e.name).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(ProxyBuild {
        snapshot: Arc::new(snapshot_of(&resources)),
        resources: Arc::new(resources),
        rules_json: json!({"zoneEgress": {"zone": ctx.zone, "meshes": summary}}),
        outbound_services: BTreeSet::new(),
        own_services: BTreeSet::new(),
        cert: None,
        mesh_certs,
    })
}
