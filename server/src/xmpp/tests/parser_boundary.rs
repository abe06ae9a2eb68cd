//! DESIGN.md's boundary "nothing outside `xmpp/` knows the parser": no source file of the server outside
//! `server/src/xmpp/` may name the parser crate; what they need is re-exported by `crate::xmpp`.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn nothing_outside_xmpp_names_the_parser_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let protocol = src.join("xmpp");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz"),
        &mut files,
    );
    let offenders: Vec<String> = files
        .iter()
        .filter(|path| !path.starts_with(&protocol))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            text.contains("xmpp_parsers") || text.contains("minidom::")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        files.len() > 40,
        "the walk found only {} files",
        files.len()
    );
    assert!(
        offenders.is_empty(),
        "these files name the parser crate; use the re-exports of `crate::xmpp` instead: {offenders:?}"
    );
}
