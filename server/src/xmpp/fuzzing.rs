//! Entry points for the fuzz targets in `server/fuzz` (and for the corpus replay test), kept here so
//! `cargo test` exercises exactly what the fuzzers call. Not part of the public API.
