#!/usr/bin/env bash
# A short run of every fuzz target from its committed corpus (seconds, not hours): a crash fails CI.
# cargo-fuzz builds with the toolchain's stable compiler here (no sanitizer, `-s none`).
set -euo pipefail
command -v cargo-fuzz >/dev/null 2>&1 || cargo install --locked --quiet cargo-fuzz
cd fuzz
seconds=${FUZZ_SECONDS:-10}
cargo fuzz build -s none --release
for target in $(cargo fuzz list); do
  # Run on a scratch copy so that CI does not grow the committed corpus.
  work=$(mktemp -d)
  cp -r "corpus/$target/." "$work/"
  cargo fuzz run -s none --release "$target" "$work" -- -max_total_time="$seconds" -max_len=8192 2>&1 | grep -E '^(Done|INFO: seed corpus)' || true
  rm -rf "$work"
  echo "fuzz $target: no crash in ${seconds}s"
done
