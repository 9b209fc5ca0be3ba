//! Imports between the top-level modules of `rbuild-core` and of `rbuild-dockerfile` run
//! only downward, through the layers below (ARCHITECTURE.md, "Layers"): a module may use
//! modules of a lower layer, never one of its own layer or of a higher one, so no two
//! modules can depend on each other. `solver/` counts as one module there; inside it,
//! no two files depend on each other, through any chain of imports
//! ([`the_solver_files_import_without_a_cycle`]).
//!
//! Every `crate::<name>` path of the library's code counts: `use` lines, grouped
//! `use crate::{a::X, b::Y}` and paths written inline. A name the crate root re-exports
//! (`crate::Digest`) counts as the module lib.rs re-exports it from. Comments, string
//! literals and `#[cfg(test)]` modules are not the library's dependencies and are left
//! out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// `rbuild-core`'s top-level modules, bottom-up: the data flow of ARCHITECTURE.md read
/// from the ground (digests, change sets, atomic files) through the store and layers to
/// the steps' roots, the sandbox, the operations on images, and the solver over them all.
const CORE_LAYERS: &[&[&str]] = &[
    // Values and helpers every part uses; none imports another module of the crate
    // except `redact` (below `progress`).
    &[
        "atomic",
        "beneath",
        "change",
        "digest",
        "error_chain",
        "http",
        "limits",
        "privilege",
        "redact",
    ],
    // Build events and sinks; the OCI layout type beneath the store (issue 17 item 4); the
    // owner side table of builds that cannot chown (issue 16), over `privilege`.
    &["progress", "oci_layout", "fakeroot"],
    // The content store: blobs, the index, names, the store's own directories.
    &["store"],
    // Layers: written from a change set, applied to a directory, unpacked by chain ID.
    &["layer"],
    // What is read from layers: the build context, image configs, step roots.
    &["context", "image", "snapshot"],
    // Running a step in a root.
    &["exec"],
    // Entering a user namespace for an unprivileged caller (uses exec's id mapping).
    &["rootless"],
    // Operations on images and steps: COPY/ADD, exporters, registries, `rbuild run`.
    &["container", "copy", "export", "registry"],
    // The solver and the embeddable `Builder`.
    &["solver"],
];

/// `rbuild-dockerfile`'s top-level modules, bottom-up: text to syntax tree to typed
/// instructions to the build graph.
const PARSER_LAYERS: &[&[&str]] = &[
    // Word expansion and path cleaning know nothing of Dockerfiles.
    &["path", "shell"],
    // The crate's one error (an expansion error is one of its sources).
    &["error"],
    // Logical lines, directives, heredocs.
    &["syntax"],
    // Typed instructions; BuildKit's AST dump of the syntax tree.
    &["dump", "instruction"],
    // Lowering to the build graph.
    &["graph"],
];

#[test]
fn core_modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let violations = check_crate(&src, CORE_LAYERS);
    assert!(
        violations.is_empty(),
        "imports against the layers of rbuild-core (builder-core/tests/module_layers.rs, \
         ARCHITECTURE.md \"Layers\"):\n{}",
        violations.join("\n")
    );
}

#[test]
fn parser_modules_import_only_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dockerfile-parser/src");
    let violations = check_crate(&src, PARSER_LAYERS);
    assert!(
        violations.is_empty(),
        "imports against the layers of rbuild-dockerfile (builder-core/tests/module_layers.rs, \
         ARCHITECTURE.md \"Layers\"):\n{}",
        violations.join("\n")
    );
}

/// The scanner itself: grouped imports, inline paths and root re-exports are found;
/// comments, strings and test modules are not.
#[test]
fn the_scanner_reads_paths_as_the_compiler_does() {
    let code = r##"
use crate::digest::Digest; // crate::solver in a comment
use crate::{
    layer::{Compression, Layer},
    store::ContentStore,
};
/* crate::registry in a block comment /* nested */ crate::export */
fn f() -> char {
    let _ = "crate::copy in a string";
    let _ = r#"crate::copy in a raw string"#;
    let _ = crate::Hasher::new();
    '"'
}
#[cfg(test)]
mod tests {
    use crate::solver::Builder;
}
"##;
    let found: Vec<(usize, String)> = crate_paths(&strip(code));
    let names: Vec<&str> = found.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["digest", "layer", "store", "Hasher"]);
    assert_eq!(found[0].0, 2);
    assert_eq!(found[3].0, 11);
}

/// Inside `solver/`, files import each other without a cycle: every `super::`,
/// `self::` and `crate::solver::` path names a file (the longest module path it starts
/// with; a name a `mod.rs` re-exports counts as the file it comes from), and following
/// those edges never leads back. A file's use of its own directory's `mod.rs` (the face
/// of the module it belongs to) is not an edge. The phases then read top-down: the pipeline, the
/// phases, the stage runs, the leaves.
#[test]
fn the_solver_files_import_without_a_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let edges = solver_imports(&src);
    assert!(
        edges.values().flatten().count() > 20,
        "the scanner found too few imports in src/solver: {edges:?}"
    );
    let cycles = cycles(&edges);
    assert!(
        cycles.is_empty(),
        "files of src/solver/ that import each other (each list is a cycle, with the \
         imports between them):\n{}",
        cycles
            .iter()
            .map(|c| c
                .iter()
                .map(|m| {
                    let to: Vec<&String> = edges[m].iter().filter(|t| c.contains(t)).collect();
                    format!("  {m} -> {to:?}")
                })
                .collect::<Vec<_>>()
                .join("\n"))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// The scanner of solver paths: grouped, nested, relative and re-exported names.
#[test]
fn solver_paths_resolve_to_their_files() {
    let modules: BTreeSet<String> = ["solver", "solver::a", "solver::a::b", "solver::c"]
        .iter()
        .map(ToString::to_string)
        .collect();
    let reexports = BTreeMap::from([(
        ("solver".to_owned(), "X".to_owned()),
        "solver::c".to_owned(),
    )]);
    let code =
        "use super::super::{a::b::Y, c};\nuse super::super::X;\nfn f() { crate::solver::a::g() }";
    let found = module_paths(code, &["solver", "a", "b"], false, &modules, &reexports);
    assert_eq!(
        found,
        ["solver::a::b", "solver::c", "solver::c", "solver::a"].map(String::from)
    );
}

/// Each file of `src/solver/` (as a module path) with the files it imports.
fn solver_imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src.join("solver"), &mut files);
    let tests = test_files(&files);
    files.retain(|f| !tests.contains(f));
    let module_of = |file: &Path| -> (Vec<String>, bool) {
        let rel = file
            .strip_prefix(src)
            .expect("under src")
            .with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let dir = parts.last().is_some_and(|p| p == "mod");
        if dir {
            parts.pop();
        }
        (parts, dir)
    };
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(f).0.join("::")).collect();
    // Names each mod.rs re-exports from its children (`pub use self::x::{A, B};`).
    let mut reexports = BTreeMap::new();
    for file in &files {
        let (parts, dir) = module_of(file);
        if !dir {
            continue;
        }
        let code = strip(&fs::read_to_string(file).expect("source file"));
        for statement in code.split(';') {
            let statement = statement.trim();
            let Some(at) = statement.find("use self::") else {
                continue;
            };
            let (module, names) = split_use(&statement[at + "use self::".len()..]);
            let module = [parts.join("::"), module].join("::");
            for name in names {
                reexports.insert((parts.join("::"), name), longest_module(&module, &modules));
            }
        }
    }
    let mut edges = BTreeMap::new();
    for file in &files {
        let (parts, dir) = module_of(file);
        let from = parts.join("::");
        let code = strip(&fs::read_to_string(file).expect("source file"));
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        // A file may use what its own `mod.rs` files define: a directory module and its
        // files are one unit to the modules beside it.
        let to: BTreeSet<String> = module_paths(&code, &refs, dir, &modules, &reexports)
            .into_iter()
            .filter(|m| *m != from && !from.starts_with(&format!("{m}::")))
            .collect();
        edges.insert(from, to);
    }
    edges
}

/// `a::b::{X, Y}` -> ("a::b", [X, Y]); `a::b::X` -> ("a::b", [X]).
fn split_use(path: &str) -> (String, Vec<String>) {
    let path: String = path.split_whitespace().collect();
    if let Some((module, group)) = path.split_once("::{") {
        let names = group
            .trim_end_matches('}')
            .split(',')
            .filter_map(|n| n.rsplit("::").next())
            .map(|n| n.split(" as ").next().unwrap_or(n).to_owned())
            .filter(|n| !n.is_empty() && n != "self")
            .collect();
        return (module.to_owned(), names);
    }
    match path.rsplit_once("::") {
        Some((module, name)) => (module.to_owned(), vec![name.to_owned()]),
        None => (String::new(), vec![path]),
    }
}

/// The longest prefix of `path` that is one of `modules`.
fn longest_module(path: &str, modules: &BTreeSet<String>) -> String {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    while !parts.is_empty() {
        let candidate = parts.join("::");
        if modules.contains(&candidate) {
            return candidate;
        }
        parts.pop();
    }
    "solver".to_owned()
}

/// The modules (of `modules`, under `solver`) that `code`, the text of the module
/// `here` (a `mod.rs` when `dir`), names through `super::`, `self::` or
/// `crate::solver::` paths outside its test modules.
fn module_paths(
    code: &str,
    here: &[&str],
    dir: bool,
    modules: &BTreeSet<String>,
    reexports: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    let skipped = cfg_test_spans(code);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let starts = ["crate::solver::", "super::", "self::"]
            .into_iter()
            .find(|p| rest.starts_with(p));
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let Some(start) = starts.filter(|_| {
            !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
                && !skipped.iter().any(|(s, e)| (*s..*e).contains(&at))
        }) else {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        };
        // The module the path starts from.
        let mut base: Vec<String> = here.iter().map(ToString::to_string).collect();
        if !dir {
            base.pop(); // a file's `self` is itself, its `super` is its directory
        }
        let mut path = &rest[start.len()..];
        match start {
            "crate::solver::" => base = vec!["solver".to_owned()],
            "super::" => {
                if dir {
                    base.pop();
                }
                while let Some(more) = path.strip_prefix("super::") {
                    base.pop();
                    path = more;
                }
            }
            _ => {
                if !dir {
                    base = here.iter().map(ToString::to_string).collect();
                }
            }
        }
        let end = path
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':' || c == '{'))
            .unwrap_or(path.len());
        let whole = if path[..end].contains('{') {
            // A group: up to its closing brace.
            let mut depth = 0;
            let close = path
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    c == '}' && depth == 0
                })
                .map_or(path.len(), |(i, _)| i + 1);
            &path[..close]
        } else {
            &path[..end]
        };
        for item in expand_group(whole) {
            let full = [base.join("::"), item.clone()].join("::");
            let mut module = longest_module(&full, modules);
            // A name a mod.rs re-exports is the file it comes from.
            let tail = full
                .strip_prefix(&format!("{module}::"))
                .and_then(|t| t.split("::").next())
                .unwrap_or_default()
                .to_owned();
            if let Some(from) = reexports.get(&(module.clone(), tail)) {
                module = from.clone();
            }
            if module.starts_with("solver") {
                out.push(module);
            }
        }
        at += start.len() + whole.len().max(1);
    }
    out
}

/// `a::{b::X, c}` -> [`a::b::X`, `a::c`]; nested groups too.
fn expand_group(path: &str) -> Vec<String> {
    let path: String = path.split_whitespace().collect();
    let Some(open) = path.find('{') else {
        return vec![path.trim_end_matches("::").to_owned()];
    };
    let prefix = &path[..open];
    let inner = path[open + 1..]
        .strip_suffix('}')
        .unwrap_or(&path[open + 1..]);
    let mut items = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[start..]);
    items
        .into_iter()
        .filter(|i| !i.is_empty())
        .flat_map(expand_group)
        .map(|i| {
            if i == "self" {
                prefix.trim_end_matches("::").to_owned()
            } else {
                format!("{prefix}{i}")
            }
        })
        .collect()
}

/// The strongly connected groups of more than one file (Tarjan's algorithm).
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.edges.contains_key(w) {
                continue;
            }
            if !s.index.contains_key(w) {
                visit(w, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.stack.contains(&w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut group = Vec::new();
            while let Some(w) = s.stack.pop() {
                group.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if group.len() > 1 {
                group.sort();
                s.out.push(group);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(v, &mut state);
        }
    }
    state.out
}

/// Checks every file under `src` against `layers`; returns one line per violation.
fn check_crate(src: &Path, layers: &[&[&str]]) -> Vec<String> {
    let layer_of: BTreeMap<&str, usize> = layers
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i + 1)))
        .collect();
    let lib = fs::read_to_string(src.join("lib.rs")).expect("lib.rs of the crate");
    let lib = strip(&lib);
    let (mut modules, reexports) = read_root(&lib);
    let test_modules: Vec<String> = cfg_test_modules(&lib).into_iter().map(|(n, _)| n).collect();
    modules.retain(|m| !test_modules.contains(m));
    let mut violations = Vec::new();
    for module in &modules {
        if !layer_of.contains_key(module.as_str()) {
            violations.push(format!(
                "src/{module}: the module is in no layer of the table: add it where it \
                 belongs (and to ARCHITECTURE.md)"
            ));
        }
    }
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let tests = test_files(&files);
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let Some(from) = top_module(rel) else {
            continue; // lib.rs: the root re-exports from every module
        };
        if tests.contains(&file) {
            continue;
        }
        let Some(&from_layer) = layer_of.get(from.as_str()) else {
            continue; // reported above
        };
        let text = fs::read_to_string(&file).expect("source file");
        for (line, name) in crate_paths(&strip(&text)) {
            let place = format!("src/{}:{line}", rel.display());
            let to = if modules.contains(&name) {
                name.clone()
            } else if let Some(module) = reexports.get(&name) {
                module.clone()
            } else {
                violations.push(format!(
                    "{place}: crate::{name} is neither a module nor a name lib.rs re-exports \
                     from one"
                ));
                continue;
            };
            if to == from {
                continue;
            }
            let Some(&to_layer) = layer_of.get(to.as_str()) else {
                continue; // reported above
            };
            if to_layer >= from_layer {
                let how = if to_layer == from_layer {
                    "its own layer"
                } else {
                    "a higher layer"
                };
                violations.push(format!(
                    "{place}: {from} (layer {from_layer}) imports {to} (layer {to_layer}, \
                     {how}) through crate::{name}"
                ));
            }
        }
    }
    violations
}

/// The top-level module a file belongs to (`exec/plan/mod.rs` -> `exec`), `None` for
/// the crate root.
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_owned())
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("source directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files that are test modules (`#[cfg(test)] mod tests;` beside them).
fn test_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for file in files {
        let text = strip(&fs::read_to_string(file).expect("source file"));
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs") => file.parent().expect("parent").to_path_buf(),
            _ => file.with_extension(""),
        };
        for name in cfg_test_modules(&text)
            .into_iter()
            .filter_map(|(name, inline)| (!inline).then_some(name))
        {
            out.push(dir.join(format!("{name}.rs")));
            out.push(dir.join(&name).join("mod.rs"));
        }
    }
    out
}

/// The module names lib.rs declares, and each name it re-exports with the module it
/// comes from (`pub use crate::digest::{Digest, Hasher};`, `pub use self::x::Y;`).
fn read_root(lib: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut modules = Vec::new();
    let mut reexports = BTreeMap::new();
    for statement in lib.split(';') {
        let words: Vec<&str> = statement.split_whitespace().collect();
        let Some(at) = words.iter().position(|w| *w == "mod" || *w == "use") else {
            continue;
        };
        let Some(rest) = words.get(at + 1..).map(|w| w.join(" ")) else {
            continue;
        };
        if words[at] == "mod" {
            if !rest.contains('{') && is_ident(&rest) {
                modules.push(rest);
            }
            continue;
        }
        let path = rest
            .strip_prefix("crate::")
            .or_else(|| rest.strip_prefix("self::"))
            .unwrap_or(&rest);
        let Some((module, tail)) = path.split_once("::") else {
            continue;
        };
        for name in tail
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|n| is_ident(n) && !matches!(*n, "self" | "as" | "super" | "crate"))
        {
            reexports.insert(name.to_owned(), module.to_owned());
        }
    }
    (modules, reexports)
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Every `crate::NAME` of `code` (already [`strip`]ped) outside `#[cfg(test)]` modules,
/// with its line: for `crate::{a::X, b}` each item's first name.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let skipped = cfg_test_spans(code);
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("crate::") {
        let at = from + found;
        from = at + "crate::".len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue; // `my_crate::`, not this crate
        }
        if skipped.iter().any(|(s, e)| (*s..*e).contains(&at)) {
            continue;
        }
        let line = code[..at].matches('\n').count() + 1;
        let rest = &code[from..];
        if rest.starts_with('{') {
            for (offset, name) in group_heads(rest) {
                let line = line + rest[..offset].matches('\n').count();
                out.push((line, name));
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push((line, name));
            }
        }
    }
    out
}

/// The first name of each top-level item of the group `{...}` at the start of `group`,
/// with its offset.
fn group_heads(group: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    let mut chars = group.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_head = true,
            c if expect_head && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                let mut name = c.to_string();
                while let Some((_, c)) = chars.peek().copied() {
                    if !(c.is_alphanumeric() || c == '_') {
                        break;
                    }
                    name.push(c);
                    chars.next();
                }
                out.push((i, name));
                expect_head = false;
            }
            _ => {}
        }
    }
    out
}

/// `#[cfg(test)] mod NAME` declarations of `code`: the name and whether the module is
/// written inline (`{ ... }`) rather than in a file of its own.
fn cfg_test_modules(code: &str) -> Vec<(String, bool)> {
    cfg_test_items(code)
        .into_iter()
        .map(|(name, span)| (name, span.is_some()))
        .collect()
}

/// The byte spans of the inline `#[cfg(test)] mod NAME { ... }` modules of `code`.
fn cfg_test_spans(code: &str) -> Vec<(usize, usize)> {
    cfg_test_items(code)
        .into_iter()
        .filter_map(|(_, span)| span)
        .collect()
}

fn cfg_test_items(code: &str) -> Vec<(String, Option<(usize, usize)>)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find("#[cfg(test)]") {
        let start = from + found;
        from = start + 1;
        // Further attributes may stand between the cfg and the item.
        let mut rest = &code[start + "#[cfg(test)]".len()..];
        loop {
            rest = rest.trim_start();
            if rest.starts_with("#[") {
                match rest.find(']') {
                    Some(end) => rest = &rest[end + 1..],
                    None => break,
                }
            } else {
                break;
            }
        }
        let rest = rest.strip_prefix("pub(crate) ").unwrap_or(rest);
        let Some(rest) = rest.strip_prefix("mod ") else {
            continue;
        };
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let after = rest.trim_start()[name.len()..].trim_start();
        if after.starts_with(';') {
            out.push((name, None));
            continue;
        }
        let open = code.len() - after.len();
        let mut depth = 0;
        let mut end = code.len();
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, Some((start, end))));
    }
    out
}

/// `code` with comments and the contents of string and character literals blanked
/// (line breaks kept, so lines still count).
fn strip(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && matches!(next, Some('"' | '#')) && !ident_before(&chars, i) {
            // A raw string: r"..." or r#"..."#, closed by the same number of #.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', hashes))
                .collect();
            let body_start = j + 1;
            let mut k = body_start;
            while k < chars.len() && !chars[k..].starts_with(&close.chars().collect::<Vec<_>>()) {
                k += 1;
            }
            out.push('"');
            out.extend(
                chars[body_start..k.min(chars.len())]
                    .iter()
                    .map(|c| blank(*c)),
            );
            out.push('"');
            i = (k + close.chars().count()).min(chars.len());
        } else if c == '"' {
            out.push('"');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else if c == '\'' && (chars.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A character literal ('"', '\n', '\''), not a lifetime.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\\') {
                j += 2;
            } else {
                j += 1;
            }
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(chars: &[char], i: usize) -> bool {
    i.checked_sub(1)
        .and_then(|j| chars.get(j))
        .is_some_and(|c| c.is_alphanumeric() || *c == '_')
}
