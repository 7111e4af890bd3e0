#!/usr/bin/env bash
# Stop a stack that tests/stack/start.sh started, by the process ids it
# recorded: SIGTERM to each process group, SIGKILL to what is left after five
# seconds, then a wait until all are gone. The logs stay in the state directory.
#
# Usage: tests/stack/stop.sh [STATE_DIR]; see usage() below.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/stack/lib.sh
source "$here/lib.sh"

usage() {
    cat <<'EOF'
Usage: tests/stack/stop.sh [STATE_DIR]

Stop the processes that tests/stack/start.sh started and recorded in
STATE_DIR/pids. The directory and its logs stay.

  STATE_DIR   the stack's state directory (default $IPC_STACK_DIR, else
              ${TMPDIR:-/tmp}/ipc-stack). A directory that start.sh did not
              create is rejected, and a recorded process id that now belongs
              to another process is left alone.
  -h, --help  show this help
EOF
}

parse_arguments stop.sh "$@"
pids_file="$state/pids"

if [[ ! -e "$state" ]]; then
    echo "stop.sh: $state does not exist; nothing to stop" >&2
    exit 0
fi
if [[ ! -d "$state" ]] || ! is_stack_state_dir "$state"; then
    echo "stop.sh: $state is not the state directory of a stack (it has no $stack_marker file), so stop.sh signals nothing; give the directory that start.sh printed" >&2
    exit 1
fi
if [[ ! -s "$pids_file" ]]; then
    echo "stop.sh: no processes recorded in $state; nothing to stop" >&2
    exit 0
fi
# The command lines of the stack's processes contain the absolute path.
state="$(cd "$state" && pwd)"

# Stop in the reverse order of starting, and only processes that are still the
# ones start.sh recorded.
pids=()
while read -r name pid start_time; do
    if is_stack_process "$pid" "$start_time" "$state"; then
        pids+=("$pid")
    elif [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "stop.sh: process $pid is no longer $name of this stack; left alone" >&2
    fi
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
