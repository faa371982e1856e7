//! What only the reliability tests need, on top of `common`: a seeded xorshift generator,
//! a check of every stored blob, and a raised fd limit for tests that open thousands of
//! connections.
#![allow(dead_code)] // not every test uses every helper

use crate::common::sha256_name;
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::Path;

/// xorshift64*: small, seeded, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// Checks every blob in the folder: its bytes hash to its name, and the temp folder is empty.
/// Returns the blob names.
pub fn check_blobs(blobs_dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(blobs_dir).expect("blobs dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "tmp" {
            let left: Vec<_> = std::fs::read_dir(entry.path())
                .expect("tmp dir")
                .map(|e| e.expect("entry").file_name())
                .collect();
            assert!(left.is_empty(), "temp files left behind: {left:?}");
            continue;
        }
        let mut bytes = Vec::new();
        File::open(entry.path())
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .expect("read blob");
        assert_eq!(
            sha256_name(&bytes),
            name,
            "blob {name} does not hash to its name"
        );
        names.push(name);
    }
    names.sort();
    names
}

/// Raises this test process's open-files soft limit to the hard limit.
pub use workshop::sys::raise_fd_limit;

pub fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}
