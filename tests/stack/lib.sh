# Helpers shared by start.sh and stop.sh. They parse the arguments, and they
# recognise a state directory and the processes that start.sh created, so that
# neither script deletes a directory or signals a process that belongs to
# someone else. free_ports chooses the stack's ports.
# shellcheck shell=bash

# The file that start.sh writes first into every state directory it creates.
stack_marker=.ipc-stack-state
# The first line of the env file, also written by start.sh before the marker existed.
stack_env_header="# Written by tests/stack/start.sh. Source it in a shell."

# parse_arguments SCRIPT ARGS...: prints the caller's usage() and exits for -h or
# --help, and exits with status 2 for an unknown option or a second argument.
# Otherwise it sets state to the STATE_DIR argument, else $IPC_STACK_DIR, else
# ${TMPDIR:-/tmp}/ipc-stack.
parse_arguments() {
    local script="$1"
    shift
    while (($# > 0)); do
        case "$1" in
            -h | --help)
                usage
                exit 0
                ;;
            --)
                shift
                break
                ;;
            -*)
                echo "$script: unknown option \"$1\" (see --help)" >&2
                exit 2
                ;;
            *) break ;;
        esac
    done
    if (($# > 1)); then
        echo "$script: expected at most one STATE_DIR, got $# arguments: $* (see --help)" >&2
        exit 2
    fi
    state="${1:-${IPC_STACK_DIR:-${TMPDIR:-/tmp}/ipc-stack}}"
}

# is_stack_state_dir DIR: succeeds when start.sh created DIR, because DIR
# contains the marker or an env file that start.sh wrote.
is_stack_state_dir() {
    local dir="$1" first_line
    [[ -f "$dir/$stack_marker" ]] && return 0
    [[ -f "$dir/env" ]] || return 1
    IFS= read -r first_line <"$dir/env" || return 1
    [[ "$first_line" == "$stack_env_header" ]]
}

# is_empty_dir DIR: succeeds when DIR has no entries, hidden ones included.
is_empty_dir() {
    [[ -z "$(find "$1" -mindepth 1 -maxdepth 1 -print -quit)" ]]
}

# process_start_time PID: prints the start time of process PID in clock ticks
# since boot (field 22 of /proc/PID/stat), or fails when there is no such process.
process_start_time() {
    local stat fields
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    # Field 2, the command name in brackets, may contain spaces and ")", so the
    # fields are counted from the last ")": field 3 is at index 0.
    read -ra fields <<<"${stat##*) }"
    echo "${fields[19]}"
}

# is_stack_process PID START_TIME STATE_DIR: succeeds when PID is still the
# process that start.sh recorded. A process id is reused after its process
# exits, so the start time must match. "-" means that the process had already
# exited when start.sh recorded it. An entry without a start time comes from an
# older start.sh, so the process's command line must then contain STATE_DIR, as
# the command line of every process that start.sh starts does.
is_stack_process() {
    local pid="$1" recorded="$2" state="$3" actual
    [[ "$pid" =~ ^[0-9]+$ && "$recorded" != "-" ]] || return 1
    actual="$(process_start_time "$pid")" || return 1
    if [[ -n "$recorded" ]]; then
        [[ "$actual" == "$recorded" ]]
    else
        [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == *"$state/"* ]]
    fi
}

# free_ports COUNT: prints COUNT distinct TCP ports, separated by spaces, that
# could each be bound on 127.0.0.1 a moment ago.
#
# The ports come from 10000 up to the start of the kernel's ephemeral range
# (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 by default on Linux).
# Outgoing connections take their local ports from that range, so on a busy
# machine they cannot take a port between this check and the server's bind.
# Binding, as tests/support's free_port does, also finds ports held by outgoing
# connections and sockets in TIME_WAIT, which a connect test misses. When fewer
# than 1000 ports lie below the range, the kernel chooses each port with a bind
# to port 0, as tests/support does.
free_ports() {
    python3 - "$1" <<'PYTHON'
import random
import socket
import sys

FIRST = 10000
count = int(sys.argv[1])
with open("/proc/sys/net/ipv4/ip_local_port_range") as range_file:
    ephemeral_first = int(range_file.read().split()[0])


def bind(port):
    """Binds port on 127.0.0.1 and returns the bound port, or None when it is in use."""
    with socket.socket() as listener:
        try:
            listener.bind(("127.0.0.1", port))
        except OSError:
            return None
        return listener.getsockname()[1]


ports = []
for _ in range(1000 * count):
    if len(ports) == count:
        break
    if ephemeral_first - FIRST < 1000:
        port = bind(0)
    else:
        candidate = random.randrange(FIRST, ephemeral_first)
        port = None if candidate in ports else bind(candidate)
    if port is not None and port not in ports:
        ports.append(port)
if len(ports) < count:
    sys.exit(f"free_ports: found {len(ports)} of {count} free TCP ports on 127.0.0.1")
print(*ports)
PYTHON
}
