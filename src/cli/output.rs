//! Standard output: one line at a time, quiet on a closed pipe, and NDJSON answers printed as
//! they came or (`--pretty`) as one readable line per message.
use std::io::{self, IsTerminal, Write};

use serde_json::Value;

use super::client::Result;
use super::format;

/// Prints one line to stdout. A closed pipe (`workshop tail | head`) ends the program
/// quietly with status 0, as SIGPIPE would for a C tool.
pub fn emit(line: &str) -> Result<()> {
    match write_line(line) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(e.into()),
    }
}

fn write_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}").and_then(|()| out.flush())
}

/// Prints one envelope line: as it came, or with `pretty` as one readable line (`colour`:
/// with ANSI colours). A line that is not JSON is printed as it came, or with `pretty` with
/// its control characters escaped, as everything `pretty` shows is.
pub fn emit_envelope(line: &str, pretty: bool, colour: bool) -> Result<()> {
    match serde_json::from_str::<Value>(line) {
        Ok(envelope) if pretty => emit(&format::message(&envelope, colour)),
        Err(_) if pretty => emit(&format::printable(line)),
        _ => emit(line),
    }
}

/// Prints an NDJSON answer of envelopes: each line as it came, or with `pretty` one readable
/// line per message (history, search, thread).
pub fn emit_envelopes(ndjson: &str, pretty: bool) -> Result<()> {
    let colour = pretty && colour_wanted();
    for line in ndjson.lines().filter(|l| !l.trim().is_empty()) {
        emit_envelope(line, pretty, colour)?;
    }
    Ok(())
}

/// Colour for `--pretty` lines: only on a terminal, and never when `NO_COLOR` is set
/// (no-color.org).
pub fn colour_wanted() -> bool {
    io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
