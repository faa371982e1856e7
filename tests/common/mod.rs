//! The shared test kit (tests/kit, crate `workshop_testkit`): the real `workshop` binary on
//! port 0 in a temp dir, raw HTTP and SSE clients, /proc readers, signals, deadline polling.
#![allow(unused_imports)] // each test binary uses a different part of the kit

pub use workshop_testkit::*;

/// This package's `workshop` binary, as cargo built it for the tests.
#[allow(dead_code)] // not every test binary runs it directly
pub const BIN: &str = env!("CARGO_BIN_EXE_workshop");
