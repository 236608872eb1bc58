//! The shape the code promises (`docs/architecture.md`), checked: the core crate knows no door
//! (no tonic, axum or envoy-types anywhere in its dependency tree), the server does not depend on
//! the load generator, and within each crate the top-level modules import one another without
//! a circle, so data flows one way.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo tree` of one package, one crate name per line.
fn dependency_tree(package: &str) -> BTreeSet<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "--prefix",
            "none",
            "--format",
            "{p}",
            "-p",
            package,
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_core_depends_on_no_door_framework() {
    let tree = dependency_tree("jwtgate-core");
    assert!(tree.contains("jsonwebtoken") && tree.contains("tokio"), "{tree:?}");
    for door in ["tonic", "axum", "envoy-types", "jwtgate", "jwtgate-bench"] {
        assert!(!tree.contains(door), "jwtgate-core depends on {door}");
    }
}

#[test]
fn the_server_does_not_depend_on_the_load_generator() {
    let tree = dependency_tree("jwtgate");
    assert!(tree.contains("jwtgate-core") && tree.contains("tonic"), "{tree:?}");
    assert!(!tree.contains("jwtgate-bench"), "the server depends on jwtgate-bench");
    assert!(
        !tree.contains("hdrhistogram"),
        "hdrhistogram belongs to the bench crate only"
    );
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The top-level module a file of `src` belongs to (`gate` for `src/gate.rs`, `keys` for
/// `src/keys/fetch.rs`); `None` for the crate root.
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let first = file.strip_prefix(src).unwrap().components().next()?;
    let name = first.as_os_str().to_str()?.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The top-level modules `code` names through `crate::` (`crate::x::…` and `crate::{x, y::…}`),
/// comments left out.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines().map(str::trim_start).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 1 => {
                            rest = &group[i..];
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 1 => item_start = true,
                        c if item_start && depth == 1 && (c.is_alphabetic() || c == '_') => {
                            let name: String = group[i..]
                                .chars()
                                .take_while(|c| c.is_alphanumeric() || *c == '_')
                                .collect();
                            out.insert(name);
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                out.insert(name);
            }
        }
    }
    out
}

/// Module → the other top-level modules of the same crate it imports.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some(module) = module_of(src, file) else { continue };
        let mut code = std::fs::read_to_string(file).unwrap();
        // Tests of a module may reach anywhere; the shipped code may not.
        code.truncate(code.find("#[cfg(test)]").unwrap_or(code.len()));
        // In `src/x.rs` and `src/x/mod.rs`, `super::` is the crate root.
        let depth = file.strip_prefix(src).unwrap().components().count();
        if depth == 1 || file.ends_with("mod.rs") && depth == 2 {
            code = code.replace("super::", "crate::");
        }
        for used in crate_references(&code) {
            if used != module && modules.contains(&used) {
                graph.get_mut(&module).unwrap().insert(used);
            }
        }
    }
    graph
}

/// A circle in `graph`, if there is one, as the modules along it.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut c = path[at..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in &graph[m] {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
            g.entry((*b).into()).or_default();
        }
        g
    };
    assert_eq!(circle(&graph(&[("gate", "token"), ("token", "request")])), None);
    assert_eq!(
        circle(&graph(&[("gate", "token"), ("token", "gate")])),
        Some(vec!["gate".into(), "token".into(), "gate".into()])
    );
    let refs =
        crate_references("use crate::{jws, policy::steps, token};\nuse crate::cache::{self, X};\n// crate::gate");
    assert_eq!(
        refs,
        BTreeSet::from(["cache", "jws", "policy", "token"].map(String::from))
    );
}

#[test]
fn modules_import_each_other_without_a_circle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for src in ["crates/jwtgate-core/src", "src", "crates/jwtgate-bench/src"] {
        let graph = module_graph(&root.join(src));
        assert!(graph.len() > 2, "{src}: {graph:?}");
        if let Some(c) = circle(&graph) {
            panic!("{src}: import circle {}", c.join(" → "));
        }
    }
    // The data flows one way: the gate uses the request types, never the other way round; what a
    // request and a refusal carry of sender binding (`binding`) and its headers (`headers`)
    // import no step either.
    let core = module_graph(&root.join("crates/jwtgate-core/src"));
    assert!(
        core["gate"].contains("request")
            && core["request"]
                .iter()
                .all(|m| ["rejection", "path", "binding", "headers"].contains(&m.as_str())),
        "request imports: {:?}",
        core["request"]
    );
    assert!(core["binding"].is_empty(), "binding imports: {:?}", core["binding"]);
    assert!(core["headers"].is_empty(), "headers imports: {:?}", core["headers"]);
}
