//! The kernel's layer rule, checked: a file may name its own layer and the layers below
//! it, never one above. Every `crate::…` path in the kernel's sources must start with a
//! layer (`crate::store::document`, not the re-exported `crate::document`), so the layer
//! of every dependency is visible in the text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Lowest first.
const LAYERS: [&str; 5] = ["model", "store", "access", "index", "run"];

/// Edges up the layers still allowed: (file, path it names). The list can only shrink —
/// an entry that no longer occurs fails the test too.
const ALLOWED: &[(&str, &str)] = &[
    // Provisioning, computed columns, file sizes and purges are module hooks that run
    // their own transactions through the portal.
    ("model/types.rs", "run::portal::Portal"),
];

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths after each `crate::` of a line: `crate::a::b` gives `a::b`, and
/// `crate::{a::b, c}` gives `a::b` and `c`.
fn crate_paths(line: &str) -> Vec<String> {
    let ident = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let p: String = part.trim().chars().take_while(|c| ident(*c)).collect();
                if !p.is_empty() {
                    out.push(p);
                }
            }
        } else {
            out.push(rest.chars().take_while(|c| ident(*c)).collect());
        }
    }
    out
}

/// (file, path) for every upward edge, and every path that does not start with a layer.
fn scan(root: &Path) -> (BTreeSet<(String, String)>, Vec<String>) {
    let mut files = Vec::new();
    sources(root, &mut files);
    let mut up = BTreeSet::new();
    let mut unlayered = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        let Some(own) = rel
            .split('/')
            .next()
            .and_then(rank)
            .filter(|_| rel.contains('/'))
        else {
            continue; // lib.rs and this file: the crate root, above every layer.
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for path in crate_paths(line) {
                let head = path.split("::").next().unwrap_or_default();
                match rank(head) {
                    Some(r) if r > own => {
                        up.insert((rel.clone(), path.trim_end_matches(':').to_owned()));
                    }
                    Some(_) => {}
                    None => unlayered.push(format!("{rel}:{}: crate::{path}", n + 1)),
                }
            }
        }
    }
    (up, unlayered)
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_file_names_a_higher_layer() {
    let (up, unlayered) = scan(&src());
    assert!(
        unlayered.is_empty(),
        "name the layer in kernel paths (crate::store::document, not crate::document):\n{}",
        unlayered.join("\n")
    );
    let allowed: BTreeSet<(String, String)> = ALLOWED
        .iter()
        .map(|(f, p)| ((*f).to_owned(), (*p).to_owned()))
        .collect();
    let bad: Vec<String> = up
        .difference(&allowed)
        .map(|(f, p)| format!("{f} names crate::{p}"))
        .collect();
    assert!(
        bad.is_empty(),
        "a layer imports a higher one (order: {}):\n{}",
        LAYERS.join(" → "),
        bad.join("\n")
    );
    let gone: Vec<String> = allowed
        .difference(&up)
        .map(|(f, p)| format!("{f} → crate::{p}"))
        .collect();
    assert!(
        gone.is_empty(),
        "allowed edges that no longer exist; remove them from ALLOWED:\n{}",
        gone.join("\n")
    );
}

#[test]
fn paths_are_read_from_plain_and_grouped_imports() {
    assert_eq!(
        crate_paths("use crate::run::portal::Portal;"),
        ["run::portal::Portal"]
    );
    assert_eq!(
        crate_paths("use crate::{store::db, run::workflow};"),
        ["store::db", "run::workflow"]
    );
    assert_eq!(
        crate_paths("f(&crate::model::types::X, crate::index::catalog::Y)"),
        ["model::types::X", "index::catalog::Y"]
    );
}
