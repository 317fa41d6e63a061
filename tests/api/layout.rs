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
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect();
            (path, code.join("\n"))
        })
        .collect()
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
