#!/usr/bin/env bash
# Run a command with the local test stack: start it, export its environment
# (see start.sh), run the command, and stop the stack when the command ends,
# fails or is interrupted. The stack lives in a fresh temporary directory.
#
# Usage: tests/stack/with-stack.sh COMMAND [ARGS...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if (($# == 0)); then
    echo "usage: $0 COMMAND [ARGS...]" >&2
    exit 2
fi
state="$(mktemp -d "${TMPDIR:-/tmp}/ipc-stack.XXXXXX")"
trap '"$here/stop.sh" "$state"' EXIT
trap 'exit 130' INT TERM
# shellcheck source=/dev/null
source "$("$here/start.sh" "$state")"
"$@"
