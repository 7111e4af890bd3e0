#!/usr/bin/env bash
# Rewrite the Go modules under tests/tools from versions.env: the Kubernetes
# module with one replace line per staging module, the etcd module and the two
# Helm modules. Run it after changing versions.env, then commit the go.mod and
# go.sum files it changed. It needs the Go module proxy, not a build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
export GOFLAGS=-mod=mod

# Start each module from an empty go.mod so that no stale pin survives.
reset_module() {
    local dir="$1" path="$2"
    rm -f "$dir/go.mod" "$dir/go.sum"
    (cd "$dir" && go mod init "$path" >/dev/null 2>&1 && go mod edit -go=1.26.0)
}

reset_module "$here/etcd" image-patch-controller/tests/tools/etcd
(cd "$here/etcd" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)

reset_module "$here/helm3" image-patch-controller/tests/tools/helm3
(cd "$here/helm3" && go get -tool "helm.sh/helm/v3/cmd/helm@$HELM3_VERSION" && go mod tidy)

reset_module "$here/helm4" image-patch-controller/tests/tools/helm4
(cd "$here/helm4" && go get -tool "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION" && go mod tidy)

# The Kubernetes module comes last: the modules in its subdirectories must
# exist first, or go mod tidy would count their packages as its own.
# Kubernetes: k8s.io/kubernetes requires each staging module at v0.0.0 and
# resolves it through replace lines to its own tree, which a dependent module
# does not see. Pin each one to the matching published release instead.
reset_module "$here" image-patch-controller/tests/tools
kube_mod="$(cd "$here" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",$/\1/p')"
staging_modules="$(sed -n 's/^\s*\(k8s\.io\/[a-z0-9-]*\) v0\.0\.0$/\1/p' "$kube_mod" | sort -u)"
(
    cd "$here"
    go mod edit -require="k8s.io/kubernetes@$KUBERNETES_VERSION"
    for module in $staging_modules; do
        go mod edit -replace="$module=$module@$STAGING"
    done
    for tool in kube-apiserver kube-controller-manager kubectl; do
        go mod edit -tool="k8s.io/kubernetes/cmd/$tool"
    done
    go mod tidy
)
