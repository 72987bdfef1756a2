//! Simulated proxies: many delta ADS clients in one process, each speaking the protocol as Envoy
//! does, over real gRPC + TLS to a zone control plane.
//!
//! One proxy is one tokio task and one gRPC stream. It sends the node on its first request,
//! subscribes to clusters (wildcard), then to the endpoints, secrets and routes its clusters name
//! (by name, as Envoy does), then to listeners (wildcard) and what they name; it ACKs every
//! response with its nonce, or NACKs it when armed to. It decodes what it receives just enough
//! to tell whether a change reached it: each cluster's `connect_timeout`, and whether the
//! inbound listener's RBAC admits anyone.
//!
//! A [`Fleet`] is what the proxies share with the benchmark: how many reached their first full
//! config, and the current [`Expectation`] (a marker to look for, and the time the last affected
//! proxy ACKed config showing it).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use atoll_backoff::Backoff;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub use atoll_xds::type_urls::{
    CLUSTER, CLUSTER_LOAD_ASSIGNMENT as ENDPOINT, LISTENER, ROUTE_CONFIGURATION as ROUTE, SECRET,
};
use atoll_xds::type_urls::{
    DOWNSTREAM_TLS_CONTEXT as DOWNSTREAM_TLS_TYPE, HTTP_CONNECTION_MANAGER as HCM_TYPE,
    HTTP_RBAC as HTTP_RBAC_TYPE, UPSTREAM_TLS_CONTEXT as UPSTREAM_TLS_TYPE,
};

/// The name the generator gives the proxy's own certificate (`atoll_xds::generate`).
const IDENTITY_SECRET: &str = "identity_cert";

/// What a change should make visible in the config of the proxies it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// The cluster of `service` has this `connect_timeout` (concerns proxies reaching `service`).
    ConnectTimeout { service: String, ms: u64 },
    /// The inbound listener's RBAC admits clients (`true`) or nobody (`false`); concerns all.
    InboundAllows(bool),
}

/// One proxy as the benchmark registered it.
#[derive(Debug, Clone)]
pub struct ProxySpec {
    /// `<mesh>.<dataplane name>`.
    pub node_id: String,
    /// The services of its outbounds.
    pub outbound_services: Vec<String>,
    /// Listeners its full config has: one inbound plus one per outbound.
    pub expected_listeners: usize,
}

impl ProxySpec {
    pub fn concerned_by(&self, marker: &Marker) -> bool {
        match marker {
            Marker::ConnectTimeout { service, .. } => {
                self.outbound_services.iter().any(|s| s == service)
            }
            Marker::InboundAllows(_) => true,
        }
    }
}

/// A change being waited for: how many concerned proxies ACKed config showing it, and when the
/// last one did (microseconds since the fleet's start).
#[derive(Debug)]
pub struct Expectation {
    pub id: u64,
    pub marker: Marker,
    done: AtomicUsize,
    last_us: AtomicU64,
}

/// State shared by the benchmark and its simulated proxies.
#[derive(Debug)]
pub struct Fleet {
    base: Instant,
    ready: AtomicUsize,
    ready_last_us: AtomicU64,
    failures: AtomicUsize,
    first_failure: Mutex<Option<String>>,
    expectation: RwLock<Option<Arc<Expectation>>>,
    responses: AtomicU64,
    nacks: AtomicU64,
    reconnects: AtomicU64,
    first_reconnect: Mutex<Option<String>>,
    next_id: AtomicU64,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            base: Instant::now(),
            ready: AtomicUsize::new(0),
            ready_last_us: AtomicU64::new(0),
            failures: AtomicUsize::new(0),
            first_failure: Mutex::new(None),
            expectation: RwLock::new(None),
            responses: AtomicU64::new(0),
            nacks: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            first_reconnect: Mutex::new(None),
            next_id: AtomicU64::new(1),
        }
    }
}

impl Fleet {
    /// Microseconds since the fleet was made.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn ready(&self) -> usize {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn responses(&self) -> u64 {
        self.responses.load(Ordering::Relaxed)
    }

    pub fn nacks(&self) -> u64 {
        self.nacks.load(Ordering::Relaxed)
    }

    /// Streams that had to be opened again, and why the first one did.
    pub fn reconnects(&self) -> (u64, Option<String>) {
        (
            self.reconnects.load(Ordering::SeqCst),
            self.first_reconnect.lock().ok().and_then(|f| f.clone()),
        )
    }

    fn reconnect(&self, why: String) {
        if self.reconnects.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("  a simulated proxy reconnects: {why}");
        }
        if let Ok(mut first) = self.first_reconnect.lock() {
            first.get_or_insert(why);
        }
    }

    fn fail(&self, message: String) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut first) = self.first_failure.lock() {
            first.get_or_insert(message);
        }
    }

    /// An error when any proxy's stream failed.
    pub fn check(&self) -> Result<()> {
        let failures = self.failures.load(Ordering::SeqCst);
        if failures > 0 {
            let first = self
                .first_failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_default();
            bail!("{failures} simulated proxies failed; the first: {first}");
        }
        Ok(())
    }

    /// Starts waiting for `marker`: proxies report to the returned expectation from now on.
    pub fn expect(&self, marker: Marker) -> Arc<Expectation> {
        let exp = Arc::new(Expectation {
            id: self.next_id.fetch_add(1, Ordering::SeqCst),
            marker,
            done: AtomicUsize::new(0),
            last_us: AtomicU64::new(0),
        });
        if let Ok(mut cur) = self.expectation.write() {
            *cur = Some(exp.clone());
        }
        exp
    }

    /// Waits (at most `limit`) until `target` proxies reached their first full config; returns
    /// the time from `since_us` to the last of them. Prints progress every few seconds.
    pub async fn wait_ready(&self, target: usize, since_us: u64, limit: Duration) -> Result<f64> {
        let started = Instant::now();
        let mut last_print = Instant::now();
        loop {
            self.check()?;
            let ready = self.ready();
            if ready >= target {
                let last = self.ready_last_us.load(Ordering::SeqCst);
                return Ok(last.saturating_sub(since_us) as f64 / 1e6);
            }
            if started.elapsed() > limit {
                bail!(
                    "only {ready} of {target} simulated proxies got their full config within {limit:?}"
                );
            }
            if last_print.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "  ... {ready}/{target} proxies have their full config ({:.0} s)",
                    started.elapsed().as_secs_f64()
                );
                last_print = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (at most `limit`) until `target` proxies ACKed config showing `exp`'s marker; returns
    /// the time from `since_us` to the last ACK, in milliseconds.
    pub async fn wait_for(
        &self,
        exp: &Expectation,
        target: usize,
        since_us: u64,
        limit: Duration,
    ) -> Result<f64> {
        let started = Instant::now();
        loop {
            self.check()?;
            let done = exp.done.load(Ordering::SeqCst);
            if done >= target {
                let last = exp.last_us.load(Ordering::SeqCst);
                return Ok(last.saturating_sub(since_us) as f64 / 1e3);
            }
            if started.elapsed() > limit {
                bail!(
                    "change {:?}: only {done} of {target} concerned proxies ACKed it within {limit:?}",
                    exp.marker
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// A TLS gRPC channel (one HTTP/2 connection) to an xDS server on loopback that presents a
/// certificate signed by `ca_pem` for `localhost`.
pub async fn connect_channel(port: u16, ca_pem: &str) -> Result<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .context("xDS endpoint")?
        .tls_config(tls)
        .context("xDS TLS configuration")?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10));
    tokio::time::timeout(Duration::from_secs(20), endpoint.connect())
        .await
        .map_err(|_| anyhow::anyhow!("no TLS connection to the xDS server on :{port} within 20 s"))?
        .with_context(|| format!("connecting to the xDS server on :{port}"))
}

/// Per-proxy controls the benchmark keeps.
#[derive(Debug, Default)]
pub struct ProxyControl {
    /// NACK the next response that carries a cluster, then clear.
    pub nack_next_cluster: AtomicBool,
}

/// Starts one simulated proxy on `channel`. It waits for a permit of `connecting` before opening
/// its stream and holds it until its first full config (bounding concurrent start-ups).
pub fn spawn_proxy(
    tasks: &mut tokio::task::JoinSet<()>,
    fleet: Arc<Fleet>,
    channel: Channel,
    spec: Arc<ProxySpec>,
    control: Arc<ProxyControl>,
    connecting: Arc<Semaphore>,
) {
    tasks.spawn(async move {
        if let Err(e) = run_proxy(&fleet, channel, &spec, &control, connecting).await {
            fleet.fail(format!("{}: {e:#}", spec.node_id));
        }
    });
}

/// What one proxy holds, reduced to what the benchmark checks.
#[derive(Debug, Default)]
struct ProxyState {
    /// Cluster name -> (connect timeout in ms, EDS name, secret names).
    clusters: HashMap<String, ClusterView>,
    listeners: HashMap<String, ListenerView>,
    /// Subscriptions by name (EDS, SDS, RDS) and which of them got an answer.
    named: HashMap<&'static str, NamedType>,
    cds_acked: bool,
    lds_requested: bool,
    lds_answered: bool,
    ready: bool,
    satisfied: u64,
}

#[derive(Debug, Default)]
struct ClusterView {
    connect_timeout_ms: u64,
    eds_name: Option<String>,
    secrets: Vec<String>,
}

#[derive(Debug, Default)]
struct ListenerView {
    /// `Some(admits)` for a listener with an HTTP RBAC filter.
    rbac_admits: Option<bool>,
    secrets: Vec<String>,
    routes: Vec<String>,
}

#[derive(Debug, Default)]
struct NamedType {
    subscribed: BTreeSet<String>,
    answered: BTreeSet<String>,
}

impl ProxyState {
    fn wanted(&self) -> [(&'static str, BTreeSet<String>); 3] {
        let mut eds = BTreeSet::new();
        let mut sds = BTreeSet::new();
        let mut rds = BTreeSet::new();
        for c in self.clusters.values() {
            eds.extend(c.eds_name.iter().cloned());
            sds.extend(c.secrets.iter().cloned());
        }
        for l in self.listeners.values() {
            sds.extend(l.secrets.iter().cloned());
            rds.extend(l.routes.iter().cloned());
        }
        [(SECRET, sds), (ENDPOINT, eds), (ROUTE, rds)]
    }

    fn full(&self, spec: &ProxySpec) -> bool {
        self.cds_acked
            && self.lds_answered
            && self.listeners.len() >= spec.expected_listeners
            && self
                .named
                .values()
                .all(|t| t.subscribed.iter().all(|n| t.answered.contains(n)))
            && self
                .named
                .get(SECRET)
                .is_some_and(|t| t.answered.contains(IDENTITY_SECRET))
    }

    fn shows(&self, marker: &Marker) -> bool {
        match marker {
            Marker::ConnectTimeout { service, ms } => self
                .clusters
                .get(service)
                .is_some_and(|c| c.connect_timeout_ms == *ms),
            Marker::InboundAllows(allows) => {
                let mut inbound = self.listeners.values().filter_map(|l| l.rbac_admits);
                let first = inbound.next();
                first == Some(*allows) && inbound.all(|a| a == *allows)
            }
        }
    }
}

fn request(type_url: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: type_url.to_string(),
        ..Default::default()
    }
}

/// Runs one proxy: like Envoy, it opens its ADS stream again (with backoff) when the stream
/// cannot open or fails; each reconnect is counted. It gives up after `MAX_ATTEMPTS` failures
/// in a row without reaching its full config.
async fn run_proxy(
    fleet: &Fleet,
    channel: Channel,
    spec: &ProxySpec,
    control: &ProxyControl,
    connecting: Arc<Semaphore>,
) -> Result<()> {
    const MAX_ATTEMPTS: u32 = 12;
    let mut permit = Some(
        connecting
            .acquire_owned()
            .await
            .context("start-up permits closed")?,
    );
    let mut state = ProxyState::default();
    let mut failures = 0u32;
    // Delays in [0.5 s, 1 s] at first, doubling up to [4 s, 8 s].
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8)).with_jitter();
    loop {
        let was_ready = state.ready;
        let error = match stream_once(
            fleet,
            channel.clone(),
            spec,
            control,
            &mut state,
            &mut permit,
        )
        .await
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        failures = if state.ready && !was_ready {
            backoff.reset();
            1
        } else {
            failures + 1
        };
        if failures >= MAX_ATTEMPTS {
            return Err(error.context(format!("{failures} attempts in a row failed")));
        }
        fleet.reconnect(format!("{}: {error:#}", spec.node_id));
        // Like Envoy's backoff: exponential from 500 ms, capped, with jitter.
        tokio::time::sleep(backoff.next_delay()).await;
        // A new stream starts from nothing (as a restarted Envoy); readiness and the changes
        // already seen are kept.
        state = ProxyState {
            ready: state.ready,
            satisfied: state.satisfied,
            ..ProxyState::default()
        };
    }
}

/// One ADS stream, until it fails.
async fn stream_once(
    fleet: &Fleet,
    channel: Channel,
    spec: &ProxySpec,
    control: &ProxyControl,
    state: &mut ProxyState,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<()> {
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(8);
    let send = |req: DeltaDiscoveryRequest| {
        let tx = tx.clone();
        async move {
            tx.send(req)
                .await
                .map_err(|_| anyhow::anyhow!("the request stream closed"))
        }
    };
    // Envoy's first request: clusters, wildcard, with the node.
    let mut first = request(CLUSTER);
    first.node = Some(Node {
        id: spec.node_id.clone(),
        cluster: spec.node_id.clone(),
        ..Default::default()
    });
    send(first).await?;
    let mut client = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let response = tokio::time::timeout(
        Duration::from_secs(60),
        client.delta_aggregated_resources(ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the ADS stream did not open within 60 s"))?
    .context("opening the ADS stream")?;
    let mut inbound = response.into_inner();
    loop {
        let message = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => bail!("the server closed the ADS stream"),
            Err(status) => bail!("the ADS stream failed: {status}"),
        };
        fleet.responses.fetch_add(1, Ordering::Relaxed);
        if !message.resources.is_empty()
            && message.type_url == CLUSTER
            && control.nack_next_cluster.swap(false, Ordering::SeqCst)
        {
            // Refuse it as Envoy does: the previous config stays.
            let mut nack = request(&message.type_url);
            nack.response_nonce = message.nonce.clone();
            nack.error_detail = Some(RpcStatus {
                code: 3,
                message: "atoll-bench: NACK on demand".into(),
                details: vec![],
            });
            send(nack).await?;
            fleet.nacks.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        apply(state, &message)
            .with_context(|| format!("decoding a {} response", message.type_url))?;
        let mut ack = request(&message.type_url);
        ack.response_nonce = message.nonce.clone();
        send(ack).await?;
        if message.type_url == CLUSTER {
            state.cds_acked = true;
        }
        if message.type_url == LISTENER {
            state.lds_answered = true;
        }
        // Follow what clusters and listeners name, as Envoy does.
        for (type_url, want) in state.wanted() {
            let named = state.named.entry(type_url).or_default();
            let add: Vec<String> = want.difference(&named.subscribed).cloned().collect();
            let drop: Vec<String> = named.subscribed.difference(&want).cloned().collect();
            if add.is_empty() && drop.is_empty() {
                continue;
            }
            for n in &drop {
                named.answered.remove(n);
            }
            named.subscribed = want;
            let mut req = request(type_url);
            req.resource_names_subscribe = add;
            req.resource_names_unsubscribe = drop;
            send(req).await?;
        }
        if state.cds_acked && !state.lds_requested {
            state.lds_requested = true;
            send(request(LISTENER)).await?;
        }
        let now = fleet.now_us();
        if !state.ready && state.full(spec) {
            state.ready = true;
            fleet.ready_last_us.fetch_max(now, Ordering::SeqCst);
            fleet.ready.fetch_add(1, Ordering::SeqCst);
            drop(permit.take());
        }
        let current = fleet.expectation.read().ok().and_then(|e| e.clone());
        if let Some(exp) = current
            && exp.id > state.satisfied
            && state.ready
            && spec.concerned_by(&exp.marker)
            && state.shows(&exp.marker)
        {
            state.satisfied = exp.id;
            exp.last_us.fetch_max(now, Ordering::SeqCst);
            exp.done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Updates the proxy's view with one response.
fn apply(state: &mut ProxyState, message: &DeltaDiscoveryResponse) -> Result<()> {
    let type_url = message.type_url.as_str();
    for r in &message.resources {
        let Some(any) = &r.resource else {
            continue;
        };
        match type_url {
            CLUSTER => {
                let c = Cluster::decode(any.value.as_slice())?;
                state.clusters.insert(r.name.clone(), cluster_view(&c)?);
            }
            LISTENER => {
                let l = Listener::decode(any.value.as_slice())?;
                state.listeners.insert(r.name.clone(), listener_view(&l)?);
            }
            _ => {}
        }
    }
    for name in &message.removed_resources {
        match type_url {
            CLUSTER => {
                state.clusters.remove(name);
            }
            LISTENER => {
                state.listeners.remove(name);
            }
            _ => {}
        }
    }
    if let Some(named) = state.named.get_mut(type_url) {
        // An answer (a resource or its removal) resolves a subscription.
        for r in &message.resources {
            named.answered.insert(r.name.clone());
        }
        for name in &message.removed_resources {
            named.answered.insert(name.clone());
        }
    }
    Ok(())
}

fn tls_secrets(common: Option<&CommonTlsContext>, out: &mut Vec<String>) {
    let Some(common) = common else {
        return;
    };
    out.extend(
        common
            .tls_certificate_sds_secret_configs
            .iter()
            .map(|s| s.name.clone()),
    );
    match &common.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(s)) => {
            out.push(s.name.clone())
        }
        Some(ValidationContextType::CombinedValidationContext(c)) => {
            out.extend(
                c.validation_context_sds_secret_config
                    .iter()
                    .map(|s| s.name.clone()),
            );
        }
        _ => {}
    }
}

fn cluster_view(c: &Cluster) -> Result<ClusterView> {
    let timeout = c.connect_timeout.as_ref().map_or(0, |d| {
        u64::try_from(d.seconds).unwrap_or(0) * 1000
            + u64::try_from(d.nanos).unwrap_or(0) / 1_000_000
    });
    let eds_name = c.eds_cluster_config.as_ref().map(|e| {
        if e.service_name.is_empty() {
            c.name.clone()
        } else {
            e.service_name.clone()
        }
    });
    let mut secrets = Vec::new();
    if let Some(SocketConfig::TypedConfig(any)) = c
        .transport_socket
        .as_ref()
        .and_then(|t| t.config_type.as_ref())
        && any.type_url == UPSTREAM_TLS_TYPE
    {
        let tls = UpstreamTlsContext::decode(any.value.as_slice())?;
        tls_secrets(tls.common_tls_context.as_ref(), &mut secrets);
    }
    Ok(ClusterView {
        connect_timeout_ms: timeout,
        eds_name,
        secrets,
    })
}

fn listener_view(l: &Listener) -> Result<ListenerView> {
    let mut view = ListenerView::default();
    for chain in &l.filter_chains {
        if let Some(SocketConfig::TypedConfig(any)) = chain
            .transport_socket
            .as_ref()
            .and_then(|t| t.config_type.as_ref())
            && any.type_url == DOWNSTREAM_TLS_TYPE
        {
            let tls = DownstreamTlsContext::decode(any.value.as_slice())?;
            tls_secrets(tls.common_tls_context.as_ref(), &mut view.secrets);
        }
        for filter in &chain.filters {
            let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
                continue;
            };
            if any.type_url != HCM_TYPE {
                continue;
            }
            let hcm = HttpConnectionManager::decode(any.value.as_slice())?;
            if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                view.routes.push(rds.route_config_name.clone());
            }
            for f in &hcm.http_filters {
                if let Some(HttpFilterConfig::TypedConfig(any)) = &f.config_type
                    && any.type_url == HTTP_RBAC_TYPE
                {
                    view.rbac_admits = Some(rbac_admits(any)?);
                }
            }
        }
    }
    Ok(view)
}

/// Whether an HTTP RBAC filter admits any client: an ALLOW config with at least one policy (an
/// ALLOW config without policies denies everyone).
fn rbac_admits(any: &Any) -> Result<bool> {
    let rbac = HttpRbac::decode(any.value.as_slice())?;
    Ok(match rbac.rules {
        None => true,
        Some(rules) => {
            // Action 0 is ALLOW.
            if rules.action == 0 {
                !rules.policies.is_empty()
            } else {
                rules.policies.is_empty()
            }
        }
    })
}

/// Connects `specs` to the xDS server on `port`: `per_connection` proxies share one TLS
/// connection (one HTTP/2 connection carries many streams; Atoll's server allows 200), at most
/// `concurrency` proxies are between opening their stream and their first full config.
/// Returns each proxy's controls, in the order of `specs`.
pub async fn launch(
    tasks: &mut tokio::task::JoinSet<()>,
    fleet: &Arc<Fleet>,
    specs: &[Arc<ProxySpec>],
    port: u16,
    ca_pem: &str,
    per_connection: usize,
    concurrency: usize,
) -> Result<Vec<Arc<ProxyControl>>> {
    use futures::StreamExt;
    let per_connection = per_connection.clamp(1, 200);
    let groups: Vec<&[Arc<ProxySpec>]> = specs.chunks(per_connection).collect();
    let connecting = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut channels = futures::stream::iter(
        groups
            .iter()
            .map(|_| async { connect_channel(port, ca_pem).await }),
    )
    .buffered(16);
    let mut controls = Vec::with_capacity(specs.len());
    let mut i = 0;
    while let Some(channel) = channels.next().await {
        let channel = channel?;
        fleet.check()?;
        for spec in groups[i] {
            let control = Arc::new(ProxyControl::default());
            spawn_proxy(
                tasks,
                fleet.clone(),
                channel.clone(),
                spec.clone(),
                control.clone(),
                connecting.clone(),
            );
            controls.push(control);
        }
        i += 1;
    }
    Ok(controls)
}
