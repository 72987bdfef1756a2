//! The kind registry: every resource kind Atoll knows, with its Kuma name, REST plural, scope and
//! validator. Adding a kind means adding one line to `kinds!` below.

use std::fmt;

use serde_json::Value;

use crate::path::FieldPath;
use crate::validate::{Validate, Violations, parse_and_validate};

/// Whether a kind lives inside a mesh or beside meshes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Global,
    Mesh,
}

fn validate_as<T: serde::de::DeserializeOwned + Validate>(doc: &Value, v: &mut Violations) {
    let _ = parse_and_validate::<T>(doc, &FieldPath::root(), v);
}

macro_rules! kinds {
    ($($variant:ident => $name:literal, $plural:literal, $scope:ident, $doc:path;)+) => {
        /// A resource kind, named as in Kuma (`type:` in universal YAML).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kind {
            $($variant,)+
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)+];

            /// The name used in `type:` (`MeshTimeout`).
            pub fn name(self) -> &'static str {
                match self { $(Kind::$variant => $name,)+ }
            }

            /// The plural used in REST paths and by atollctl (`meshtimeouts`).
            pub fn plural(self) -> &'static str {
                match self { $(Kind::$variant => $plural,)+ }
            }

            pub fn scope(self) -> Scope {
                match self { $(Kind::$variant => Scope::$scope,)+ }
            }

            /// Checks the kind-specific part of a document (every top-level field but the
            /// envelope: `type`, `name`, `mesh`, `labels`, timestamps).
            pub fn validate_spec(self, doc: &Value, v: &mut Violations) {
                let fixed = crate::quirks::typed_view(self, doc, v);
                let doc = fixed.as_ref().unwrap_or(doc);
                match self { $(Kind::$variant => validate_as::<$doc>(doc, v),)+ }
            }
        }
    };
}

kinds! {
    Mesh => "Mesh", "meshes", Global, crate::kinds::mesh::MeshDoc;
    Zone => "Zone", "zones", Global, crate::kinds::zone::ZoneDoc;
    ZoneIngress => "ZoneIngress", "zoneingresses", Global, crate::kinds::zone_ingress::ZoneIngressDoc;
    ZoneEgress => "ZoneEgress", "zoneegresses", Global, crate::kinds::zone_egress::ZoneEgressDoc;
    GlobalSecret => "GlobalSecret", "global-secrets", Global, crate::kinds::secret::SecretDoc;
    HostnameGenerator => "HostnameGenerator", "hostnamegenerators", Global, crate::kinds::hostname_generator::HostnameGeneratorDoc;
    Dataplane => "Dataplane", "dataplanes", Mesh, crate::kinds::dataplane::DataplaneDoc;
    Secret => "Secret", "secrets", Mesh, crate::kinds::secret::SecretDoc;
    MeshService => "MeshService", "meshservices", Mesh, crate::kinds::mesh_service::MeshServiceDoc;
    MeshExternalService => "MeshExternalService", "meshexternalservices", Mesh, crate::kinds::mesh_external_service::MeshExternalServiceDoc;
    MeshMultiZoneService => "MeshMultiZoneService", "meshmultizoneservices", Mesh, crate::kinds::mesh_multizone_service::MeshMultiZoneServiceDoc;
    MeshTrafficPermission => "MeshTrafficPermission", "meshtrafficpermissions", Mesh, crate::policies::mesh_traffic_permission::MeshTrafficPermissionDoc;
    MeshTimeout => "MeshTimeout", "meshtimeouts", Mesh, crate::policies::mesh_timeout::MeshTimeoutDoc;
    MeshRetry => "MeshRetry", "meshretries", Mesh, crate::policies::mesh_retry::MeshRetryDoc;
    MeshHTTPRoute => "MeshHTTPRoute", "meshhttproutes", Mesh, crate::policies::mesh_http_route::MeshHttpRouteDoc;
    MeshTCPRoute => "MeshTCPRoute", "meshtcproutes", Mesh, crate::policies::mesh_tcp_route::MeshTcpRouteDoc;
    MeshCircuitBreaker => "MeshCircuitBreaker", "meshcircuitbreakers", Mesh, crate::policies::mesh_circuit_breaker::MeshCircuitBreakerDoc;
    MeshHealthCheck => "MeshHealthCheck", "meshhealthchecks", Mesh, crate::policies::mesh_health_check::MeshHealthCheckDoc;
    MeshRateLimit => "MeshRateLimit", "meshratelimits", Mesh, crate::policies::mesh_rate_limit::MeshRateLimitDoc;
    MeshAccessLog => "MeshAccessLog", "meshaccesslogs", Mesh, crate::policies::mesh_access_log::MeshAccessLogDoc;
    MeshTrace => "MeshTrace", "meshtraces", Mesh, crate::policies::mesh_trace::MeshTraceDoc;
    MeshMetric => "MeshMetric", "meshmetrics", Mesh, crate::policies::mesh_metric::MeshMetricDoc;
    MeshLoadBalancingStrategy => "MeshLoadBalancingStrategy", "meshloadbalancingstrategies", Mesh, crate::policies::mesh_load_balancing_strategy::MeshLoadBalancingStrategyDoc;
    MeshFaultInjection => "MeshFaultInjection", "meshfaultinjections", Mesh, crate::policies::mesh_fault_injection::MeshFaultInjectionDoc;
    MeshPassthrough => "MeshPassthrough", "meshpassthroughs", Mesh, crate::policies::mesh_passthrough::MeshPassthroughDoc;
    MeshProxyPatch => "MeshProxyPatch", "meshproxypatches", Mesh, crate::policies::mesh_proxy_patch::MeshProxyPatchDoc;
    MeshTLS => "MeshTLS", "meshtlses", Mesh, crate::policies::mesh_tls::MeshTlsDoc;
}

impl Kind {
    /// Looks a kind up by its `type:` name.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == name)
    }

    /// Looks a kind up by what an operator types: the plural (`meshtimeouts`), the singular in
    /// any case (`meshtimeout`, `MeshTimeout`).
    pub fn from_cli_name(name: &str) -> Option<Kind> {
        let lower = name.to_ascii_lowercase();
        Kind::ALL
            .iter()
            .copied()
            .find(|k| k.plural() == lower || k.name().to_ascii_lowercase() == lower)
    }

    /// Looks a kind up by its REST plural.
    pub fn from_plural(plural: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.plural() == plural)
    }

    pub fn is_mesh_scoped(self) -> bool {
        self.scope() == Scope::Mesh
    }

    /// The targetRef policies (those with `spec.targetRef`).
    pub fn is_policy(self) -> bool {
        self.name().starts_with("Mesh")
            && !matches!(
                self,
                Kind::Mesh
                    | Kind::MeshService
                    | Kind::MeshExternalService
                    | Kind::MeshMultiZoneService
            )
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_plurals_are_unique_and_resolve() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_name(k.name()), Some(*k));
            assert_eq!(Kind::from_plural(k.plural()), Some(*k));
            assert_eq!(Kind::from_cli_name(&k.name().to_lowercase()), Some(*k));
        }
        assert_eq!(Kind::ALL.iter().filter(|k| k.is_policy()).count(), 16);
    }
}
