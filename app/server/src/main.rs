//! The `wendelin` binary.

fn main() -> std::process::ExitCode {
    wendelin_server::cli::main()
}
