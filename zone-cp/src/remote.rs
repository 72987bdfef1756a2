//! What a zone knows about the other zones and its own zone proxies: the services other zones
//! offer (their MeshServices, relayed by global, one resource per service and zone), the other
//! zones' ingresses, and this zone's ingresses and egresses. Sidecar EDS reaches a remote service
//! through the ingress of each zone that offers it (or through the local egress when the mesh
//! routes cross-zone traffic through egress).

use std::collections::BTreeMap;

use serde_json::Value;

use atoll_core::kinds::mesh_service::MeshServiceDoc;
use atoll_core::kinds::zone_egress::ZoneEgressDoc;
use atoll_core::kinds::zone_ingress::ZoneIngressDoc;
use atoll_core::labels::{SERVICE_TAG, ZONE_LABEL};
use atoll_core::{Kind, Resource};
use atoll_kds::Party;
use atoll_kds::naming::origin_of;
use atoll_xds::context::{Endpoint, Protocol};
use atoll_xds::zone_context::{
    DEFAULT_EGRESS_PORT, DEFAULT_INGRESS_PORT, LocalZoneEgress, RemoteZoneIngress,
};
use atoll_xds::zone_proxy::remote_endpoints;

/// The `kuma.io/managed-by` value on the MeshServices the zone control plane derives from its
/// dataplanes.
pub const MANAGED_BY_ZONE_CP: &str = "atoll-zone-cp";

/// The zone a resource belongs to: the zone it was synced from, or this zone when it was
/// created here.
pub fn zone_of(resource: &Resource, local_zone: &str) -> String {
    match origin_of(resource) {
        Some(Party::Zone(z)) => z,
        _ => resource
            .labels
            .get(ZONE_LABEL)
            .cloned()
            .unwrap_or_else(|| local_zone.to_string()),
    }
}

/// Whether a resource was created in another zone (and relayed here by global).
pub fn is_remote(resource: &Resource, local_zone: &str) -> bool {
    matches!(origin_of(resource), Some(Party::Zone(z)) if z != local_zone)
}

/// One service another zone offers, from its MeshService.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteOffer {
    pub zone: String,
    /// The `kuma.io/service` it stands for.
    pub service: String,
    pub protocol: Protocol,
    /// Healthy instances in that zone.
    pub instances: u32,
}

/// Reads a relayed MeshService: which service of which zone, with how many healthy instances.
pub fn remote_offer(resource: &Resource, local_zone: &str) -> Option<RemoteOffer> {
    if resource.kind != Kind::MeshService || !is_remote(resource, local_zone) {
        return None;
    }
    let doc: MeshServiceDoc = serde_json::from_value(Value::Object(resource.spec.clone())).ok()?;
    let spec = doc.spec?;
    let service = spec
        .selector
        .as_ref()
        .and_then(|s| s.dataplane_tags.as_ref())
        .and_then(|t| t.get(SERVICE_TAG).cloned())
        .unwrap_or_else(|| atoll_kds::naming::display_name(resource).to_string());
    let protocol = match spec.ports.first().and_then(|p| p.app_protocol.as_ref()) {
        Some(atoll_core::kinds::mesh_service::Protocol::Http) => Protocol::Http,
        Some(atoll_core::kinds::mesh_service::Protocol::Http2) => Protocol::Http2,
        Some(atoll_core::kinds::mesh_service::Protocol::Grpc) => Protocol::Grpc,
        _ => Protocol::Tcp,
    };
    let instances = doc
        .status
        .and_then(|s| s.dataplane_proxies)
        .and_then(|d| d.healthy)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    Some(RemoteOffer {
        zone: zone_of(resource, local_zone),
        service,
        protocol,
        instances,
    })
}

/// The zone proxies this zone knows, by zone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneRoutes {
    pub local_zone: String,
    /// Advertised `address:port` of every zone's ingresses, by zone (this zone's too).
    pub ingresses: BTreeMap<String, Vec<(String, u16)>>,
    /// This zone's egresses.
    pub egresses: Vec<LocalZoneEgress>,
}

impl ZoneRoutes {
    pub fn new(local_zone: &str) -> Self {
        Self {
            local_zone: local_zone.to_string(),
            ..Self::default()
        }
    }

    /// Rebuilds from every ZoneIngress and ZoneEgress in the store.
    pub fn from_resources(local_zone: &str, ingresses: &[Resource], egresses: &[Resource]) -> Self {
        let mut routes = Self::new(local_zone);
        for r in ingresses {
            let Ok(doc) = serde_json::from_value::<ZoneIngressDoc>(Value::Object(r.spec.clone()))
            else {
                continue;
            };
            let zone = doc
                .zone
                .clone()
                .filter(|z| !z.is_empty())
                .unwrap_or_else(|| zone_of(r, local_zone));
            let Some(net) = doc.networking else { continue };
            let address = net.advertised_address.or(net.address);
            let port = net
                .advertised_port
                .or(net.port)
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DEFAULT_INGRESS_PORT);
            if let Some(address) = address {
                // EDS takes IPs: an ingress advertising anything else is left out, not allowed
                // to fail the config of every sidecar that reaches its zone.
                if address.parse::<std::net::IpAddr>().is_err() {
                    tracing::warn!(ingress = %r.name, %zone, %address, "ZoneIngress address is not an IP: left out of the routes to its zone");
                    continue;
                }
                routes
                    .ingresses
                    .entry(zone)
                    .or_default()
                    .push((address, port));
            }
        }
        for list in routes.ingresses.values_mut() {
            list.sort();
            list.dedup();
        }
        for r in egresses {
            if is_remote(r, local_zone) {
                continue;
            }
            let Ok(doc) = serde_json::from_value::<ZoneEgressDoc>(Value::Object(r.spec.clone()))
            else {
                continue;
            };
            let Some(net) = doc.networking else { continue };
            let Some(address) = net.address else { continue };
            if address.parse::<std::net::IpAddr>().is_err() {
                tracing::warn!(egress = %r.name, %address, "ZoneEgress address is not an IP: left out");
                continue;
            }
            let port = net
                .port
                .and_then(|p| u16::try_from(p).ok())
                .unwrap_or(DEFAULT_EGRESS_PORT);
            routes.egresses.push(LocalZoneEgress { address, port });
        }
        routes.egresses.sort();
        routes.egresses.dedup();
        routes
    }

    /// The ingresses of the other zones that offer a service (`offers`: healthy instances per
    /// zone), each with the instance count behind it. Zones without a known ingress or without
    /// healthy instances are left out.
    pub fn remote_ingresses(&self, offers: &BTreeMap<String, u32>) -> Vec<RemoteZoneIngress> {
        offers
            .iter()
            .filter(|(zone, instances)| **instances > 0 && **zone != self.local_zone)
            .flat_map(|(zone, instances)| {
                self.ingresses
                    .get(zone)
                    .into_iter()
                    .flatten()
                    .map(|(address, port)| RemoteZoneIngress {
                        zone: zone.clone(),
                        address: address.clone(),
                        port: *port,
                        instances: *instances,
                    })
            })
            .collect()
    }

    /// The endpoints through which a sidecar reaches the remote part of a service: the other
    /// zones' ingresses, weighted by the instances behind them, with locality = their zone
    /// (`zone_proxy::remote_endpoints`); with `via_egress` and a local egress, the local
    /// egresses instead, keeping each zone's locality and weight.
    pub fn remote_endpoints(
        &self,
        offers: &BTreeMap<String, u32>,
        via_egress: bool,
    ) -> Vec<Endpoint> {
        let ingresses = self.remote_ingresses(offers);
        if !via_egress || self.egresses.is_empty() {
            return remote_endpoints(&ingresses);
        }
        let mut out: Vec<Endpoint> = ingresses
            .iter()
            .flat_map(|ingress| {
                self.egresses.iter().map(|egress| Endpoint {
                    address: egress.address.clone(),
                    port: egress.port,
                    weight: ingress.instances,
                    zone: Some(ingress.zone.clone()),
                })
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn resource(
        kind: Kind,
        mesh: &str,
        name: &str,
        labels: &[(&str, &str)],
        spec: Value,
    ) -> Resource {
        let mut r = Resource::new(kind, mesh, name);
        r.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if let Value::Object(m) = spec {
            r.spec = m;
        }
        r
    }

    fn from_zone(zone: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![("kuma.io/origin", "zone"), ("kuma.io/zone", zone)]
    }

    #[test]
    fn a_relayed_mesh_service_is_an_offer_of_its_zone() {
        let ms = resource(
            Kind::MeshService,
            "default",
            "backend-xyz",
            &from_zone("zone-2"),
            serde_json::json!({
                "spec": {"selector": {"dataplaneTags": {"kuma.io/service": "backend"}},
                         "ports": [{"port": 8080, "appProtocol": "http"}]},
                "status": {"dataplaneProxies": {"healthy": 3, "total": 4}},
            }),
        );
        let offer = remote_offer(&ms, "zone-1").expect("remote offer");
        assert_eq!(offer.zone, "zone-2");
        assert_eq!(offer.service, "backend");
        assert_eq!(offer.instances, 3);
        assert_eq!(offer.protocol, Protocol::Http);
        // The same resource seen in its own zone, or a local one, is no remote offer.
        assert_eq!(remote_offer(&ms, "zone-2"), None);
        let local = resource(
            Kind::MeshService,
            "default",
            "backend",
            &[],
            ms.spec.clone().into(),
        );
        assert_eq!(remote_offer(&local, "zone-1"), None);
    }

    #[test]
    fn remote_endpoints_go_through_each_zones_ingress_or_the_local_egress() {
        let ingress = |zone: &'static str, addr: &str| {
            resource(
                Kind::ZoneIngress,
                "",
                &format!("ingress-{zone}"),
                &from_zone(zone),
                serde_json::json!({"zone": zone, "networking": {"address": "0.0.0.0", "advertisedAddress": addr, "port": 10001, "advertisedPort": 20001}}),
            )
        };
        let egress = resource(
            Kind::ZoneEgress,
            "",
            "egress",
            &[],
            serde_json::json!({"networking": {"address": "127.0.0.9", "port": 10002}}),
        );
        let routes = ZoneRoutes::from_resources(
            "zone-1",
            &[ingress("zone-2", "10.0.0.2"), ingress("zone-3", "10.0.0.3")],
            &[egress],
        );
        let offers: BTreeMap<String, u32> = [
            ("zone-2".to_string(), 2),
            ("zone-3".to_string(), 0),
            ("zone-4".to_string(), 5),
        ]
        .into_iter()
        .collect();
        let direct = routes.remote_endpoints(&offers, false);
        assert_eq!(
            direct,
            vec![Endpoint {
                address: "10.0.0.2".into(),
                port: 20001,
                weight: 2,
                zone: Some("zone-2".into())
            }],
            "zone-3 has no healthy instance, zone-4 no ingress"
        );
        let via_egress = routes.remote_endpoints(&offers, true);
        assert_eq!(via_egress.len(), 1);
        assert_eq!(via_egress[0].address, "127.0.0.9");
        assert_eq!(via_egress[0].port, 10002);
        assert_eq!(via_egress[0].zone.as_deref(), Some("zone-2"));
    }
}
