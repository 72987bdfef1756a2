//! The policies Kuma creates with a new mesh.
//!
//! Source: Kuma 2.14.3, `pkg/defaults/mesh/` (`mesh.go` `EnsureDefaultMeshResources`,
//! `meshtimeout.go`, `meshcircuitbreaker.go`, `meshretry.go`) and the timeout constants of
//! `pkg/plugins/policies/core/defaults/consts.go`. Names are `<prefix>-<mesh>` (on Kubernetes Kuma
//! adds `.<system namespace>`). `skipCreatingInitialPolicies` holds kind names (`MeshTimeout`,
//! `MeshCircuitBreaker`, `MeshRetry`) or `*` for none at all.
//!
//! No MeshTrafficPermission is created: Kuma's `allow-all-<mesh>` is a legacy TrafficPermission
//! (with `route-all-<mesh>`, a TrafficRoute), created only when
//! `KUMA_DEFAULTS_CREATE_MESH_ROUTING_RESOURCES` is true (default false); Atoll has no legacy
//! policies. A new mesh with mTLS therefore refuses all traffic until a MeshTrafficPermission
//! allows it (see [`crate::traffic_permission`]).
//!
//! Labels are left empty: the control plane stamps `kuma.io/origin` (and zone labels) as for any
//! resource it creates itself.

use serde_json::{Map, Value, json};

use crate::kind::Kind;
use crate::kinds::mesh::MeshDoc;
use crate::resource::Resource;

/// The default policies for a mesh named `mesh`, minus those `skipCreatingInitialPolicies` of
/// `mesh_doc` skips (by kind name, or all with `*`).
pub fn default_policies_for_new_mesh(mesh: &str, mesh_doc: &MeshDoc) -> Vec<Resource> {
    let skipped = &mesh_doc.skip_creating_initial_policies;
    if skipped.iter().any(|s| s == "*") {
        return Vec::new();
    }
    let all = [
        (
            Kind::MeshTimeout,
            "mesh-gateways-timeout-all",
            mesh_gateways_timeout(),
        ),
        (Kind::MeshTimeout, "mesh-timeout-all", mesh_timeout()),
        (
            Kind::MeshCircuitBreaker,
            "mesh-circuit-breaker-all",
            mesh_circuit_breaker(),
        ),
        (Kind::MeshRetry, "mesh-retry-all", mesh_retry()),
    ];
    all.into_iter()
        .filter(|(kind, _, _)| !skipped.iter().any(|s| s == kind.name()))
        .map(|(kind, prefix, spec)| {
            let mut fields = Map::new();
            fields.insert("spec".into(), spec);
            Resource {
                kind,
                mesh: mesh.to_string(),
                name: format!("{prefix}-{mesh}"),
                labels: Default::default(),
                spec: fields,
                version: 0,
                creation_time: None,
                modification_time: None,
            }
        })
        .collect()
}

/// `mesh-gateways-timeout-all`: gateways only. Inbound: idle 5m, stream idle 5s, request headers
/// 500ms (`DefaultGateway*`); outbound: idle 1h (`DefaultIdleTimeout`), stream idle 5s.
fn mesh_gateways_timeout() -> Value {
    json!({
        "targetRef": {"kind": "Mesh", "proxyTypes": ["Gateway"]},
        "from": [{
            "targetRef": {"kind": "Mesh"},
            "default": {
                "idleTimeout": "5m0s",
                "http": {"streamIdleTimeout": "5s", "requestHeadersTimeout": "500ms"}
            }
        }],
        "to": [{
            "targetRef": {"kind": "Mesh"},
            "default": {"idleTimeout": "1h0m0s", "http": {"streamIdleTimeout": "5s"}}
        }]
    })
}

/// `mesh-timeout-all`: sidecars only. Inbound: twice the outbound connect (10s), idle (2h) and
/// stream idle (1h) timeouts, no request timeout or stream duration limit (0s); outbound: connect
/// 5s, idle 1h, request 15s, stream idle 30m (`DefaultConnectTimeout`, `DefaultIdleTimeout`,
/// `DefaultRequestTimeout`, `DefaultStreamIdleTimeout`).
fn mesh_timeout() -> Value {
    json!({
        "targetRef": {"kind": "Mesh", "proxyTypes": ["Sidecar"]},
        "from": [{
            "targetRef": {"kind": "Mesh"},
            "default": {
                "connectionTimeout": "10s",
                "idleTimeout": "2h0m0s",
                "http": {"requestTimeout": "0s", "streamIdleTimeout": "1h0m0s", "maxStreamDuration": "0s"}
            }
        }],
        "to": [{
            "targetRef": {"kind": "Mesh"},
            "default": {
                "connectionTimeout": "5s",
                "idleTimeout": "1h0m0s",
                "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m0s"}
            }
        }]
    })
}

/// `mesh-circuit-breaker-all`: connection limits 1024 connections, 1024 pending requests, 1024
/// requests, 3 retries to every destination; no outlier detection.
fn mesh_circuit_breaker() -> Value {
    json!({
        "targetRef": {"kind": "Mesh"},
        "to": [{
            "targetRef": {"kind": "Mesh"},
            "default": {
                "connectionLimits": {
                    "maxConnections": 1024,
                    "maxPendingRequests": 1024,
                    "maxRequests": 1024,
                    "maxRetries": 3
                }
            }
        }]
    })
}

/// `mesh-retry-all`: TCP 5 connect attempts; HTTP and gRPC 5 retries, 16s per try, back-off
/// 25ms (`DefaultBaseInterval`) to 250ms.
fn mesh_retry() -> Value {
    let http = json!({
        "numRetries": 5,
        "perTryTimeout": "16s",
        "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}
    });
    json!({
        "targetRef": {"kind": "Mesh"},
        "to": [{
            "targetRef": {"kind": "Mesh"},
            "default": {"tcp": {"maxConnectAttempt": 5}, "http": http.clone(), "grpc": http}
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh(skip: &[&str]) -> MeshDoc {
        MeshDoc {
            skip_creating_initial_policies: skip.iter().map(|s| s.to_string()).collect(),
            ..MeshDoc::default()
        }
    }

    #[test]
    fn creates_kumas_defaults_and_each_one_validates() {
        let created = default_policies_for_new_mesh("demo", &mesh(&[]));
        let names: Vec<_> = created.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "mesh-gateways-timeout-all-demo",
                "mesh-timeout-all-demo",
                "mesh-circuit-breaker-all-demo",
                "mesh-retry-all-demo"
            ]
        );
        for r in &created {
            assert_eq!(r.mesh, "demo");
            let back = Resource::from_value(r.to_value())
                .unwrap_or_else(|v| panic!("{} refused: {v}", r.name));
            assert_eq!(back.kind, r.kind);
        }
        assert!(
            created
                .iter()
                .all(|r| r.kind != Kind::MeshTrafficPermission)
        );
    }

    #[test]
    fn honors_skip_creating_initial_policies() {
        assert!(default_policies_for_new_mesh("demo", &mesh(&["*"])).is_empty());
        let kinds: Vec<_> =
            default_policies_for_new_mesh("demo", &mesh(&["MeshTimeout", "MeshRetry"]))
                .into_iter()
                .map(|r| r.kind)
                .collect();
        assert_eq!(kinds, [Kind::MeshCircuitBreaker]);
    }
}
