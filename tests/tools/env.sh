# shellcheck shell=bash
# Shell setup shared by tests/run.sh and demo/run.sh, to be sourced rather than run.

# A non-login shell (CI, cron) may lack rustup's and Go's directories on PATH.
for tool_dir in "${CARGO_HOME:-$HOME/.cargo}/bin" /usr/local/go/bin; do
    case ":$PATH:" in
        *":$tool_dir:"*) ;;
        *) if [[ -d "$tool_dir" ]]; then PATH="$tool_dir:$PATH"; fi ;;
    esac
done
unset tool_dir
export PATH

# Prints a section heading to stderr.
step() { printf '\n==> %s\n' "$*" >&2; }
