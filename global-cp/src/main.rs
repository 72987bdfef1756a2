//! `atoll-global-cp`: the global control plane. The shared runtime lives in atoll-cp; the KDS
//! server zones sync with in this crate's library.

fn main() -> std::process::ExitCode {
    atoll_cp::cli_main_with(atoll_cp::Mode::Global, Some(atoll_global_cp::start_hook()))
}
