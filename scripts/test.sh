#!/usr/bin/env bash
# The whole test suite: formatting, lints, the binaries the end-to-end tests drive, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> building the binaries the end-to-end tests run"
cargo build --workspace --bins --examples
echo "==> cargo test"
cargo test --workspace
