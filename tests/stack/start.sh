#!/usr/bin/env bash
# Start the local test stack for a shell, the demo or a manual check. It runs
# etcd, kube-apiserver and kube-controller-manager as tests/support's Cluster
# starts them, a plain docker-registry, one with basic auth, and the Slack
# receiver, each on 127.0.0.1 at a free port. Everything goes into a state
# directory, by default ${TMPDIR:-/tmp}/ipc-stack, whose file `env` a shell can
# source. tests/stack/stop.sh stops it all, and with-stack.sh wraps a command in
# both.
#
# Usage: tests/stack/start.sh [STATE_DIR]; see usage() below.
# If starting fails or is interrupted, what was started is stopped again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=tests/stack/lib.sh
source "$here/lib.sh"
timeout_seconds=90

usage() {
    cat <<'EOF'
Usage: tests/stack/start.sh [STATE_DIR]

Start etcd, kube-apiserver, kube-controller-manager, two docker-registry
instances and a Slack receiver on 127.0.0.1, and print the path of an env file
to source.

  STATE_DIR   directory for the stack's files, logs and process ids (default
              $IPC_STACK_DIR, else ${TMPDIR:-/tmp}/ipc-stack). It must not
              exist, be empty, or be the state directory of an earlier stack
              that is no longer running; such a directory is deleted and
              created again. Any other directory is rejected and left as it is.
  -h, --help  show this help

Stop the stack with tests/stack/stop.sh STATE_DIR.
EOF
}

parse_arguments start.sh "$@"

if [[ -e "$state" && ! -d "$state" ]]; then
    echo "start.sh: $state exists and is not a directory; give a new or empty directory as STATE_DIR" >&2
    exit 1
fi
if [[ -d "$state" ]] && ! is_empty_dir "$state"; then
    # Only a state directory that start.sh created is deleted and reused.
    if ! is_stack_state_dir "$state"; then
        echo "start.sh: $state is not empty and has no $stack_marker file, so it is not the state directory of an earlier stack and was left as it is. Give a new or empty directory as STATE_DIR, or remove this one yourself." >&2
        exit 1
    fi
    if [[ -f "$state/pids" ]]; then
        absolute_state="$(cd "$state" && pwd)"
        while read -r name pid start_time; do
            if is_stack_process "$pid" "$start_time" "$absolute_state"; then
                echo "start.sh: a stack is already running from $state ($name, process $pid); run tests/stack/stop.sh $state first" >&2
                exit 1
            fi
        done <"$state/pids"
    fi
    rm -rf "$state"
fi
mkdir -p "$state"
echo "State directory of a stack that tests/stack/start.sh started; start.sh may delete it." >"$state/$stack_marker"
mkdir -p "$state/pki" "$state/logs"
state="$(cd "$state" && pwd)"
pki="$state/pki"

# on_failure [STATUS]: stop what was started and exit with STATUS or the last one.
on_failure() {
    local status=$?
    if (($# > 0)); then
        status=$1
    fi
    trap - ERR INT TERM
    echo "start.sh: starting the stack failed or was interrupted; stopping what was started (logs in $state/logs)" >&2
    "$here/stop.sh" "$state" >&2 || true
    exit "$status"
}
trap on_failure ERR
trap 'on_failure 130' INT TERM

tools="$("$repo/tests/tools/build.sh" | tail -n 1)"
slack_receiver="${IPC_SLACK_RECEIVER_BIN:-}"
if [[ -z "$slack_receiver" ]]; then
    echo "start.sh: building ipc-slack-receiver" >&2
    (cd "$repo" && cargo build --quiet -p image-patch-testsupport --bin ipc-slack-receiver)
    slack_receiver="${CARGO_TARGET_DIR:-$repo/target}/debug/ipc-slack-receiver"
fi
for program in openssl curl htpasswd python3 /usr/bin/docker-registry; do
    if ! command -v "$program" >/dev/null; then
        echo "start.sh: $program is missing; run tests/tools/install-deps.sh" >&2
        exit 1
    fi
done

# start NAME PROGRAM ARGS...: run in a session of its own, log to logs/NAME.log.
# The pids file records the name, the process id and its start time, which
# stop.sh compares before it sends a signal.
start() {
    local name="$1" pid start_time
    shift
    setsid "$@" >"$state/logs/$name.log" 2>&1 </dev/null &
    pid=$!
    start_time="$(process_start_time "$pid")" || start_time=-
    echo "$name $pid $start_time" >>"$state/pids"
    disown "$pid"
}

# wait_until NAME COMMAND...: poll COMMAND until it succeeds, failing if NAME exits.
wait_until() {
    local name="$1" pid deadline=$((SECONDS + timeout_seconds))
    shift
    pid="$(awk -v name="$name" '$1 == name { print $2 }' "$state/pids")"
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "start.sh: $name exited; last lines of its log:" >&2
            tail -n 30 "$state/logs/$name.log" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "start.sh: $name not ready after $timeout_seconds s; last lines of its log:" >&2
            tail -n 30 "$state/logs/$name.log" >&2
            return 1
        fi
        sleep 0.2
    done
}

# --- certificates -----------------------------------------------------------
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$1.key" 2>/dev/null; }
# issue NAME SUBJECT USAGE [SANS]: a certificate signed by the CA.
issue() {
    local name="$1" subject="$2" usage="$3" sans="${4:-}"
    key "$name"
    openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$usage"
        [[ -n "$sans" ]] && echo "subjectAltName=$sans"
    } >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -set_serial "0x$(openssl rand -hex 12)" -days 30 -extfile "$pki/$name.ext" \
        -out "$pki/$name.crt" 2>/dev/null
}
key ca
openssl req -x509 -new -key "$pki/ca.key" -subj /CN=image-patch-test-ca -days 30 -out "$pki/ca.crt" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign,digitalSignature
issue apiserver /CN=kube-apiserver serverAuth \
    IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
issue admin /O=system:masters/CN=image-patch-test-admin clientAuth
issue controller-manager /CN=system:kube-controller-manager clientAuth
key service-account
openssl pkey -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub"

# kubeconfig FILE USER CERT_NAME: a self-contained kubeconfig for a client certificate.
kubeconfig() {
    cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: image-patch-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$pki/$3.crt")
    client-key-data: $(base64 -w0 "$pki/$3.key")
contexts:
- name: image-patch-test
  context:
    cluster: image-patch-test
    user: $2
current-context: image-patch-test
KUBECONFIG
}

# --- control plane ----------------------------------------------------------
ports="$(free_ports 7)"
read -r etcd_port etcd_peer_port apiserver_port controller_manager_port \
    registry_port auth_registry_port slack_receiver_port <<<"$ports"
etcd_url="http://127.0.0.1:$etcd_port"
etcd_peer_url="http://127.0.0.1:$etcd_peer_port"
start etcd "$tools/etcd" --name=default --data-dir="$state/etcd" \
    --listen-client-urls="$etcd_url" --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$etcd_peer_url" --initial-advertise-peer-urls="$etcd_peer_url" \
    --initial-cluster="default=$etcd_peer_url" --unsafe-no-fsync=true --log-level=warn
wait_until etcd curl -sf "$etcd_url/health"

server="https://127.0.0.1:$apiserver_port"
start kube-apiserver "$tools/kube-apiserver" \
    --etcd-servers="$etcd_url" --cert-dir="$state/apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" --secure-port="$apiserver_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 \
    --service-cluster-ip-range=10.0.0.0/24 --authorization-mode=RBAC \
    --service-account-issuer="$server" \
    --service-account-key-file="$pki/service-account.pub" \
    --service-account-signing-key-file="$pki/service-account.key" \
    --allow-privileged=true --endpoint-reconciler-type=none --profiling=false
kubeconfig "$state/admin.kubeconfig" image-patch-test-admin admin
kubeconfig "$state/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
wait_until kube-apiserver curl -sf --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" "$server/readyz"

start kube-controller-manager "$tools/kube-controller-manager" \
    --kubeconfig="$state/controller-manager.kubeconfig" \
    --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
    --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
    --cert-dir="$state/controller-manager-certs" --secure-port="$controller_manager_port" --bind-address=127.0.0.1 \
    --use-service-account-credentials=true \
    --controllers='*,-cloud-node-lifecycle-controller,-service-lb-controller,-node-route-controller' \
    --service-account-private-key-file="$pki/service-account.key" --root-ca-file="$pki/ca.crt" \
    --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
    --leader-elect=false --profiling=false
wait_until kube-controller-manager "$tools/kubectl" --kubeconfig="$state/admin.kubeconfig" \
    get serviceaccount default -n default

# --- registries -------------------------------------------------------------
# registry_config NAME PORT [HTPASSWD]: a docker-registry config with its own storage.
registry_config() {
    local name="$1" port="$2" htpasswd="${3:-}"
    cat <<CONFIG
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $state/$name
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: image-patch-test-$port
health:
  storagedriver:
    enabled: false
CONFIG
    if [[ -n "$htpasswd" ]]; then
        printf 'auth:\n  htpasswd:\n    realm: image-patch-test\n    path: %s\n' "$htpasswd"
    fi
}
registry_config registry "$registry_port" >"$state/registry.yml"
start registry /usr/bin/docker-registry serve "$state/registry.yml"

auth_registry_user=ci
auth_registry_password="$(openssl rand -hex 12)"
htpasswd -bBnC 4 "$auth_registry_user" "$auth_registry_password" | sed '/^$/d' >"$state/htpasswd"
registry_config auth-registry "$auth_registry_port" "$state/htpasswd" >"$state/auth-registry.yml"
start auth-registry /usr/bin/docker-registry serve "$state/auth-registry.yml"

wait_until registry curl -sf "http://127.0.0.1:$registry_port/v2/"
auth_probe() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$auth_registry_port/v2/")" == 401 ]]; }
wait_until auth-registry auth_probe

# --- Slack receiver ---------------------------------------------------------
start slack-receiver "$slack_receiver" --addr "127.0.0.1:$slack_receiver_port" --url-file "$state/slack-url"
wait_until slack-receiver test -s "$state/slack-url"

cat >"$state/env" <<ENV
$stack_env_header
export IPC_STACK_DIR='$state'
export IPC_TOOLS_DIR='$tools'
export PATH='$tools':"\$PATH"
export KUBECONFIG='$state/admin.kubeconfig'
export IPC_APISERVER_URL='$server'
export IPC_REGISTRY='127.0.0.1:$registry_port'
export IPC_AUTH_REGISTRY='127.0.0.1:$auth_registry_port'
export IPC_AUTH_REGISTRY_USER='$auth_registry_user'
export IPC_AUTH_REGISTRY_PASSWORD='$auth_registry_password'
export IPC_SLACK_WEBHOOK_URL='$(cat "$state/slack-url")'
export IPC_SLACK_MESSAGES='$state/logs/slack-receiver.log'
ENV
trap - ERR INT TERM
echo "start.sh: stack running; logs in $state/logs; stop it with tests/stack/stop.sh $state" >&2
echo "$state/env"
