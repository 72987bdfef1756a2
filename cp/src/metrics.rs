//! Prometheus metrics of a control plane: REST API requests and store operation latencies.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Every metric a control plane exports, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    api_requests: IntCounterVec,
    api_latency: HistogramVec,
    store_latency: HistogramVec,
    connections: crate::listener::ConnectionMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("atoll".into()), None)?;
        let api_requests = IntCounterVec::new(
            Opts::new(
                "api_requests_total",
                "REST API requests by method, route and status",
            ),
            &["method", "route", "status"],
        )?;
        let api_latency = HistogramVec::new(
            HistogramOpts::new(
                "api_request_duration_seconds",
                "Server time spent on a REST API request",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method", "route"],
        )?;
        let store_latency = HistogramVec::new(
            HistogramOpts::new(
                "store_operation_duration_seconds",
                "Latency of store operations by operation and backend",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation", "backend"],
        )?;
        registry.register(Box::new(api_requests.clone()))?;
        registry.register(Box::new(api_latency.clone()))?;
        registry.register(Box::new(store_latency.clone()))?;
        let connections = crate::listener::ConnectionMetrics::register(&registry)?;
        Ok(Self {
            registry,
            api_requests,
            api_latency,
            store_latency,
            connections,
        })
    }

    /// The registry, for other components' metrics.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Connection metrics of every listener (API, xDS, KDS).
    pub fn connections(&self) -> crate::listener::ConnectionMetrics {
        self.connections.clone()
    }

    pub fn observe_api(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.api_requests
            .with_label_values(&[method, route, &status.to_string()])
            .inc();
        self.api_latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn observe_store(&self, operation: &str, backend: &str, elapsed: Duration) {
        self.store_latency
            .with_label_values(&[operation, backend])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            return format!("# metrics encoding failed: {e}\n");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Standard methods get their own label; any other (HTTP allows any token) is `other`, so a
/// client cannot grow the metrics without bound by inventing methods.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "PUT" => "PUT",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_observed_metrics_as_prometheus_text() {
        let m = Metrics::new().expect("metrics");
        m.observe_api(
            "GET",
            "/meshes/{mesh}/{kind}/{name}",
            200,
            Duration::from_micros(300),
        );
        m.observe_store("get", "sqlite", Duration::from_micros(80));
        let text = m.render();
        assert!(text.contains(
            "atoll_api_requests_total{method=\"GET\",route=\"/meshes/{mesh}/{kind}/{name}\",status=\"200\"} 1"
        ), "{text}");
        assert!(
            text.contains("atoll_store_operation_duration_seconds_bucket"),
            "{text}"
        );
    }
}
