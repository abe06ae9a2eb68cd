//! Fuzz target: arbitrary bytes from the first byte of a connection through `XmlStream`
//! (header, framing, restricted XML, limits), with serialise-and-reparse checks on every element.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::xmpp::fuzzing::framing(data));
