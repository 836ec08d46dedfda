//! The relay's modules import each other one way only: the graph of
//! `crate::<module>` references between top-level modules of `relay/src`
//! (from `use crate::…` and inline `crate::x::…` paths; a child module such as
//! `worker/batch.rs` counts as its parent `worker`) has no cycle, so the crate
//! reads bottom-up. `lib.rs` (the re-exports) is not a node.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn relay_modules_form_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph_of(&src);
    assert!(
        graph.len() > 5,
        "found only {} modules under {}",
        graph.len(),
        src.display()
    );
    if let Some(cycle) = find_cycle(&graph) {
        let mut edges = String::new();
        for (from, to) in &graph {
            for t in to {
                edges.push_str(&format!("  {from} -> {t}\n"));
            }
        }
        panic!(
            "the relay's modules import each other in a loop: {}\nall edges:\n{edges}",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn a_loop_is_found_and_named() {
    fn edge(g: &mut Graph, a: &str, b: &str) {
        g.entry(a.to_owned()).or_default().insert(b.to_owned());
        g.entry(b.to_owned()).or_default();
    }
    let mut g = Graph::new();
    edge(&mut g, "control", "worker");
    edge(&mut g, "worker", "clients");
    edge(&mut g, "clients", "token");
    assert_eq!(find_cycle(&g), None);
    edge(&mut g, "clients", "control");
    assert_eq!(
        find_cycle(&g),
        Some(vec![
            "clients".to_owned(),
            "control".to_owned(),
            "worker".to_owned(),
            "clients".to_owned()
        ])
    );
}

#[test]
fn paths_are_read_from_uses_groups_and_inline_paths() {
    let text = "use crate::a::X;\n\
                use crate::{b::Y, c};\n\
                // crate::commented::out\n\
                fn f() { crate::d::g(); let s = \"http://x\"; crate::e::h(); }\n";
    let got = referenced_modules(text);
    let want: BTreeSet<String> = ["a", "b", "c", "d", "e"].map(String::from).into();
    assert_eq!(got, want);
}

/// Top-level module → the top-level modules it references.
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let mut graph = Graph::new();
    for file in &files {
        let Some(module) = top_module(src, file) else {
            continue;
        };
        graph.entry(module).or_default();
    }
    let modules: BTreeSet<String> = graph.keys().cloned().collect();
    for file in &files {
        let Some(module) = top_module(src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        for to in referenced_modules(&text) {
            if to != module && modules.contains(&to) {
                graph.entry(module.clone()).or_default().insert(to);
            }
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/worker.rs` and `src/worker/batch.rs` → `worker`; `src/lib.rs` → none.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

/// The first segment of every `crate::` path in `text`, comments left out.
fn referenced_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = strip_comment(line);
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `$crate::`, `my_crate::`
            }
            if let Some(group) = rest.strip_prefix('{') {
                // `crate::{a::X, b}`: the first segment of each top-level item.
                let mut depth = 0usize;
                let mut item_start = true;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => item_start = true,
                        c if item_start && (c.is_alphabetic() || c == '_') => {
                            out.insert(ident_at(&group[i..]).to_owned());
                            item_start = false;
                        }
                        _ => {}
                    }
                }
            } else {
                let ident = ident_at(rest);
                if !ident.is_empty() {
                    out.insert(ident.to_owned());
                }
            }
        }
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// `line` up to a `//` that is not inside a string literal.
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_str => escaped = true,
            b'"' => in_str = !in_str,
            b'/' if !in_str && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// A cycle as `a -> b -> … -> a`, if the graph has one.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &'a Graph,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        marks.insert(node, Mark::OnPath);
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next.as_str()).copied().unwrap_or(Mark::New) {
                Mark::OnPath => {
                    let from = path.iter().position(|n| *n == next)?;
                    let mut cycle: Vec<String> =
                        path[from..].iter().map(|s| s.to_string()).collect();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node.as_str()).copied().unwrap_or(Mark::New) == Mark::New {
            let mut path = Vec::new();
            if let Some(c) = visit(node, graph, &mut marks, &mut path) {
                return Some(c);
            }
        }
    }
    None
}
