//! Command line: `workshop` / `workshop serve` runs the server; other subcommands are the client.
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("serve") => crate::serve_from_env(),
        Some(other) => {
            eprintln!("workshop: unknown subcommand {other:?}");
            ExitCode::from(2)
        }
    }
}
