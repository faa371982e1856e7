//! README's examples run as written: every ```sh block that follows a `<!-- readme-test -->`
//! line is run, in order, as one `sh -eu` script in a scratch folder, with the freshly built
//! `workshop` first on PATH and `WORKSHOP_URL` pointing at a real server on port 0. Other
//! blocks (illustrations, long-running commands) are left alone, so any section may add them.
mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, Server, try_signal_group};

const MARKER: &str = "<!-- readme-test -->";
/// Generous: the script runs ~40 commands and waits for a worker on a busy machine.
const DEADLINE: Duration = Duration::from_secs(180);

/// The marked blocks' contents, in order. A marker must be followed (blank lines allowed) by
/// a ```sh fence; anything else is a mistake in the README and fails the test.
fn runnable_blocks(readme: &str) -> Vec<String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() != MARKER {
            i += 1;
            continue;
        }
        i += 1;
        while i < lines.len() && lines[i].trim().is_empty() {
            i += 1;
        }
        assert_eq!(
            lines.get(i).map(|l| l.trim()),
            Some("```sh"),
            "README line {}: {MARKER} must be followed by a ```sh block",
            i + 1
        );
        i += 1;
        let start = i;
        while i < lines.len() && lines[i].trim() != "```" {
            i += 1;
        }
        assert!(
            i < lines.len(),
            "README: unclosed ```sh block from line {start}"
        );
        blocks.push(lines[start..i].join("\n"));
        i += 1;
    }
    blocks
}

#[test]
fn marked_blocks_are_found_and_checked() {
    let md = "x\n<!-- readme-test -->\n\n```sh\necho a\n```\n```sh\necho skipped\n```\n";
    assert_eq!(runnable_blocks(md), ["echo a"]);
}

#[test]
fn readme_shell_examples_run_top_to_bottom() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 3, "README lost its runnable examples");
    let script = blocks.join("\n");
    for placeholder in ["01J4XYZ", "..."] {
        assert!(
            !script.contains(placeholder),
            "a runnable block has a placeholder {placeholder:?}"
        );
    }

    let hub = Server::start();
    let scratch = tempfile::tempdir().unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let mut child = Command::new("sh")
        .args(["-eu", "-c", &script])
        .env_remove("AGENT_ID")
        .env("PATH", path)
        .env("WORKSHOP_URL", hub.url())
        .current_dir(scratch.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group, so a background worker it leaves behind on failure is killed too.
        .process_group(0)
        .spawn()
        .expect("sh");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > DEADLINE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Kills whatever the script left running (its process group), if anything.
    try_signal_group(child.id(), "KILL");
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    let status = status.unwrap_or_else(|| {
        panic!("README script still running after {DEADLINE:?}\nstdout:\n{out}\nstderr:\n{err}")
    });
    assert!(
        status.success(),
        "README script failed ({status})\n---- script\n{script}\n---- stdout\n{out}\n---- stderr\n{err}"
    );
    // What it did, seen from the hub.
    let done: Vec<_> = hub
        .history("/ch/jobs/history?type=task.done")
        .into_iter()
        .filter_map(|m| m["body"]["title"].as_str().map(str::to_string))
        .collect();
    assert!(done.iter().any(|t| t == "resize images"), "{done:?}");
    assert!(done.iter().any(|t| t == "count rows"), "{done:?}");
    assert!(
        out.contains("\"rows\": 42"),
        "the worker's result is shown:\n{out}"
    );
    hub.assert_no_panic();
}
