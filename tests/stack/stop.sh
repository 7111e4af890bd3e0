#!/usr/bin/env bash
# Stop a stack that tests/stack/start.sh started, by the process ids it
# recorded: SIGTERM to each process group, SIGKILL to what is left after five
# seconds, then a wait until all are gone. The logs stay in the state directory.
#
# Usage: tests/stack/stop.sh [STATE_DIR]
set -euo pipefail
state="${1:-${IPC_STACK_DIR:-${TMPDIR:-/tmp}/ipc-stack}}"
pids_file="$state/pids"
if [[ ! -s "$pids_file" ]]; then
    exit 0
fi
pids=()
while read -r _ pid; do
    pids+=("$pid")
done < <(tac "$pids_file")
for pid in "${pids[@]}"; do
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
done
deadline=$((SECONDS + 5))
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
done
# Return only when every process is gone, so that a caller can check for leftovers.
for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
        sleep 0.1
    done
done
rm -f "$pids_file"
echo "stop.sh: stopped the stack in $state" >&2
