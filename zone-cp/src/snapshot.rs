//! Builds one proxy's snapshot: reads what the proxy needs from the mesh index (its Dataplane,
//! its mesh, the endpoints of the services it reaches, the policies that select it), resolves
//! it into a `ProxyContext`, generates the Envoy resources, and adds its certificate. Policies
//! are resolved by their packages in `atoll_core::policies` into typed confs; nothing here
//! reads a policy's fields.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use atoll_core::matching::{Destination, ProxyView};
use atoll_core::policies::OutboundConfs;
use atoll_core::policies::mesh_traffic_permission::Action;
use atoll_core::policies::mesh_traffic_permission::conf::inbound_permission_rules;
use atoll_core::{Kind, ResourceKey};
use atoll_identity::{IssuedCert, WorkloadCertRequest};
use atoll_xds::context::{
    InboundContext, InboundPermissions, MeshMtls, OutboundContext, PermissionAction,
    PermissionRule, Protocol, ProxyContext, SourceMatch,
};
use atoll_xds_server::session::{Snapshot, SnapshotResource};

use atoll_core::fnv::Fnv1a;
use atoll_core::labels::SERVICE_TAG;

use crate::ca::MeshCa;
use crate::error::BuildError;
use crate::index::{MeshIndex, MeshState, protocol_of};

/// Everything a build produced: the snapshot to serve and what the inspect API shows.
#[derive(Debug, Clone)]
pub struct ProxyBuild {
    pub snapshot: Arc<Snapshot>,
    /// The generated resources; rendered for the inspect API only when asked
    /// ([`ProxyBuild::config_json`]), since copying every resource's JSON on each build would
    /// cost more than generating it.
    pub resources: Arc<Vec<atoll_xds::proto::EnvoyResource>>,
    /// The resolved policies per inbound and outbound.
    pub rules_json: Value,
    /// The services this proxy reaches (a change to their endpoints concerns it).
    pub outbound_services: BTreeSet<String>,
    /// The services this proxy offers.
    pub own_services: BTreeSet<String>,
    pub cert: Option<ProxyCert>,
    /// A zone egress's certificate in each mesh whose external services it serves.
    pub mesh_certs: BTreeMap<String, ProxyCert>,
}

impl ProxyBuild {
    /// Drops what only the inspect views use (the models behind `_config`, the `_rules` view)
    /// and the resource list (the snapshot holds the same encoded resources): a build kept for
    /// serving thousands of proxies needs only its snapshot. The views render a fresh build.
    pub fn forget_models(&mut self) {
        self.resources = Arc::new(Vec::new());
        self.rules_json = Value::Null;
    }

    /// The proxy's resources as kept in its snapshot (wire form only).
    fn wire_resources(&self) -> impl Iterator<Item = atoll_xds::proto::EnvoyResource> + '_ {
        self.snapshot
            .resources
            .iter()
            .flat_map(|(type_url, by_name)| {
                by_name.iter().map(move |(name, r)| {
                    atoll_xds::proto::EnvoyResource::from_wire(
                        type_url,
                        name,
                        &r.version,
                        r.resource.clone(),
                    )
                })
            })
    }

    /// Every certificate of the proxy (for rotation).
    pub fn certs(&self) -> impl Iterator<Item = &ProxyCert> {
        self.cert.iter().chain(self.mesh_certs.values())
    }
}

/// Builds the snapshot of dataplane `name` in the indexed mesh (see [`build_from`]).
pub async fn build(
    index: &MeshIndex,
    mesh: &str,
    name: &str,
    previous_cert: Option<&ProxyCert>,
    now: DateTime<Utc>,
) -> Result<ProxyBuild, BuildError> {
    let state = index.mesh(mesh).await?;
    build_from(&state, name, previous_cert, now)
}

/// Builds the snapshot of dataplane `name` from a mesh's indexed state: pure and synchronous, and
/// its cost follows what this proxy needs (its inbounds, and the endpoints of its outbounds).
/// `previous_cert` is reused while it is valid, not due for rotation, and issued for the same
/// identity by the same CA.
pub fn build_from(
    state: &MeshState,
    name: &str,
    previous_cert: Option<&ProxyCert>,
    now: DateTime<Utc>,
) -> Result<ProxyBuild, BuildError> {
    build_views(state, name, previous_cert, now, true)
}

/// [`build_from`] for serving: the snapshot, identity and certificate, without the `_rules`
/// view and the models behind `_config` (a build kept for serving drops them anyway, and
/// rendering then dropping them was a fifth of a build). The inspect endpoints render a fresh
/// [`build_from`] on request.
pub fn build_to_serve(
    state: &MeshState,
    name: &str,
    previous_cert: Option<&ProxyCert>,
    now: DateTime<Utc>,
) -> Result<ProxyBuild, BuildError> {
    let mut built = build_views(state, name, previous_cert, now, false)?;
    built.forget_models();
    Ok(built)
}

fn build_views(
    state: &MeshState,
    name: &str,
    previous_cert: Option<&ProxyCert>,
    now: DateTime<Utc>,
    views: bool,
) -> Result<ProxyBuild, BuildError> {
    let mesh = state.name.as_str();
    let entry = state.dataplanes.get(name).ok_or_else(|| {
        BuildError::MissingDataplane(ResourceKey::new(Kind::Dataplane, mesh, name))
    })?;
    let dp = &entry.doc;
    let ca = state.ca.as_ref();
    let networking = dp.networking.clone().unwrap_or_default();
    let address = networking
        .address
        .clone()
        .unwrap_or_else(|| "127.0.0.1".into());
    let proxy = ProxyView::from_dataplane(mesh, name, &entry.labels, dp);
    let InboundSide {
        inbounds,
        rules_in,
        own_services,
        tag_values,
    } = inbound_side(state, &proxy, &networking, views);

    let mut outbounds = Vec::new();
    let mut rules_out = Vec::new();
    let mut outbound_services = BTreeSet::new();
    for outbound in &networking.outbound {
        if let Some(backend) = outbound.backend_ref.as_ref().filter(|b| {
            matches!(
                b.kind,
                Some(atoll_core::kinds::dataplane::BackendKind::MeshExternalService)
            )
        }) {
            let (Some(name), Some(port)) = (
                backend.name.as_deref(),
                outbound.port.and_then(|p| u16::try_from(p).ok()),
            ) else {
                continue;
            };
            // Reached by the name it was written with; a synced copy's stored name works too.
            let external = state.external_services.get(name).or_else(|| {
                state
                    .external_names
                    .get(name)
                    .and_then(|n| state.external_services.get(n))
            });
            let Some(external) = external else {
                if views {
                    rules_out.push(json!({"meshExternalService": name, "port": port, "error": "no such MeshExternalService in this mesh"}));
                }
                continue;
            };
            let endpoints = atoll_xds::zone_proxy::egress_endpoints(&state.routes.egresses);
            if views {
                rules_out.push(json!({
                    "meshExternalService": external.name, "port": port,
                    "throughZoneEgress": endpoints.iter().map(|e| format!("{}:{}", e.address, e.port)).collect::<Vec<_>>(),
                }));
            }
            outbounds.push(OutboundContext {
                address: outbound
                    .address
                    .clone()
                    .unwrap_or_else(|| "127.0.0.1".into()),
                port,
                service: external.name.clone(),
                protocol: external.protocol,
                endpoints,
                policies: OutboundConfs::default(),
                external: true,
            });
            continue;
        }
        let service = match (&outbound.tags, &outbound.backend_ref) {
            (Some(tags), _) => tags.get(SERVICE_TAG).cloned(),
            (None, Some(backend)) => backend.name.clone(),
            _ => None,
        };
        let (Some(service), Some(port)) =
            (service, outbound.port.and_then(|p| u16::try_from(p).ok()))
        else {
            continue;
        };
        outbound_services.insert(service.clone());
        let found = state.services.get(&service);
        let protocol = found.map(|s| s.protocol()).unwrap_or_else(|| {
            state
                .remote
                .get(&service)
                .and_then(|r| r.protocol)
                .unwrap_or(Protocol::Tcp)
        });
        // Local endpoints first; other zones' ingresses as lower-priority localities.
        let mut endpoints = found.map(|s| s.endpoints()).unwrap_or_default();
        endpoints.extend(state.remote_endpoints(&service));
        let destination = Destination::Named {
            kind: "MeshService".into(),
            name: service.clone(),
            section_name: None,
        };
        let policies = OutboundConfs::resolve(&state.policies, &proxy, &destination);
        if views {
            // The merged conf of each applying policy, under its kind (`meshTimeout`...).
            let mut view = json!({"service": service, "port": port});
            if let (Some(view), Ok(Value::Object(confs))) =
                (view.as_object_mut(), serde_json::to_value(&policies))
            {
                view.extend(confs);
            }
            rules_out.push(view);
        }
        outbounds.push(OutboundContext {
            address: outbound
                .address
                .clone()
                .unwrap_or_else(|| "127.0.0.1".into()),
            port,
            service: service.clone(),
            protocol,
            endpoints,
            policies,
            external: false,
        });
    }

    let ctx = ProxyContext {
        mesh: mesh.to_string(),
        name: name.to_string(),
        address,
        mtls: ca.map(|c| MeshMtls { mode: c.mode }),
        inbounds,
        outbounds,
    };
    let mut resources = atoll_xds::generate::generate_with(&ctx, Some(&state.assignments))?;
    let cert = match ca {
        Some(ca) => {
            let cert = certificate(ca, mesh, &own_services, &tag_values, previous_cert, now)?;
            resources.extend(cert.secrets.iter().cloned());
            Some(cert)
        }
        None => None,
    };

    let snapshot = snapshot_of(&resources);
    let rules_json = if views {
        json!({
            "inbounds": rules_in,
            "outbounds": rules_out,
            "mtls": ca.map(|c| json!({"backend": c.backend, "mode": format!("{:?}", c.mode)})),
        })
    } else {
        Value::Null
    };
    Ok(ProxyBuild {
        snapshot: Arc::new(snapshot),
        resources: Arc::new(resources),
        rules_json,
        outbound_services,
        own_services,
        cert,
        mesh_certs: BTreeMap::new(),
    })
}

/// What a proxy's inbounds are: their contexts (with MeshTrafficPermission rules), the rules
/// view, and the identity its certificate carries.
struct InboundSide {
    inbounds: Vec<InboundContext>,
    rules_in: Vec<Value>,
    own_services: BTreeSet<String>,
    tag_values: BTreeMap<String, BTreeSet<String>>,
}

fn inbound_side(
    state: &MeshState,
    proxy: &ProxyView,
    networking: &atoll_core::kinds::dataplane::Networking,
    views: bool,
) -> InboundSide {
    let ca = state.ca.as_ref();
    let permissions = state.policies.of_kind(Kind::MeshTrafficPermission);
    let mut inbounds = Vec::new();
    let mut rules_in = Vec::new();
    let mut own_services = BTreeSet::new();
    let mut tag_values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, inbound) in networking.inbound.iter().enumerate() {
        let Some(port) = inbound.port.and_then(|p| u16::try_from(p).ok()) else {
            continue;
        };
        let service = inbound.tags.get(SERVICE_TAG).cloned().unwrap_or_default();
        own_services.insert(service.clone());
        for (k, v) in &inbound.tags {
            tag_values.entry(k.clone()).or_default().insert(v.clone());
        }
        let rules: Vec<PermissionRule> = if ca.is_some() {
            inbound_permission_rules(permissions, proxy, i)
                .into_iter()
                .map(|r| PermissionRule {
                    source: match r.source_tags {
                        None => SourceMatch::Any,
                        Some(tags) => SourceMatch::Tags(tags),
                    },
                    action: match r.action {
                        Action::Allow => PermissionAction::Allow,
                        Action::AllowWithShadowDeny => PermissionAction::AllowWithShadowDeny,
                        _ => PermissionAction::Deny,
                    },
                })
                .collect()
        } else {
            // Without mTLS there is no client identity: Kuma enforces no permissions.
            vec![PermissionRule {
                source: SourceMatch::Any,
                action: PermissionAction::Allow,
            }]
        };
        if views {
            rules_in.push(json!({
                "port": port,
                "service": service,
                "trafficPermissions": rules.iter().map(|r| json!({
                    "from": match &r.source { SourceMatch::Any => json!("any"), SourceMatch::Tags(t) => json!(t) },
                    "action": format!("{:?}", r.action),
                })).collect::<Vec<_>>(),
            }));
        }
        inbounds.push(InboundContext {
            port,
            service_address: inbound
                .service_address
                .clone()
                .unwrap_or_else(|| "127.0.0.1".into()),
            service_port: inbound
                .service_port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(port),
            service,
            protocol: protocol_of(&inbound.tags),
            tags: inbound.tags.clone(),
            permissions: InboundPermissions { rules },
        });
    }

    InboundSide {
        inbounds,
        rules_in,
        own_services,
        tag_values,
    }
}

/// Rebuilds only the inbound side of a proxy (after MeshTrafficPermission changes, which touch
/// nothing else): its outbound resources, certificate and secrets are taken from `previous`.
/// Falls back to a full build when the proxy's identity changed meanwhile.
pub fn rebuild_inbounds(
    state: &MeshState,
    name: &str,
    previous: &ProxyBuild,
    now: DateTime<Utc>,
) -> Result<ProxyBuild, BuildError> {
    let mesh = state.name.as_str();
    let entry = state.dataplanes.get(name).ok_or_else(|| {
        BuildError::MissingDataplane(ResourceKey::new(Kind::Dataplane, mesh, name))
    })?;
    let networking = entry.doc.networking.clone().unwrap_or_default();
    let proxy = ProxyView::from_dataplane(mesh, name, &entry.labels, &entry.doc);
    // A kept build has no rules view (it is rendered from a fresh build on request).
    let views = !previous.rules_json.is_null();
    let side = inbound_side(state, &proxy, &networking, views);
    let same_identity = previous.own_services == side.own_services
        && previous.cert.as_ref().is_some() == state.ca.is_some()
        && previous
            .cert
            .as_ref()
            .is_none_or(|c| c.services == side.own_services && c.tags == side.tag_values);
    if !same_identity {
        return build_views(state, name, previous.cert.as_ref(), now, views);
    }
    let ctx = ProxyContext {
        mesh: mesh.to_string(),
        name: name.to_string(),
        address: networking
            .address
            .clone()
            .unwrap_or_else(|| "127.0.0.1".into()),
        mtls: state.ca.as_ref().map(|c| MeshMtls { mode: c.mode }),
        inbounds: side.inbounds,
        outbounds: Vec::new(),
    };
    let mut resources: Vec<atoll_xds::proto::EnvoyResource> = previous
        .wire_resources()
        .filter(|r| !is_inbound_resource(r))
        .collect();
    resources.extend(atoll_xds::generate::generate(&ctx)?);
    let rules_json = if !views {
        Value::Null
    } else {
        let mut rules_json = previous.rules_json.clone();
        rules_json["inbounds"] = Value::Array(side.rules_in);
        rules_json
    };
    Ok(ProxyBuild {
        snapshot: Arc::new(snapshot_of(&resources)),
        resources: Arc::new(resources),
        rules_json,
        outbound_services: previous.outbound_services.clone(),
        own_services: side.own_services,
        cert: previous.cert.clone(),
        mesh_certs: BTreeMap::new(),
    })
}

/// Resources `generate` makes from a proxy's inbounds: inbound listeners and local clusters.
fn is_inbound_resource(r: &atoll_xds::proto::EnvoyResource) -> bool {
    use atoll_xds::model::type_urls;
    (r.type_url == type_urls::LISTENER && r.name.starts_with("inbound:"))
        || (r.type_url == type_urls::CLUSTER && r.name.starts_with("localhost:"))
}

/// The snapshot of generated resources; its version digests every resource's version.
pub fn snapshot_of(resources: &[atoll_xds::proto::EnvoyResource]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for r in resources {
        snapshot
            .resources
            .entry(r.type_url.clone())
            .or_default()
            .insert(
                r.name.clone(),
                SnapshotResource {
                    version: r.version.clone(),
                    resource: r.any.clone(),
                },
            );
    }
    // Digest in (type, name) order, so the same resources give the same version whatever
    // order they were generated in (a partial rebuild appends the inbound side last).
    let mut digest = Fnv1a::new();
    for (type_url, by_name) in &snapshot.resources {
        for (name, r) in by_name {
            digest.write_field(type_url.as_bytes());
            digest.write_field(name.as_bytes());
            digest.write_field(r.version.as_bytes());
        }
    }
    snapshot.version = digest.hex();
    snapshot
}

impl ProxyBuild {
    /// The generated resources as Envoy JSON, private keys redacted (the `_config` view).
    pub fn config_json(&self) -> Value {
        let resources: Vec<Value> = self
            .resources
            .iter()
            .map(|r| {
                let shown = if r.type_url.ends_with(".Secret") {
                    redact_keys(&r.json)
                } else {
                    r.json.clone()
                };
                json!({"typeUrl": r.type_url, "name": r.name, "version": r.version, "resource": shown})
            })
            .collect();
        json!({"version": self.snapshot.version, "resources": resources})
    }
}

/// A proxy certificate and what it was issued for.
#[derive(Debug, Clone)]
pub struct ProxyCert {
    pub issued: IssuedCert,
    /// The sidecar's SDS secrets for this certificate (identity and mesh CA), generated once
    /// per certificate rather than on every build.
    pub secrets: Arc<Vec<atoll_xds::proto::EnvoyResource>>,
    services: BTreeSet<String>,
    tags: BTreeMap<String, BTreeSet<String>>,
    ca_cert_pem: String,
    /// The roots the proxy was told to trust with it.
    trust_pem: String,
}

impl ProxyCert {
    /// Whether it was issued by `ca` and sent with `ca`'s trust bundle.
    pub fn matches(&self, ca: &MeshCa) -> bool {
        self.ca_cert_pem == ca.bundle.cert_pem && self.trust_pem == ca.trust_pem
    }
}

/// The proxy's certificate: the previous one while it is not due for rotation and was issued
/// for the same identity by the same CA; a new one otherwise.
pub(crate) fn certificate(
    ca: &MeshCa,
    mesh: &str,
    services: &BTreeSet<String>,
    tags: &BTreeMap<String, BTreeSet<String>>,
    previous: Option<&ProxyCert>,
    now: DateTime<Utc>,
) -> Result<ProxyCert, BuildError> {
    if let Some(prev) = previous {
        let reusable = prev.ca_cert_pem == ca.bundle.cert_pem
            && &prev.services == services
            && &prev.tags == tags
            && !atoll_identity::rotation_due(&prev.issued, now);
        if reusable && prev.trust_pem == ca.trust_pem {
            return Ok(prev.clone());
        }
        if reusable {
            // Same certificate, new trust bundle (a CA switch in progress).
            let mut cert = prev.clone();
            cert.secrets = Arc::new(atoll_xds::generate::secrets(
                &cert.issued.cert_chain_pem,
                &cert.issued.key_pem,
                &ca.trust_pem,
            ));
            cert.trust_pem = ca.trust_pem.clone();
            return Ok(cert);
        }
    }
    let request = WorkloadCertRequest {
        mesh: mesh.to_string(),
        services: services.iter().cloned().collect(),
        tags: tags.clone(),
        validity: ca.dp_cert_validity,
    };
    let issued = atoll_identity::issue_workload_cert(&ca.bundle, &request, now)
        .map_err(BuildError::Certificate)?;
    let secrets = Arc::new(atoll_xds::generate::secrets(
        &issued.cert_chain_pem,
        &issued.key_pem,
        &ca.trust_pem,
    ));
    Ok(ProxyCert {
        issued,
        secrets,
        services: services.clone(),
        tags: tags.clone(),
        ca_cert_pem: ca.bundle.cert_pem.clone(),
        trust_pem: ca.trust_pem.clone(),
    })
}

/// The secret JSON with private keys replaced, for the inspect API.
fn redact_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    if k == "private_key" {
                        (k.clone(), json!({"inline_string": "[redacted]"}))
                    } else {
                        (k.clone(), redact_keys(v))
                    }
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(redact_keys).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{DataplaneEntry, MeshState};
    use atoll_core::Resource;
    use atoll_core::matching::PolicyView;
    use serde_json::json;

    fn mesh_without_mtls() -> MeshState {
        let doc = serde_json::from_value(json!({})).expect("mesh");
        let mut state = MeshState::new("default", doc, None);
        let dp = |v: Value| DataplaneEntry {
            labels: Default::default(),
            doc: serde_json::from_value(v).expect("dataplane"),
            services: Default::default(),
        };
        state.upsert_dataplane(
            "web-1",
            dp(json!({"networking": {"address": "127.0.0.1",
                "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 10001, "tags": {"kuma.io/service": "backend"}},
                             {"port": 10002, "tags": {"kuma.io/service": "db"}}]}})),
        );
        state
    }

    fn cluster_connect_timeout(build: &ProxyBuild, cluster: &str) -> Value {
        build.config_json()["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .find(|r| {
                r["typeUrl"]
                    .as_str()
                    .is_some_and(|t| t.ends_with("Cluster"))
                    && r["name"] == cluster
            })
            .map(|r| r["resource"]["connect_timeout"].clone())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn mesh_timeout_for_one_service_changes_only_its_cluster() {
        let mut state = mesh_without_mtls();
        let policy = Resource::from_value(json!({
            "type": "MeshTimeout", "mesh": "default", "name": "backend-timeouts",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"connectionTimeout": "2s", "http": {"requestTimeout": "3s"}}
            }]}
        }))
        .expect("valid policy");
        let view = PolicyView::from_resource(&policy).expect("view");
        state.policies.upsert(view);
        let built = build_from(&state, "web-1", None, Utc::now()).expect("builds");
        assert_eq!(cluster_connect_timeout(&built, "backend"), "2s");
        assert_eq!(
            cluster_connect_timeout(&built, "db"),
            "5s",
            "Kuma's default elsewhere"
        );
        assert_eq!(
            built.rules_json["outbounds"][0]["meshTimeout"]["connectionTimeout"],
            "2s"
        );
    }

    fn permission(action: &str) -> PolicyView {
        let policy = Resource::from_value(json!({
            "type": "MeshTrafficPermission", "mesh": "default", "name": "all",
            "spec": {"targetRef": {"kind": "Mesh"}, "from": [{
                "targetRef": {"kind": "Mesh"}, "default": {"action": action}}]}
        }))
        .expect("valid policy");
        PolicyView::from_resource(&policy).expect("view")
    }

    #[test]
    fn a_build_to_serve_serves_what_a_full_build_does_without_the_views() {
        let now = Utc::now();
        let mut state = mesh_without_mtls();
        state.policies.upsert(permission("Allow"));
        let policy = Resource::from_value(json!({
            "type": "MeshTimeout", "mesh": "default", "name": "t",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{
                "targetRef": {"kind": "MeshService", "name": "backend"},
                "default": {"connectionTimeout": "2s"}
            }]}
        }))
        .expect("valid policy");
        state
            .policies
            .upsert(PolicyView::from_resource(&policy).expect("view"));
        let full = build_from(&state, "web-1", None, now).expect("builds");
        let served = build_to_serve(&state, "web-1", None, now).expect("builds");
        // Versions digest every resource's content (the bytes may order protobuf maps
        // differently from one encoding to the next).
        assert_eq!(served.snapshot.version, full.snapshot.version);
        assert_eq!(served.outbound_services, full.outbound_services);
        assert_eq!(served.own_services, full.own_services);
        assert!(served.rules_json.is_null());
        assert!(full.rules_json["outbounds"][0]["meshTimeout"].is_object());
        assert!(
            served.resources.iter().all(|r| r.json.model().is_none()),
            "no model kept for the _config view"
        );
    }

    #[test]
    fn a_permission_change_rebuilds_the_inbound_side_to_what_a_full_build_gives() {
        let now = Utc::now();
        let mut state = mesh_without_mtls();
        let bundle =
            atoll_identity::generate_root_ca("default", std::time::Duration::from_secs(86400), now)
                .expect("ca");
        state.ca = Some(crate::ca::MeshCa {
            backend: "ca-1".into(),
            trust_pem: bundle.cert_pem.clone(),
            bundle,
            mode: atoll_xds::context::MtlsMode::Strict,
            dp_cert_validity: std::time::Duration::from_secs(3600),
        });
        state.policies.upsert(permission("Allow"));
        let before = build_from(&state, "web-1", None, now).expect("builds");

        state.policies.upsert(permission("Deny"));
        let partial = rebuild_inbounds(&state, "web-1", &before, now).expect("rebuilds");
        let full = build_from(&state, "web-1", before.cert.as_ref(), now).expect("builds");
        assert_eq!(
            partial.snapshot, full.snapshot,
            "same resources, same version"
        );
        // The same from a kept build (views and resource list dropped, snapshot only).
        let mut kept = before.clone();
        kept.forget_models();
        let from_kept = rebuild_inbounds(&state, "web-1", &kept, now).expect("rebuilds");
        assert_eq!(from_kept.snapshot, full.snapshot);
        assert_ne!(partial.snapshot.version, before.snapshot.version);
        assert_eq!(
            partial.rules_json["inbounds"][0]["trafficPermissions"][0]["action"],
            "Deny"
        );
        assert_eq!(
            partial.rules_json["outbounds"],
            full.rules_json["outbounds"]
        );
        // The outbound side and the certificate are the previous build's, not rebuilt.
        let cluster = |b: &ProxyBuild| {
            b.resources
                .iter()
                .find(|r| r.name == "backend" && r.type_url.ends_with("Cluster"))
                .map(|r| r.any.clone())
                .expect("cluster")
        };
        assert!(Arc::ptr_eq(&cluster(&partial), &cluster(&before)));
        assert_eq!(
            partial
                .cert
                .as_ref()
                .map(|c| c.issued.cert_chain_pem.clone()),
            before
                .cert
                .as_ref()
                .map(|c| c.issued.cert_chain_pem.clone())
        );
    }

    #[test]
    fn without_mtls_every_client_is_allowed() {
        let state = mesh_without_mtls();
        let built = build_from(&state, "web-1", None, Utc::now()).expect("builds");
        assert_eq!(
            built.rules_json["inbounds"][0]["trafficPermissions"][0]["action"],
            "Allow"
        );
        assert!(built.cert.is_none());
        let missing = build_from(&state, "nope", None, Utc::now());
        assert!(matches!(missing, Err(BuildError::MissingDataplane(_))));
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::index::{DataplaneEntry, MeshState};
    use atoll_core::Resource;
    use atoll_core::matching::PolicyView;
    use serde_json::json;

    #[test]
    fn mesh_retry_and_circuit_breaker_reach_the_destination_they_name() {
        let doc = serde_json::from_value(json!({})).expect("mesh");
        let mut state = MeshState::new("default", doc, None);
        let dp = |v: Value| DataplaneEntry {
            labels: Default::default(),
            doc: serde_json::from_value(v).expect("dataplane"),
            services: Default::default(),
        };
        state.upsert_dataplane(
            "api-1",
            dp(json!({"networking": {"address": "127.0.0.1",
                "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "api", "kuma.io/protocol": "http"}}]}})),
        );
        state.upsert_dataplane(
            "web-1",
            dp(json!({"networking": {"address": "127.0.0.2",
                "inbound": [{"port": 8080, "servicePort": 80, "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 10001, "tags": {"kuma.io/service": "api"}}]}})),
        );
        let policy = |v: Value| {
            PolicyView::from_resource(&Resource::from_value(v).expect("valid")).expect("view")
        };
        state.policies.upsert(policy(json!({
            "type": "MeshRetry", "mesh": "default", "name": "r",
            "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "api"},
                "default": {"http": {"numRetries": 2, "retryOn": ["5xx", "HttpMethodGet", "503"]}}}]}
        })));
        state.policies.upsert(policy(json!({
                "type": "MeshCircuitBreaker", "mesh": "default", "name": "cb",
                "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"},
                    "default": {"connectionLimits": {"maxConnections": 7}}}]}
        })));
        let built = build_from(&state, "web-1", None, Utc::now()).expect("builds");
        let text = built.config_json().to_string();
        assert!(text.contains("\"num_retries\":2"), "{text}");
        assert!(text.contains("\"retry_on\":\"5xx\""), "{text}");
        assert!(text.contains("\"max_connections\":7"), "{text}");
        assert_eq!(
            built.rules_json["outbounds"][0]["meshRetry"]["http"]["numRetries"],
            2
        );
    }
}
