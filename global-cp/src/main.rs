//! `atoll-global-cp`: the global control plane. Everything lives in the atoll-cp crate.

fn main() -> std::process::ExitCode {
    atoll_cp::cli_main(atoll_cp::Mode::Global)
}
