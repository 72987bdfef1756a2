//! Who may open an xDS stream or register: dataplane tokens (signed for the mesh, naming the
//! dataplane, bound to its tags when the token or the mesh says so) and zone tokens of zone
//! proxies (signed by global's key, for this zone and the proxy's scope).

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::google::protobuf::value::Kind as PbKind;
use serde_json::Value;

use atoll_clock::SharedClock;
use atoll_core::kinds::dataplane::DataplaneDoc;
use atoll_core::{Kind, ResourceKey};
use atoll_cp::config::DpAuth;
use atoll_store::SharedStore;
use atoll_xds_server::directory::ConnectError;

use super::ProxyKind;

/// Node metadata key carrying the dataplane token (set in the bootstrap).
pub const TOKEN_METADATA_KEY: &str = "dataplane.token";
/// Node metadata key carrying the proxy type (`dataplane`, `ingress`, `egress`).
pub const PROXY_TYPE_METADATA_KEY: &str = "dataplane.proxyType";

/// Splits a node id `<mesh>.<name>` (mesh names have no dots; dataplane names may).
pub fn parse_node_id(id: &str) -> Option<(&str, &str)> {
    let (mesh, name) = id.split_once('.')?;
    (!mesh.is_empty() && !name.is_empty()).then_some((mesh, name))
}

pub(super) fn metadata_string(node: &Node, key: &str) -> Option<String> {
    let fields = &node.metadata.as_ref()?.fields;
    match fields.get(key)?.kind.as_ref()? {
        PbKind::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// Mesh label that makes the zone refuse dataplane tokens not bound to a service.
pub const TOKEN_BINDING_LABEL: &str = "atoll.io/dataplane-token-binding";

/// Every value each tag takes on a dataplane's inbounds (and gateway), as a token binding
/// reads them.
pub fn dataplane_tags(doc: &DataplaneDoc) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if let Some(net) = &doc.networking {
        let inbound_tags = net.inbound.iter().map(|i| &i.tags);
        for tags in inbound_tags.chain(net.gateway.iter().map(|g| &g.tags)) {
            for (k, v) in tags {
                out.entry(k.clone()).or_default().insert(v.clone());
            }
        }
    }
    out
}

/// Checks the tokens proxies present.
pub struct ProxyAuth {
    store: SharedStore,
    dp_auth: DpAuth,
    /// This zone's name (zone tokens name the zone they admit into).
    zone: String,
    /// Clock skew tolerated on token expiry and not-before.
    leeway: chrono::TimeDelta,
    clock: SharedClock,
}

impl ProxyAuth {
    pub fn new(
        store: SharedStore,
        dp_auth: DpAuth,
        zone: &str,
        leeway: chrono::TimeDelta,
        clock: SharedClock,
    ) -> Self {
        if dp_auth == DpAuth::None {
            tracing::warn!(
                "ATOLL_DP_AUTH=none: proxies are NOT authenticated; use this for benchmarks only"
            );
        }
        Self {
            store,
            dp_auth,
            zone: zone.to_string(),
            leeway,
            clock,
        }
    }

    /// Checks a dataplane token for `mesh`/`name` (unless authentication is off), and its tag
    /// binding against `dataplane` (the document being registered) or, without one, the stored
    /// Dataplane: a token bound to `kuma.io/service: backend` never serves another service.
    pub async fn dataplane(
        &self,
        mesh: &str,
        name: &str,
        token: Option<&str>,
        dataplane: Option<&DataplaneDoc>,
    ) -> Result<(), ConnectError> {
        if self.dp_auth == DpAuth::None {
            return Ok(());
        }
        let token = token.ok_or_else(|| {
            ConnectError::Unauthenticated(format!(
                "dataplane {name:?} of mesh {mesh:?} presented no dataplane token"
            ))
        })?;
        let keys = atoll_cp::tokens::verification_keys(self.store.as_ref(), mesh)
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        if keys.is_empty() {
            return Err(ConnectError::Unauthenticated(format!(
                "mesh {mesh:?} has issued no dataplane tokens; generate one with `atollctl generate dataplane-token`"
            )));
        }
        let claims = atoll_identity::verify_dataplane_token(
            token.trim(),
            &keys,
            self.clock.now(),
            self.leeway,
        )
        .map_err(|e| ConnectError::Unauthenticated(format!("invalid dataplane token: {e}")))?;
        if claims.mesh != mesh || claims.name != name {
            return Err(ConnectError::Unauthenticated(format!(
                "the dataplane token was issued for dataplane {:?} in mesh {:?}, not {name:?} in mesh {mesh:?}",
                claims.name, claims.mesh
            )));
        }
        let unavailable = |e: atoll_store::StoreError| ConnectError::Unavailable(e.to_string());
        if !claims.binds_service()
            && let Some(m) = self
                .store
                .get(&ResourceKey::global(Kind::Mesh, mesh))
                .await
                .map_err(unavailable)?
            && m.labels.get(TOKEN_BINDING_LABEL).map(String::as_str) == Some("service")
        {
            return Err(ConnectError::Unauthenticated(format!(
                "mesh {mesh:?} requires dataplane tokens bound to a service ({TOKEN_BINDING_LABEL}: service): generate one with `atollctl generate dataplane-token --name {name} --tag kuma.io/service=<service>`"
            )));
        }
        let stored;
        let dataplane = match dataplane {
            Some(d) => Some(d),
            None => {
                stored = self
                    .store
                    .get(&ResourceKey::new(Kind::Dataplane, mesh, name))
                    .await
                    .map_err(unavailable)?
                    .and_then(|r| {
                        serde_json::from_value::<DataplaneDoc>(Value::Object(r.spec)).ok()
                    });
                stored.as_ref()
            }
        };
        if let Some(dataplane) = dataplane {
            claims
                .admits_tags(&dataplane_tags(dataplane))
                .map_err(|why| {
                    ConnectError::Unauthenticated(format!(
                        "dataplane {name:?} of mesh {mesh:?}: {why}"
                    ))
                })?;
        }
        Ok(())
    }

    /// Checks the zone token of a zone ingress or egress: signed by global's zone-token key
    /// (whose public half global syncs here), for this zone, with the proxy's scope.
    pub async fn zone_proxy(
        &self,
        kind: ProxyKind,
        name: &str,
        token: Option<&str>,
    ) -> Result<(), ConnectError> {
        if self.dp_auth == DpAuth::None {
            return Ok(());
        }
        let Some(scope) = kind.token_scope() else {
            return Err(ConnectError::Unauthenticated(format!(
                "{kind:?} is not a zone proxy"
            )));
        };
        let what = if kind == ProxyKind::Ingress {
            "zone ingress"
        } else {
            "zone egress"
        };
        let token = token.ok_or_else(|| {
            ConnectError::Unauthenticated(format!(
                "{what} {name:?} presented no zone token; generate one on global with `atollctl generate zone-token --zone {} --scope {scope}`",
                self.zone
            ))
        })?;
        let keys = atoll_cp::tokens::zone_verification_keys(self.store.as_ref())
            .await
            .map_err(|e| ConnectError::Unavailable(e.to_string()))?;
        if keys.is_empty() {
            return Err(ConnectError::Unauthenticated(
                "this zone has no zone-token public key yet: it arrives from the global control plane once the zone is connected".to_string(),
            ));
        }
        let claims =
            atoll_identity::verify_zone_token(token.trim(), &keys, self.clock.now(), self.leeway)
                .map_err(|e| ConnectError::Unauthenticated(format!("invalid zone token: {e}")))?;
        if claims.zone != self.zone {
            return Err(ConnectError::Unauthenticated(format!(
                "the zone token was issued for zone {:?}, but this is zone {:?}",
                claims.zone, self.zone
            )));
        }
        if claims.scope != scope {
            return Err(ConnectError::Unauthenticated(format!(
                "the zone token has scope {}, a {what} needs scope {scope}",
                claims.scope
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_split_at_the_first_dot() {
        assert_eq!(parse_node_id("default.web-1"), Some(("default", "web-1")));
        assert_eq!(
            parse_node_id("default.redis.kuma-demo"),
            Some(("default", "redis.kuma-demo"))
        );
        assert_eq!(parse_node_id("nodot"), None);
        assert_eq!(parse_node_id(".x"), None);
    }
}
