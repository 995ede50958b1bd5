#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    edt_hub::cli::main()
}
