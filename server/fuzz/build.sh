#!/usr/bin/env bash
# Build the fuzz targets on the stable toolchain, with libFuzzer coverage instrumentation and no
# sanitizer: the flags `cargo fuzz build --sanitizer none` uses, all of them stable. `--target` keeps
# the flags off build scripts and proc-macros, which must not be instrumented.
# Binaries: server/fuzz/target/<host>/release/{framing,stanza}. See README.md.
set -euo pipefail
cd "$(dirname "$0")"
host="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-target}"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$host" "$@"
echo "fuzz targets: $CARGO_TARGET_DIR/$host/release/framing $CARGO_TARGET_DIR/$host/release/stanza"
