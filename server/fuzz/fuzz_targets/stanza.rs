//! Fuzz target: arbitrary bytes after a fixed client stream header on an authenticated stream, each
//! element through the envelope check a session applies (`router::envelope`), stamping, serialisation and
//! error replies.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::stanza(data));
