//! `atoll-zone-cp`: the zone control plane. The shared runtime lives in atoll-cp; what only a
//! zone does (xDS, certificates, bootstrap) in this crate's library.

/// mimalloc instead of glibc's allocator: see BENCHMARKS.md ("Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    atoll_cp::cli_main_with(atoll_cp::Mode::Zone, Some(atoll_zone_cp::start_hook()))
}
