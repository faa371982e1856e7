//! What only the reliability tests need, on top of `common` (whose kit has the seeded
//! generator `Rng` and `raise_fd_limit`): a check of every stored blob.
#![allow(dead_code)] // not every test uses every helper

use crate::common::sha256_name;
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::Path;

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

pub fn num(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}
