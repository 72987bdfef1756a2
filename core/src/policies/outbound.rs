//! The policies that shape one outbound of a proxy: their typed merged confs, resolved once by
//! the zone control plane, and the Envoy resources of the outbound as their configurers see
//! them. Adding an outbound policy means one field in [`OutboundConfs`] and one line in each of
//! its two methods.

use serde::{Deserialize, Serialize};

use atoll_envoy_model::{
    Cluster, HttpConnectionManager, Listener, RouteAction, TcpProxy, TypedConfig,
    UpstreamHttpProtocolOptions,
};

use serde::de::DeserializeOwned;

use crate::Kind;
use crate::matching::{Destination, ProxyView, typed_outbound_conf};
use crate::policies::{MeshPolicies, mesh_circuit_breaker, mesh_retry, mesh_timeout};

/// The merged conf of each outbound policy for one destination of one proxy; `None` where no
/// policy of that kind applies (generation keeps Kuma's default policies' values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundConfs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_timeout: Option<mesh_timeout::TimeoutConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_retry: Option<mesh_retry::RetryConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_circuit_breaker: Option<mesh_circuit_breaker::CircuitBreakerConf>,
}

impl OutboundConfs {
    /// Resolves every outbound policy of `policies` for traffic from `proxy` to `destination`.
    pub fn resolve(policies: &MeshPolicies, proxy: &ProxyView, destination: &Destination) -> Self {
        OutboundConfs {
            mesh_timeout: mesh_timeout::conf::outbound(policies, proxy, destination),
            mesh_retry: mesh_retry::conf::outbound(policies, proxy, destination),
            mesh_circuit_breaker: mesh_circuit_breaker::conf::outbound(
                policies,
                proxy,
                destination,
            ),
        }
    }

    pub fn is_empty(&self) -> bool {
        self == &OutboundConfs::default()
    }

    /// Applies every resolved conf to the outbound's resources.
    pub fn configure(&self, out: &mut OutboundResources<'_>) {
        if let Some(conf) = &self.mesh_timeout {
            mesh_timeout::configure::outbound(conf, out);
        }
        if let Some(conf) = &self.mesh_retry {
            mesh_retry::configure::outbound(conf, out);
        }
        if let Some(conf) = &self.mesh_circuit_breaker {
            mesh_circuit_breaker::configure::outbound(conf, out);
        }
    }
}

/// The merged `to` conf of the `kind` policies for traffic from `proxy` to `destination`, read
/// as written (`W`, the kind's `default` type) and turned into the package's typed conf `C`.
pub fn merged_to_conf<W, C>(
    policies: &MeshPolicies,
    kind: Kind,
    proxy: &ProxyView,
    destination: &Destination,
) -> Option<C>
where
    W: DeserializeOwned,
    C: for<'w> From<&'w W>,
{
    let written: W = typed_outbound_conf(policies.of_kind(kind), proxy, destination)?;
    Some(C::from(&written))
}

/// The application protocol of an outbound, which selects a policy's `tcp`, `http` or `grpc`
/// section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundProtocol {
    Tcp,
    /// HTTP/1.1 and HTTP/2.
    Http,
    Grpc,
}

/// The Envoy resources generation built for one outbound (with Kuma's default policies'
/// values), for configurers to change.
#[derive(Debug)]
pub struct OutboundResources<'a> {
    pub protocol: OutboundProtocol,
    pub listener: &'a mut Listener,
    pub cluster: &'a mut Cluster,
}

impl OutboundResources<'_> {
    /// The TCP proxy filters of the listener (TCP outbounds).
    pub fn tcp_proxies(&mut self) -> impl Iterator<Item = &mut TcpProxy> {
        self.listener
            .filter_chains
            .iter_mut()
            .flat_map(|c| c.filters.iter_mut())
            .filter_map(|f| match &mut f.typed_config {
                TypedConfig::TcpProxy(t) => Some(t),
                _ => None,
            })
    }

    /// The HTTP connection managers of the listener (HTTP and gRPC outbounds).
    pub fn http_connection_managers(&mut self) -> impl Iterator<Item = &mut HttpConnectionManager> {
        self.listener
            .filter_chains
            .iter_mut()
            .flat_map(|c| c.filters.iter_mut())
            .filter_map(|f| match &mut f.typed_config {
                TypedConfig::HttpConnectionManager(h) => Some(h.as_mut()),
                _ => None,
            })
    }

    /// Every route's action, in every HTTP connection manager.
    pub fn routes(&mut self) -> impl Iterator<Item = &mut RouteAction> {
        self.http_connection_managers().flat_map(|h| {
            h.route_config
                .virtual_hosts
                .iter_mut()
                .flat_map(|v| v.routes.iter_mut())
                .map(|r| &mut r.route)
        })
    }

    /// The cluster's upstream HTTP options (HTTP and gRPC clusters).
    pub fn upstream_http_options(&mut self) -> Option<&mut UpstreamHttpProtocolOptions> {
        self.cluster
            .typed_extension_protocol_options
            .values_mut()
            .find_map(|t| match t {
                TypedConfig::UpstreamHttpProtocolOptions(o) => Some(o),
                _ => None,
            })
    }
}
