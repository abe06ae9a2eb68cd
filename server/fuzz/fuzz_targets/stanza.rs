//! Fuzz target: arbitrary bytes after a fixed client stream header, each element through
//! `Stanza::parse`, `Stanza::to_element` and `error_reply`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::xmpp::fuzzing::stanza(data));
