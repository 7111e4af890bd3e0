# Helpers of the benchmark scripts, to be sourced rather than run.

# Sets root, target and out (target/bench/NAME, emptied) for the benchmark NAME.
prepare_output() {
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  target="${CARGO_TARGET_DIR:-$root/target}"
  out="$target/bench/$1"
  rm -rf "$out"
  mkdir -p "$out"
}

# Builds the benchmarked binaries and the bench crate in release. Both scripts build the
# same packages, so that features unify alike and neither rebuilds what the other built.
build_release() {
  echo "== building in release" >&2
  cargo build --release --quiet --manifest-path "$root/Cargo.toml" \
    -p image-patch-webhook -p image-patch-scanner -p image-patch-bench
}

# Writes the machine and the moment of the run as KEY=VALUE lines to FILE.
write_machine() {
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc=$(nproc)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
    echo "load_average=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc=$(rustc --version)"
  } >"$1"
}
