//! The folders show the architecture, and the arrows run one way:
//! domain <- ledger <- ingest / feed <- api <- startup. These tests read
//! the sources, so a change that points an arrow back fails here, not in
//! review.

use std::path::{Path, PathBuf};

/// The layers in order; each may use only the layers before it (and the
/// infrastructure modules, which are in no layer).
const LAYERS: [&[&str]; 5] = [
    &["domain"],
    &["ledger"],
    &["ingest", "feed"],
    &["api"],
    &["startup"],
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source files of a top-level module (`src/x.rs` or `src/x/…`), with
/// comments left out, since a doc comment may name any module.
fn code_of(module: &str) -> Vec<(PathBuf, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let dir = src.join(module);
    if dir.is_dir() {
        sources(&dir, &mut files);
    }
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        files.push(file);
    }
    assert!(!files.is_empty(), "no sources for {module}");
    files
        .into_iter()
        .map(|path| {
            let code = code_in(&path);
            (path, code)
        })
        .collect()
}

/// A source file's text without its comment lines.
fn code_in(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let code: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect();
    code.join("\n")
}

#[test]
fn no_layer_uses_a_layer_after_it_or_beside_it() {
    let mut broken = Vec::new();
    for (i, layer) in LAYERS.iter().enumerate() {
        let forbidden: Vec<&str> = LAYERS[i..].iter().flat_map(|l| l.iter().copied()).collect();
        for module in *layer {
            for (path, code) in code_of(module) {
                for other in forbidden.iter().filter(|other| *other != module) {
                    if code.contains(&format!("crate::{other}::"))
                        || code.contains(&format!("crate::{other};"))
                    {
                        broken.push(format!("{} uses crate::{other}", path.display()));
                    }
                }
            }
        }
    }
    assert!(broken.is_empty(), "arrows pointing back: {broken:#?}");
}

#[test]
fn handlers_ask_the_ledger_and_the_feed_never_a_pool() {
    let reaching: Vec<String> = code_of("api")
        .into_iter()
        .filter(|(_, code)| code.contains(".pool()"))
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        reaching.is_empty(),
        "handlers reaching a pool: {reaching:?}"
    );
}

/// Each table and sequence of the schema, and the one place under `src/`
/// whose SQL may name it: a folder (ending in `/`) or a file. Everything
/// else asks that module.
const OWNERS: [(&str, &str); 8] = [
    ("event_log", "ledger/"),
    ("event_log_seq_seq", "ledger/"),
    ("stock", "ledger/"),
    ("open_movements", "ledger/"),
    ("stock_thresholds", "feed/levels.rs"),
    ("product_thresholds", "feed/levels.rs"),
    ("threshold_history", "feed/levels.rs"),
    ("change_relay", "feed/position.rs"),
];

/// The tables and sequences `code` names in SQL: after a keyword that
/// takes a relation, or, for a sequence, anywhere.
fn named_in_sql(code: &str) -> Vec<&'static str> {
    OWNERS
        .iter()
        .map(|&(name, _)| name)
        .filter(|name| {
            let relation = format!(r"(?i)\b(from|join|into|update|table)\s+(only\s+)?{name}\b");
            let sequence = name.ends_with("_seq") && code.contains(name);
            sequence || regex::Regex::new(&relation).unwrap().is_match(code)
        })
        .collect()
}

/// Every source file under `src/`, by its path below `src/`, with
/// comments left out.
fn all_code() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).unwrap().display().to_string();
            (relative, code_in(&path))
        })
        .collect()
}

#[test]
fn every_table_and_sequence_is_named_in_sql_only_by_its_owner() {
    assert_eq!(
        named_in_sql("SELECT low FROM stock_thresholds WHERE true"),
        ["stock_thresholds"],
        "the check must see a table named in SQL"
    );
    assert_eq!(
        named_in_sql("nextval('event_log_seq_seq')"),
        ["event_log_seq_seq"]
    );
    let mut broken = Vec::new();
    for (path, code) in all_code() {
        for name in named_in_sql(&code) {
            let owner = OWNERS.iter().find(|(n, _)| *n == name).unwrap().1;
            if !path.starts_with(owner) {
                broken.push(format!("{path} names {name}, which {owner} owns"));
            }
        }
    }
    assert!(broken.is_empty(), "SQL outside its owner: {broken:#?}");
}

/// The module a `super::…` or `crate::…` path in `file` (a path below
/// `src/`) reaches, as a path below `src/` without its extension: as far
/// as the path names modules (files or folders).
fn reached(file: &str, path: &str) -> (String, Option<String>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut here: Vec<&str> = file.trim_end_matches(".rs").split('/').collect();
    if here.last() == Some(&"mod") || here.last() == Some(&"lib") {
        here.pop();
    }
    let mut segments = path.split("::");
    let mut module: Vec<String> = match segments.next() {
        Some("crate") => Vec::new(),
        _ => here[..here.len().saturating_sub(1)]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    };
    for segment in segments {
        let candidate = [module.join("/"), segment.to_string()].join("/");
        let candidate = candidate.trim_start_matches('/');
        if src.join(format!("{candidate}.rs")).is_file() || src.join(candidate).is_dir() {
            module.push(segment.to_string());
        } else {
            return (module.join("/"), Some(segment.to_string()));
        }
    }
    (module.join("/"), None)
}

/// Every `super::…` and `crate::…` path in the non-test code of a file,
/// a `use` group (`super::{a, b::c}`) giving one path per member.
fn paths_in(code: &str) -> Vec<String> {
    let code = code.split("#[cfg(test)]").next().unwrap_or("");
    let re = regex::Regex::new(r"\b(super|crate)((?:::\w+)*)(::\{([^}]*)\})?").unwrap();
    let mut paths = Vec::new();
    for m in re.captures_iter(code) {
        let base = format!("{}{}", &m[1], &m[2]);
        match m.get(4) {
            Some(group) => paths.extend(
                group
                    .as_str()
                    .split(',')
                    .map(|member| member.trim().split("::{").next().unwrap_or("").trim())
                    .filter(|member| !member.is_empty() && *member != "self")
                    .map(|member| format!("{base}::{member}")),
            ),
            None => paths.push(base),
        }
    }
    paths
}

#[test]
fn no_file_imports_from_the_module_of_its_own_folder() {
    let mut broken = Vec::new();
    for (file, code) in all_code() {
        let folder = file.rsplit_once('/').map_or("", |(dir, _)| dir);
        let is_folder_module = file.ends_with("/mod.rs") || file == "lib.rs";
        for path in paths_in(&code) {
            let (module, item) = reached(&file, &path);
            // An item of an enclosing folder's own module (its mod.rs).
            let enclosing = !module.is_empty()
                && (folder == module || folder.starts_with(&format!("{module}/")));
            if item.is_some() && enclosing && !(is_folder_module && folder == module) {
                broken.push(format!("{file} uses {path}"));
            }
        }
    }
    assert!(broken.is_empty(), "upward imports: {broken:#?}");
}

#[test]
fn the_modules_of_a_folder_use_each_other_in_no_circle() {
    use std::collections::{BTreeMap, BTreeSet};
    // Edges between siblings: a use anywhere below one sibling of
    // anything below another counts as a use of that sibling.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (file, code) in all_code() {
        let from = file
            .trim_end_matches(".rs")
            .trim_end_matches("/mod")
            .to_string();
        for path in paths_in(&code) {
            let (to, _) = reached(&file, &path);
            let (a, b): (Vec<&str>, Vec<&str>) =
                (from.split('/').collect(), to.split('/').collect());
            let shared = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
            if to.is_empty() || shared >= a.len() || shared >= b.len() {
                continue;
            }
            let sibling = |p: &[&str]| p[..=shared].join("/");
            edges.entry(sibling(&a)).or_default().insert(sibling(&b));
        }
    }
    // A walk from each module along the edges: meeting a module still on
    // the walk's path closes a circle.
    fn walk<'a>(
        at: &'a str,
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
        circles: &mut Vec<String>,
    ) {
        if let Some(i) = path.iter().position(|m| *m == at) {
            circles.push(format!("{} -> {at}", path[i..].join(" -> ")));
            return;
        }
        if !done.insert(at) {
            return;
        }
        path.push(at);
        for next in edges.get(at).into_iter().flatten() {
            walk(next, edges, path, done, circles);
        }
        path.pop();
    }
    let (mut done, mut circles) = (BTreeSet::new(), Vec::new());
    for start in edges.keys() {
        walk(start, &edges, &mut Vec::new(), &mut done, &mut circles);
    }
    assert!(
        circles.is_empty(),
        "modules that use each other: {circles:#?}"
    );
}
