//! MeshTimeout applied to an outbound's Envoy resources (Kuma's `plugin/v1alpha1`, outbound
//! side). Fields the conf leaves unset keep what generation wrote (Kuma's default policy).

use atoll_envoy_model::CommonHttpProtocolOptions;

use crate::policies::OutboundResources;

use super::TimeoutConf;

/// `connectionTimeout` is the cluster's `connect_timeout`; `idleTimeout` the TCP proxy's, the
/// HTTP connection manager's and the upstream HTTP connections' idle timeout;
/// `http.requestTimeout` the route `timeout`; `http.streamIdleTimeout` the connection manager's
/// `stream_idle_timeout`. The other `http` fields are not applied yet.
pub fn outbound(conf: &TimeoutConf, out: &mut OutboundResources<'_>) {
    if let Some(t) = conf.connection_timeout {
        out.cluster.connect_timeout = t;
    }
    if let Some(idle) = conf.idle_timeout {
        for tcp in out.tcp_proxies() {
            tcp.idle_timeout = Some(idle);
        }
        for hcm in out.http_connection_managers() {
            hcm.common_http_protocol_options = Some(CommonHttpProtocolOptions {
                idle_timeout: Some(idle),
            });
        }
        if let Some(options) = out.upstream_http_options() {
            options.common_http_protocol_options = Some(CommonHttpProtocolOptions {
                idle_timeout: Some(idle),
            });
        }
    }
    if let Some(t) = conf.http.request_timeout {
        for route in out.routes() {
            route.timeout = Some(t);
        }
    }
    if let Some(t) = conf.http.stream_idle_timeout {
        for hcm in out.http_connection_managers() {
            hcm.stream_idle_timeout = Some(t);
        }
    }
}
