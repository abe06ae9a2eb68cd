//! Replays the checked-in fuzz seed corpus (`server/fuzz/corpus`) through the fuzz entry points, so
//! `cargo test` runs exactly what the fuzzers run, including every past crash turned regression.

use std::path::Path;

use crate::xmpp::fuzzing;

fn replay(target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        run(&data);
        count += 1;
    }
    count
}

#[test]
fn framing_corpus_replays() {
    assert!(replay("framing", fuzzing::framing) >= 5);
}

#[test]
fn stanza_corpus_replays() {
    assert!(replay("stanza", fuzzing::stanza) >= 5);
}
