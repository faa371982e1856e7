//! The shape of `src/`, checked on every run so it cannot drift back: no file over 400 lines,
//! a median function of at most 8 lines, no import cycle between modules, and `unsafe` only
//! in the modules that say so, each block with its SAFETY note.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 400;
const MAX_MEDIAN_FN_LINES: usize = 8;

/// Every `.rs` file under `src/`, with its module path (`store::writer`; `lib` and `main`
/// are the crate root).
fn sources() -> Vec<(Vec<String>, PathBuf, String)> {
    let mut files = Vec::new();
    collect(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src").as_path(),
        &mut files,
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out: Vec<_> = files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            (module_path(&root, &path), path, text)
        })
        .collect();
    out.sort();
    out
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

fn module_path(root: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(root).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file with comments, string and char literals blanked out, so braces and
/// paths inside them are not read as code.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(rest.len(), |e| e + 2);
            out.extend(rest[..end].chars().filter(|c| *c == '\n'));
            i += end;
        } else if let Some(len) = raw_string_len(rest) {
            out.extend(rest[..len].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i += len;
        } else if rest.starts_with('"') {
            let len = quoted_len(rest, '"');
            out.extend(rest[..len].chars().filter(|c| *c == '\n'));
            out.push_str("\"\"");
            i += len;
        } else if let Some(len) = char_literal_len(rest) {
            out.push_str("' '");
            i += len;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

fn raw_string_len(rest: &str) -> Option<usize> {
    let after_r = rest.strip_prefix("br").or_else(|| rest.strip_prefix('r'))?;
    let hashes = after_r.len() - after_r.trim_start_matches('#').len();
    let body = after_r[hashes..].strip_prefix('"')?;
    let close = format!("\"{}", "#".repeat(hashes));
    let end = body.find(&close)?;
    Some(rest.len() - body.len() + end + close.len())
}

fn quoted_len(rest: &str, quote: char) -> usize {
    let mut escaped = false;
    for (at, c) in rest.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return at + 1,
            _ => {}
        }
    }
    rest.len()
}

/// `'x'`, `'\n'`, `'\u{1F600}'`, but not a lifetime like `'a`.
fn char_literal_len(rest: &str) -> Option<usize> {
    if !rest.starts_with('\'') {
        return None;
    }
    let mut chars = rest.char_indices().skip(1);
    let (_, first) = chars.next()?;
    if first == '\\' {
        let len = quoted_len(rest, '\'');
        return (len <= 12).then_some(len);
    }
    let (at, next) = chars.next()?;
    (next == '\'').then_some(at + 1)
}

/// The line count of every function with a body: from its `fn` line to its closing brace.
fn function_lengths(code: &str) -> Vec<usize> {
    let lines: Vec<&str> = code.lines().collect();
    let mut lengths = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        if !is_fn_line(line) {
            continue;
        }
        if let Some(end) = body_end(&lines, start) {
            lengths.push(end - start + 1);
        }
    }
    lengths
}

fn is_fn_line(line: &str) -> bool {
    let mut words = line.split_whitespace().skip_while(|w| {
        w.starts_with("pub")
            || ["const", "async", "unsafe", "extern", "\"\"", "default"].contains(w)
    });
    words.next() == Some("fn")
}

/// The line of the brace closing the body that opens at or after `start`, or None for a
/// declaration without a body (`fn f();` in a trait).
fn body_end(lines: &[&str], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut opened = false;
    for (at, line) in lines.iter().enumerate().skip(start) {
        for c in line.chars() {
            match c {
                ';' if !opened && depth == 0 => return None,
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => {
                    depth -= 1;
                    if opened && depth == 0 {
                        return Some(at);
                    }
                }
                _ => {}
            }
        }
    }
    None
}

/// The modules a file refers to: `crate::a::b` and `super::` paths, grouped ones
/// (`use crate::{a, b::{c, d}}`) included, each resolved to the longest known module.
fn references(
    module: &[String],
    is_dir_module: bool,
    code: &str,
    known: &BTreeSet<Vec<String>>,
) -> BTreeSet<Vec<String>> {
    let starts = code
        .match_indices("crate::")
        .chain(code.match_indices("super::"));
    starts
        .filter(|(at, _)| *at == 0 || !is_ident(code.as_bytes()[at - 1]))
        .flat_map(|(at, _)| expand(&code[at..]))
        .map(|path| resolve(module, is_dir_module, &path, known))
        .collect()
}

/// The paths a `use` tree starting at `text` names: `a::{b, c::{d, self}}` → a::b, a::c::d, a::c.
fn expand(text: &str) -> Vec<Vec<String>> {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let prefix: Vec<String> = text[..end]
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if !(text[..end].ends_with("::") && text[end..].starts_with('{')) {
        return vec![prefix];
    }
    let mut paths = Vec::new();
    for item in group_items(&text[end + 1..]) {
        let tails = if item == "self" {
            vec![Vec::new()]
        } else {
            expand(item)
        };
        paths.extend(
            tails
                .into_iter()
                .map(|tail| [prefix.clone(), tail].concat()),
        );
    }
    paths
}

/// The comma-separated items of a `{ … }` group whose opening brace is just before `text`.
fn group_items(text: &str) -> Vec<&str> {
    let (mut depth, mut from, mut items) = (0usize, 0, Vec::new());
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&text[from..at]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[from..at]);
                from = at + 1;
            }
            _ => {}
        }
    }
    items
        .into_iter()
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .collect()
}

/// The module a `crate::…` or `super::…` path from `module` lands in.
fn resolve(
    module: &[String],
    is_dir_module: bool,
    path: &[String],
    known: &BTreeSet<Vec<String>>,
) -> Vec<String> {
    let mut base: Vec<String> = module.to_vec();
    let mut segments = path.iter().peekable();
    if segments.peek().is_some_and(|s| *s == "crate") {
        base.clear();
        segments.next();
    } else {
        // `super` in a `mod.rs` is the parent of the directory's module.
        if !is_dir_module {
            base.pop();
        }
        while segments.peek().is_some_and(|s| *s == "super") {
            segments.next();
            if segments.peek().is_some_and(|s| *s == "super") {
                base.pop();
            }
        }
        if is_dir_module {
            base.pop();
        }
    }
    for segment in segments {
        let mut longer = base.clone();
        longer.push(segment.clone());
        if !known.contains(&longer) {
            break;
        }
        base = longer;
    }
    base
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// References lifted to siblings: a reference from `a::x` to `b::y` is an edge `a → b`
/// between the children of their common parent. A module's references to its own parent
/// or children are not edges (a parent declares its children; a child uses its parent's
/// shared items).
fn sibling_edges(
    refs: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
) -> BTreeSet<(Vec<String>, Vec<String>)> {
    let mut edges = BTreeSet::new();
    for (from, targets) in refs {
        for to in targets {
            let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
            if common == from.len() || common == to.len() {
                continue;
            }
            edges.insert((from[..=common].to_vec(), to[..=common].to_vec()));
        }
    }
    edges
}

fn find_cycle(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Option<Vec<String>> {
    let mut graph: BTreeMap<&Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for (from, to) in edges {
        graph.entry(from).or_default().push(to);
    }
    let nodes: Vec<&Vec<String>> = graph.keys().copied().collect();
    for start in nodes {
        let mut stack = vec![(start, vec![start.join("::")])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in graph.get(node).into_iter().flatten() {
                let mut longer = trail.clone();
                longer.push(next.join("::"));
                if *next == start {
                    return Some(longer);
                }
                if seen.insert(*next) {
                    stack.push((next, longer));
                }
            }
        }
    }
    None
}

#[test]
fn no_source_file_is_over_400_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|(_, _, text)| text.lines().count() > MAX_FILE_LINES)
        .map(|(_, path, text)| format!("{} ({} lines)", path.display(), text.lines().count()))
        .collect();
    assert!(long.is_empty(), "over {MAX_FILE_LINES} lines: {long:#?}");
}

fn median_of(lengths: &[usize]) -> usize {
    let mut sorted = lengths.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

#[test]
fn the_median_function_is_short() {
    let mut lengths = Vec::new();
    for (module, _, text) in sources() {
        let mine = function_lengths(&code_only(&text));
        let area = module
            .first()
            .map_or("crate root", String::as_str)
            .to_string();
        eprintln!(
            "{area:>12} {:<30} {} functions, median {}",
            module.join("::"),
            mine.len(),
            median_of(&mine)
        );
        lengths.extend(mine);
    }
    lengths.sort_unstable();
    assert!(
        lengths.len() > 300,
        "found only {} functions: the counter is broken",
        lengths.len()
    );
    let median = lengths[lengths.len() / 2];
    let over = lengths.iter().filter(|l| **l > MAX_MEDIAN_FN_LINES).count();
    eprintln!(
        "{} functions, median {median} lines, {over} over {MAX_MEDIAN_FN_LINES}",
        lengths.len()
    );
    assert!(
        median <= MAX_MEDIAN_FN_LINES,
        "median function is {median} lines"
    );
}

#[test]
fn modules_import_without_cycles() {
    let sources = sources();
    let known: BTreeSet<Vec<String>> = sources.iter().map(|(m, _, _)| m.clone()).collect();
    let refs: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = sources
        .iter()
        .map(|(module, path, text)| {
            let is_dir_module = path.file_name().is_some_and(|n| n == "mod.rs");
            let found = references(module, is_dir_module, &code_only(text), &known);
            (module.clone(), found)
        })
        .collect();
    let edges = sibling_edges(&refs);
    assert!(
        edges.len() > 20,
        "found only {} edges: the reader is broken",
        edges.len()
    );
    if let Some(cycle) = find_cycle(&edges) {
        panic!("import cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn unsafe_is_only_where_the_crate_says_and_each_block_has_its_safety_note() {
    for (_, path, text) in sources() {
        let code = code_only(&text);
        let blocks = code.matches("unsafe {").count() + code.matches("unsafe fn").count();
        if blocks == 0 {
            continue;
        }
        assert!(
            text.contains("#![allow(unsafe_code)]"),
            "{} has unsafe without the module's allow",
            path.display()
        );
        let notes = text.matches("SAFETY").count();
        assert!(
            notes >= blocks,
            "{}: {blocks} unsafe, {notes} SAFETY notes",
            path.display()
        );
    }
}

#[test]
fn the_readers_read_what_they_claim() {
    let code = code_only("fn a() {\n    let s = \"}\"; // }\n    x('{');\n}\n");
    assert_eq!(function_lengths(&code), vec![4]);
    let known: BTreeSet<Vec<String>> = [
        vec![],
        vec!["hub".into()],
        vec!["store".into()],
        vec!["store".into(), "writer".into()],
    ]
    .into_iter()
    .collect();
    let refs = references(
        &["store".to_string(), "writer".to_string()],
        false,
        &code_only("use super::Store; use crate::hub::Frame; let r = r\"crate::nope\";"),
        &known,
    );
    let expected: BTreeSet<Vec<String>> = [vec!["store".to_string()], vec!["hub".to_string()]]
        .into_iter()
        .collect();
    assert_eq!(refs, expected);
    let grouped = references(
        &["api".to_string()],
        false,
        &code_only("use crate::{\n    hub::{self, Frame},\n    store::writer as w,\n};"),
        &known,
    );
    let expected: BTreeSet<Vec<String>> = [
        vec!["hub".to_string()],
        vec!["store".to_string(), "writer".to_string()],
    ]
    .into_iter()
    .collect();
    assert_eq!(grouped, expected);
    let cyclic: BTreeSet<(Vec<String>, Vec<String>)> = [
        (vec!["a".to_string()], vec!["b".to_string()]),
        (vec!["b".to_string()], vec!["a".to_string()]),
    ]
    .into_iter()
    .collect();
    assert!(find_cycle(&cyclic).is_some());
}
