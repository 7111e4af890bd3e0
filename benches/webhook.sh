#!/usr/bin/env bash
# Webhook benchmark: the release webhook and a baseline server (axum and rustls, fixed
# response, no parsing) on the same loopback port and TLS settings, loaded in turn. A third
# server, the baseline that also parses each request with the webhook's parser, shows what
# reading the request costs on its own.
#
#   benches/webhook.sh [--quick] [--rounds N] [--seconds S]
#
# Each round starts the baseline, the parse-only server, then the webhook, one at a time on
# core 0, and loads each from core 1: `wrk` flat out for the throughput ratio, then
# `bench-rate` at 1,000 requests a second for latency. Resident memory is sampled from /proc while loaded.
# Results go to target/bench/webhook/ (summary.json, a table in summary.md, raw logs).
# --quick runs one round of about 2 s a step and fails only when a step did not run,
# never on a figure.
set -euo pipefail

quick=0
rounds=3
seconds=20
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; rounds=1; seconds=2 ;;
    --rounds) rounds="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--rounds N] [--seconds S]" >&2; exit 2 ;;
  esac
  shift
done

source "$(dirname "$0")/lib.sh"
prepare_output webhook
for tool in wrk openssl taskset python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: apt-get install $tool)" >&2; exit 1; }
done

build_release
bin="$target/release"

# The server runs on core 0 and the load generators on core 1. On one core they share it.
server_cpus=0
load_cpus=1
if [[ "$(nproc)" -lt 2 ]]; then load_cpus=0; fi

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$out/tls.key" -out "$out/tls.crt" 2>/dev/null
"$bin/bench-fixtures" --out "$out" --reviews 1000 > "$out/fixtures.json"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
address="127.0.0.1:$port"

server_pid=""
sampler_pid=""
stop_server() {
  if [[ -n "$sampler_pid" ]]; then kill "$sampler_pid" 2>/dev/null || true; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=""; fi
  if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=""; fi
}
trap stop_server EXIT

start_server() {
  local kind="$1" log="$2"
  if [[ "$kind" == webhook ]]; then
    taskset -c "$server_cpus" "$bin/image-patch-webhook" --listen "$address" \
      --tls-cert "$out/tls.crt" --tls-key "$out/tls.key" --approvals-file "$out/approvals.yaml" \
      --log-format json >"$log" 2>&1 &
  else
    local parse=()
    [[ "$kind" == parse-only ]] && parse=(--parse)
    taskset -c "$server_cpus" "$bin/bench-baseline" --listen "$address" \
      --tls-cert "$out/tls.crt" --tls-key "$out/tls.key" "${parse[@]}" >"$log" 2>&1 &
  fi
  server_pid=$!
  local probe="/mutate"
  [[ "$kind" == webhook ]] && probe="/readyz"
  for _ in $(seq 100); do
    if curl -sk --max-time 1 -o /dev/null -w '%{http_code}' "https://$address$probe" 2>/dev/null | grep -qE '^(200|405)$'; then
      return 0
    fi
    kill -0 "$server_pid" 2>/dev/null || { echo "$kind exited at start; see $log" >&2; exit 1; }
    sleep 0.1
  done
  echo "$kind did not become ready; see $log" >&2
  exit 1
}

# Samples the server's VmRSS every 200 ms into a file, one value in KiB a line.
start_sampler() {
  local file="$1"
  ( while kill -0 "$server_pid" 2>/dev/null; do
      awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || true
      sleep 0.2
    done ) >"$file" &
  sampler_pid=$!
}

check_webhook_rewrites() {
  # One review whose first container is an approved line at level 0 must come back with a patch.
  local answer
  answer="$(python3 - "$out/reviews.jsonl" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    review = json.loads(line)
    workload = review["request"]["object"]
    spec = workload["spec"].get("template", {}).get("spec", workload["spec"])
    if any(c["image"].startswith("mojaloop/service-") and c["image"].endswith(".0") for c in spec["containers"]):
        print(line.strip())
        break
EOF
)"
  curl -sk --max-time 5 -H 'Content-Type: application/json' --data-binary "$answer" "https://$address/mutate" >"$out/check-answer.json"
  if ! grep -q '"patch"' "$out/check-answer.json"; then
    echo "the webhook did not rewrite a review that it should; see $out/check-answer.json" >&2
    exit 1
  fi
}

run_step() {
  local round="$1" kind="$2"
  local prefix="$out/round-$round-$kind"
  start_server "$kind" "$prefix-server.log"
  [[ "$kind" == webhook ]] && check_webhook_rewrites
  start_sampler "$prefix-rss.txt"
  if [[ "$quick" == 0 ]]; then
    # Warm-up: open connections, fill allocator pools and caches.
    taskset -c "$load_cpus" wrk -t1 -c16 -d2s -s "$root/benches/wrk-reviews.lua" "https://$address" -- "$out/reviews.jsonl" >/dev/null
  fi
  taskset -c "$load_cpus" wrk -t1 -c16 "-d${seconds}s" --latency -s "$root/benches/wrk-reviews.lua" \
    "https://$address" -- "$out/reviews.jsonl" >"$prefix-wrk.txt"
  taskset -c "$load_cpus" "$bin/bench-rate" --address "$address" --bodies "$out/reviews.jsonl" --ca "$out/tls.crt" \
    --rate 1000 --seconds "$seconds" --warmup-seconds "$([[ $quick == 1 ]] && echo 1 || echo 2)" --connections 16 \
    >"$prefix-rate.json"
  awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status" >"$prefix-hwm.txt"
  if [[ "$kind" == webhook ]]; then
    curl -sk --max-time 5 "https://$address/metrics" >"$prefix-metrics.txt" || true
  fi
  stop_server
  grep -q '^WRK_JSON ' "$prefix-wrk.txt" || { echo "wrk printed no summary; see $prefix-wrk.txt" >&2; exit 1; }
  [[ -s "$prefix-rate.json" ]] || { echo "bench-rate printed no summary" >&2; exit 1; }
  echo "round $round $kind: $(grep '^WRK_JSON ' "$prefix-wrk.txt" | cut -c10-) $(cat "$prefix-rate.json")" >&2
}

for round in $(seq "$rounds"); do
  run_step "$round" baseline
  run_step "$round" parse-only
  run_step "$round" webhook
done

write_machine "$out/machine.txt"
echo "wrk=$(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo unknown)" >>"$out/machine.txt"

python3 "$root/benches/summarize_webhook.py" "$out" "$rounds" "$seconds" "$quick"
