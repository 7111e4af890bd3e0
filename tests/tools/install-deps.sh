#!/usr/bin/env bash
# Install the Debian packages that the local test stack needs on a fresh machine.
# docker-registry runs the OCI registries and openssl makes the control plane's
# certificates. start.sh also uses curl to wait for readiness and htpasswd from
# apache2-utils to write the registry's bcrypt password file. The benchmarks load
# the webhook with wrk and measure the scanner with /usr/bin/time. The script reads
# the package index once and installs only what is missing, so a second run is
# quiet.
set -euo pipefail
packages=(docker-registry openssl curl ca-certificates apache2-utils wrk time)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$package")
    fi
done
if ((${#missing[@]} == 0)); then
    exit 0
fi
sudo=""
if ((EUID != 0)); then
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
