#!/usr/bin/env bash
# Supply-chain checks with cargo-deny (deny.toml): licences, bans and sources
# always; security advisories too when the RustSec database can be fetched
# (these build machines have no route to it).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked

cargo deny --locked check licenses bans sources
if timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny --locked check advisories
else
  echo "[audit] advisories not checked: the RustSec database cannot be fetched from here" >&2
fi
