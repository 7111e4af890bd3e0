#!/usr/bin/env bash
# The quick-start demo of image-patch-controller, in one command:
#
#   ./demo/run.sh            # with Helm 4
#   ./demo/run.sh --helm3    # with Helm 3
#
# It installs the Debian packages that the local stack needs when run as root;
# without root it names the missing ones and stops. It builds the stack's tools
# and the product's binaries when they are missing, and runs the demo binary of
# tests/e2e. The demo starts a local control plane, a
# registry and a Slack stand-in, installs the product from manifests/, deploys a
# Mojaloop-shaped chart, and walks through the Slack notice, an approval,
# `helm upgrade` and the rollback. Every process it starts is stopped when it
# ends, also on failure or Ctrl-C.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# PATH with rustup's and Go's directories, and step().
# shellcheck source=tests/tools/env.sh
source tests/tools/env.sh

if [[ $(id -u) -eq 0 ]]; then
    step "Installing missing Debian packages"
    tests/tools/install-deps.sh --demo
else
    step "Checking Debian packages (not root, so none are installed)"
    # install-deps.sh names the missing packages and the command that installs them.
    if ! tests/tools/install-deps.sh --demo --check; then
        echo "demo: stopped, because the demo needs these packages. Install them and run it again." >&2
        exit 1
    fi
fi

step "Building or reusing the local stack's tools"
IPC_TOOLS_DIR="$(tests/tools/build.sh | tail -n 1)"
export IPC_TOOLS_DIR

step "Building the webhook, the scanner and the demo"
cargo build --locked -p image-patch-webhook -p image-patch-scanner -p image-patch-e2e --bins

# Temporary files of the stack (etcd data, certificates, logs) go into one
# directory that is removed on exit. The stack's processes die with the demo.
work_dir="$(mktemp -d -t image-patch-demo.XXXXXX)"
demo_pid=
# shellcheck disable=SC2317 # shellcheck 0.9 misses that the EXIT trap calls it.
cleanup() {
    if [[ -n "$demo_pid" ]] && kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        wait "$demo_pid" 2>/dev/null || true
    fi
    rm -rf "$work_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

target_dir="${CARGO_TARGET_DIR:-target}"
started=$SECONDS
TMPDIR="$work_dir" "$target_dir/debug/image-patch-demo" "$@" &
demo_pid=$!
status=0
wait "$demo_pid" || status=$?
demo_pid=
echo "demo: finished in $((SECONDS - started)) s with status $status" >&2
exit "$status"
