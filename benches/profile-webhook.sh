#!/usr/bin/env bash
# Instruction profile of the webhook under the benchmark's requests, with callgrind.
#
#   benches/profile-webhook.sh [REQUESTS_PER_SECOND] [SECONDS]
#
# Builds the webhook with symbols and line tables into target/profiling, without LTO so
# that the build is quicker and functions keep their names. Runs it under valgrind's
# callgrind with the fixtures that webhook.sh wrote, and sends the requests with
# bench-rate. Instruction counts do not depend on what else the machine runs.
# Prints the inclusive cost of the webhook's own functions and writes the full profile
# to target/bench/webhook/callgrind.out for callgrind_annotate or KCachegrind.
set -euo pipefail

rate="${1:-100}"
seconds="${2:-10}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
fixtures="$target/bench/webhook"
[[ -s "$fixtures/reviews.jsonl" && -s "$fixtures/tls.crt" ]] || {
  echo "run benches/webhook.sh --quick first: it writes the fixtures to $fixtures" >&2
  exit 1
}
command -v valgrind >/dev/null || { echo "valgrind is missing (Debian: apt-get install valgrind)" >&2; exit 1; }

echo "== building the webhook with symbols" >&2
CARGO_TARGET_DIR="$target/profiling" CARGO_PROFILE_RELEASE_STRIP=false \
  CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p image-patch-webhook

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
profile="$fixtures/callgrind.out"
valgrind --tool=callgrind --callgrind-out-file="$profile" \
  "$target/profiling/release/image-patch-webhook" --listen "127.0.0.1:$port" \
  --tls-cert "$fixtures/tls.crt" --tls-key "$fixtures/tls.key" \
  --approvals-file "$fixtures/approvals.yaml" --log-format json \
  >"$fixtures/profile-server.log" 2>"$fixtures/profile-valgrind.log" &
server_pid=$!
trap 'kill -TERM "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true' EXIT

for _ in $(seq 120); do
  if curl -sk --max-time 2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/readyz" 2>/dev/null | grep -q '^200$'; then
    break
  fi
  sleep 0.5
done
"$target/release/bench-rate" --address "127.0.0.1:$port" --bodies "$fixtures/reviews.jsonl" \
  --ca "$fixtures/tls.crt" --rate "$rate" --seconds "$seconds" --warmup-seconds 1 --connections 4
kill -TERM "$server_pid"
wait "$server_pid" || true
trap - EXIT

callgrind_annotate --inclusive=yes --auto=no "$profile" 2>/dev/null \
  | grep -E 'PROGRAM TOTALS|/(webhook|common)/src/|tracing_core::event::Event::dispatch|axum::json::Json<T> as axum_core' \
  | grep -v '=>' | head -30
