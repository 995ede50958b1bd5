#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    edt_hub::cli::main()
}

/// The server's allocator: see `edt_hub::memory`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
