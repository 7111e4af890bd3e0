#!/usr/bin/env bash
# Scanner benchmark: the release scanner against a synthetic hub in the local test stack.
#
#   benches/scanner.sh [--quick] [--runs N]
#
# bench-scanner starts etcd, kube-apiserver and kube-controller-manager, and a
# docker-registry behind the test-support FaultProxy, which pages tag lists 100 at a time.
# It seeds 200 repositories of 300 tags and 1,000 Deployments over them. Then it runs the
# scanner binary under /usr/bin/time -v and counts the registry requests of each scan by kind.
# Results go to target/bench/scanner/ (summary.json, a table in summary.md, raw logs).
# --quick uses 50 workloads over 10 repositories and one scan, and fails only when a step
# did not run, never on a figure.
set -euo pipefail

quick=0
workloads=1000
repositories=200
runs=3
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) quick=1; workloads=50; repositories=10; runs=1 ;;
    --runs) runs="$2"; shift ;;
    *) echo "usage: $0 [--quick] [--runs N]" >&2; exit 2 ;;
  esac
  shift
done

source "$(dirname "$0")/lib.sh"
prepare_output scanner
[[ -x /usr/bin/time ]] || { echo "/usr/bin/time is missing (Debian: apt-get install time)" >&2; exit 1; }

build_release

write_machine "$out/machine.txt"

"$target/release/bench-scanner" --scanner "$target/release/image-patch-scanner" \
  --workloads "$workloads" --repositories "$repositories" --runs "$runs" --out "$out" \
  >"$out/raw.json"

python3 "$root/benches/summarize_scanner.py" "$out" "$quick"
