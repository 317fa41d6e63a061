#!/usr/bin/env bash
# Fuzzes the message parser and validator (fuzz/fuzz_targets/parse.rs) with
# libFuzzer through cargo-fuzz, starting from the seed corpus in
# fuzz/corpus/parse. New inputs go to a scratch directory, so the committed
# seeds stay as they are; crashes land in fuzz/artifacts/parse.
#
#   bash scripts/fuzz.sh          # 10 minutes
#   bash scripts/fuzz.sh 60       # 60 seconds
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
seconds="${1:-600}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo-fuzz needs nightly compiler flags (sanitizers); the machine has only a
# stable toolchain, which accepts them with RUSTC_BOOTSTRAP.
export RUSTC_BOOTSTRAP=1
scratch="${FUZZ_SCRATCH:-$(mktemp -d)}"
mkdir -p "$scratch"
cargo fuzz run parse "$scratch" fuzz/corpus/parse -- \
  -max_total_time="$seconds" -max_len=70000 -timeout=10 -print_final_stats=1
