#!/usr/bin/env bash
# Run every test of image-patch-controller, on a fresh machine too. The script
# installs the Debian packages that the local stack needs and builds (or reuses)
# the Go-built control plane and Helm binaries. Then it runs clippy, the unit,
# integration and end-to-end tests, and the benchmarks in their quick mode.
#
# The benchmarks' quick mode only checks that each benchmark runs; figures are
# never compared against a limit here.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# PATH with rustup's and Go's directories, and step().
# shellcheck source=tests/tools/env.sh
source tests/tools/env.sh

step "Installing missing Debian packages"
tests/tools/install-deps.sh

step "Building or reusing the local stack's tools"
IPC_TOOLS_DIR="$(tests/tools/build.sh | tail -n 1)"
export IPC_TOOLS_DIR
echo "tools in $IPC_TOOLS_DIR" >&2

step "Checking formatting-independent lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Running unit, integration and end-to-end tests"
cargo test --workspace --locked

step "Checking that the benchmarks run (quick mode)"
cargo bench -p image-patch-common --locked -- --test
benches/webhook.sh --quick
benches/scanner.sh --quick
