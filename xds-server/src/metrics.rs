//! xDS metrics: responses pushed, ACKs, NACKs, push -> ACK latency, connected proxies.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone, Debug)]
pub struct XdsMetrics {
    pub pushes: IntCounterVec,
    pub acks: IntCounterVec,
    pub nacks: IntCounterVec,
    pub push_to_ack: HistogramVec,
    pub generation: HistogramVec,
    pub connected: IntGauge,
    /// Resources left out of proxy config because they are unusable (a Dataplane whose
    /// address is not an IP, say); the dataplane overview says why.
    pub unusable: IntGauge,
}

const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl XdsMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let by_type = |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["type"]);
        let m = Self {
            pushes: by_type(
                "xds_responses_total",
                "xDS responses sent, by resource type",
            )?,
            acks: by_type(
                "xds_acks_total",
                "xDS responses ACKed by Envoy, by resource type",
            )?,
            nacks: by_type(
                "xds_nacks_total",
                "xDS responses NACKed by Envoy, by resource type",
            )?,
            push_to_ack: HistogramVec::new(
                HistogramOpts::new(
                    "xds_push_to_ack_seconds",
                    "Time from sending an xDS response to Envoy's ACK or NACK",
                )
                .buckets(BUCKETS.to_vec()),
                &["type"],
            )?,
            generation: HistogramVec::new(
                HistogramOpts::new(
                    "xds_generation_seconds",
                    "Time to generate one proxy's configuration snapshot",
                )
                .buckets(BUCKETS.to_vec()),
                &["proxy_type"],
            )?,
            connected: IntGauge::new("xds_connected_proxies", "Proxies with an open ADS stream")?,
            unusable: IntGauge::new(
                "xds_unusable_resources",
                "Resources left out of proxy config because they are unusable (see the dataplane overview)",
            )?,
        };
        registry.register(Box::new(m.pushes.clone()))?;
        registry.register(Box::new(m.acks.clone()))?;
        registry.register(Box::new(m.nacks.clone()))?;
        registry.register(Box::new(m.push_to_ack.clone()))?;
        registry.register(Box::new(m.generation.clone()))?;
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.unusable.clone()))?;
        Ok(m)
    }

    pub fn observe_generation(&self, proxy_type: &str, elapsed: Duration) {
        self.generation
            .with_label_values(&[proxy_type])
            .observe(elapsed.as_secs_f64());
    }
}

/// A short label for a type URL (`Cluster`, `Listener`, ...).
/// Only the types this server serves get their own label: a type URL comes from the proxy, and a
/// label per distinct value would let one grow the metrics without bound.
pub fn type_label(type_url: &str) -> &'static str {
    use crate::session::{CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET};
    match type_url {
        LISTENER => "Listener",
        CLUSTER => "Cluster",
        ENDPOINT => "ClusterLoadAssignment",
        ROUTE => "RouteConfiguration",
        SECRET => "Secret",
        _ => "other",
    }
}
