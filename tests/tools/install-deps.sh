#!/usr/bin/env bash
# Install the Debian packages that the local test stack needs on a fresh machine.
# docker-registry runs the OCI registries, openssl makes the control plane's
# certificates, and ca-certificates lets build.sh download Go modules. start.sh
# also uses curl to wait for readiness and htpasswd from apache2-utils to write
# the registry's bcrypt password file, and python3 to find free ports. The
# benchmarks load the webhook with wrk and measure the scanner with
# /usr/bin/time. The script reads the package index once and installs only what
# is missing, so a second run is quiet.
#
# Options:
#   --demo    only the packages that demo/run.sh needs: docker-registry (unless
#             IPC_DOCKER_REGISTRY names another registry binary), openssl and
#             ca-certificates
#   --check   install nothing: name the missing packages and the command that
#             installs them, and exit with status 1 when any is missing
#
# Without root, the script installs with sudo. Without root and sudo, it names
# the missing packages and the command to run as root, and exits with status 1.
set -euo pipefail

check_only=false
demo_only=false
for argument in "$@"; do
    case "$argument" in
        --check) check_only=true ;;
        --demo) demo_only=true ;;
        *) echo "install-deps.sh: unknown option \"$argument\" (options: --check, --demo)" >&2; exit 2 ;;
    esac
done

if $demo_only; then
    # The demo's stack runs IPC_DOCKER_REGISTRY in place of Debian's docker-registry.
    packages=(openssl ca-certificates)
    [[ -n ${IPC_DOCKER_REGISTRY:-} ]] || packages=(docker-registry "${packages[@]}")
else
    packages=(docker-registry openssl curl ca-certificates apache2-utils python3 wrk time)
fi
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi

# Prints the missing packages and the root command that installs them, to stderr.
report_missing() {
    local script
    script="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/install-deps.sh"
    echo "install-deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "install-deps.sh: install them as root with: $script${*:+ $*}" >&2
}

options=()
if $demo_only; then
    options+=(--demo)
fi
if $check_only; then
    report_missing "${options[@]}"
    exit 1
fi
sudo=""
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
        echo "install-deps.sh: not root, and sudo is not installed" >&2
        report_missing "${options[@]}"
        exit 1
    fi
    sudo=sudo
fi
echo "install-deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package starts a registry service on port 5000 of every interface where
# an init system runs one. The stack starts its own registries on loopback and
# needs none.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    $sudo systemctl stop docker-registry || true
    $sudo systemctl disable docker-registry >/dev/null 2>&1 || true
elif command -v service >/dev/null && service docker-registry status >/dev/null 2>&1; then
    $sudo service docker-registry stop >/dev/null || true
fi
