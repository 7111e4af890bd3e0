#!/usr/bin/env bash
# Build the local test stack's tools, or reuse an earlier build, and print the
# directory that contains them as the last line on stdout.
#
# The binaries are kube-apiserver, kube-controller-manager and kubectl (from
# k8s.io/kubernetes), etcd, helm3 and helm4, at the versions that versions.env
# pins. They are cached outside the work tree, under
#   ${XDG_CACHE_HOME:-$HOME/.cache}/image-patch-controller/tools/<key>/bin
# where <key> is derived from versions.env and the Go version, so only the first
# run on a machine pays for the build (about 15 minutes on 2 cores).
# Progress goes to stderr and the Go build output to build.log in the cache.
#
# With --check it builds nothing: it prints the directory if the build there is
# complete and fails otherwise. The Rust test helpers use that form.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

go_version="$(go env GOVERSION)"
key="k8s-$KUBERNETES_VERSION-$(
    { cat "$here/versions.env"; echo "$go_version"; } | sha256sum | cut -c1-12
)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/image-patch-controller/tools"
dest="$cache_root/$key"
bin="$dest/bin"
tools=(kube-apiserver kube-controller-manager kubectl etcd helm3 helm4)

all_built() {
    [[ -f "$dest/complete" ]] || return 1
    local tool
    for tool in "${tools[@]}"; do
        [[ -x "$bin/$tool" ]] || return 1
    done
}

if all_built; then
    echo "$bin"
    exit 0
fi
if [[ "${1:-}" == "--check" ]]; then
    echo "build.sh: no complete build in $dest" >&2
    exit 1
fi

# Refuse to build from go.mod files that pin other versions than versions.env,
# because the cache key would then name binaries of another release.
check_pin() {
    local file="$1" pattern="$2"
    if ! grep -Eq "$pattern" "$here/$file"; then
        echo "build.sh: $file does not match versions.env ($pattern); run tests/tools/update-modules.sh" >&2
        exit 1
    fi
}
check_pin go.mod "k8s\.io/kubernetes $KUBERNETES_VERSION( |$)"
check_pin go.mod "k8s\.io/api => k8s\.io/api $STAGING$"
check_pin etcd/go.mod "go\.etcd\.io/etcd/server/v3 $ETCD_VERSION$"
check_pin helm3/go.mod "helm\.sh/helm/v3 $HELM3_VERSION( |$)"
check_pin helm4/go.mod "helm\.sh/helm/v4 $HELM4_VERSION( |$)"

mkdir -p "$dest"
# Two test runs that start at once must not build the same directory twice.
exec 9>"$dest/lock"
flock 9
if all_built; then
    echo "$bin"
    exit 0
fi

log="$dest/build.log"
: >"$log"
work="$(mktemp -d "$dest/build.XXXXXX")"
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
echo "build.sh: building tools for $key with $go_version; log in $log" >&2
start=$SECONDS

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
kube_minor="${KUBERNETES_VERSION#v1.}"
kube_minor="${kube_minor%%.*}"
kube_ldflags="-s -w"
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    kube_ldflags+=" -X $package.gitVersion=$KUBERNETES_VERSION"
    kube_ldflags+=" -X $package.gitMajor=1 -X $package.gitMinor=$kube_minor"
    kube_ldflags+=" -X $package.gitTreeState=clean"
done

build() {
    local name="$1" dir="$2"
    shift 2
    echo "build.sh: $name" >&2
    if ! (cd "$here/$dir" && go build -trimpath "$@") >>"$log" 2>&1; then
        echo "build.sh: building $name failed; last lines of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}

# One go build for the three Kubernetes commands shares their common packages.
build "kube-apiserver, kube-controller-manager, kubectl" . \
    -ldflags "$kube_ldflags" -o "$work/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kubectl
build etcd etcd -ldflags "-s -w" -o "$work/etcd" .
build helm3 helm3 \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM3_VERSION" \
    -o "$work/helm3" helm.sh/helm/v3/cmd/helm
build helm4 helm4 \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION" \
    -o "$work/helm4" helm.sh/helm/v4/cmd/helm

rm -rf "$bin"
mv "$work" "$bin"
cp "$here/versions.env" "$dest/versions.env"
touch "$dest/complete"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$bin"
