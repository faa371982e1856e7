//! The `workshop` binary: the server (no subcommand, or `serve`) and the agent client.
fn main() -> std::process::ExitCode {
    workshop::cli::main()
}
