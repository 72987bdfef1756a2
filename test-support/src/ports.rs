//! Loopback ports for processes the tests start.

use std::net::TcpListener;

/// Ports handed out by [`free_port`]: below Linux's ephemeral range (32768-60999), so no
/// outgoing connection (an Envoy dialing its control plane, say) can take one as its source port
/// between the moment it is picked and the moment its process binds it.
const PICK_FROM: std::ops::Range<u16> = 20000..32000;

/// A loopback port that was free a moment ago, picked at random from a range the kernel never
/// uses for outgoing connections (concurrent tests each pick their own).
pub fn free_port() -> u16 {
    try_free_port().expect("a free loopback port")
}

/// Like [`free_port`], for callers that report errors instead of panicking.
pub fn try_free_port() -> std::io::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let span = u64::from(PICK_FROM.end - PICK_FROM.start);
    for _ in 0..200 {
        // RandomState is seeded randomly per process; the counter varies it per call.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        let offset = u16::try_from(h.finish() % span).unwrap_or(0);
        let port = PICK_FROM.start + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    // Crowded: let the kernel choose.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}
