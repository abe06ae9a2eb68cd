//! Fuzz target: arbitrary bytes from the first byte of a client connection through `XmlStream` under the
//! pre-authentication limits production starts with (header, framing, restricted XML, limits), optionally
//! restarting under the full limits as after SASL, with serialise-and-reparse and envelope checks on
//! every element.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald::fuzzing::framing(data));
