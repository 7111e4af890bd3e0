#!/usr/bin/env python3
"""Summarize the raw result of benches/scanner.sh into summary.json and summary.md.

Usage: summarize_scanner.py OUT_DIR QUICK

Exits non-zero when a scan did not run or its report could not be read, never because a
figure misses its target.
"""

import json
import statistics
import sys
from pathlib import Path

TARGET_SECONDS = 10.0
TARGET_RSS_MIB = 64.0


def main() -> None:
    out, quick = Path(sys.argv[1]), sys.argv[2] == "1"
    raw = json.loads((out / "raw.json").read_text())
    machine = dict(line.split("=", 1) for line in (out / "machine.txt").read_text().splitlines() if "=" in line)
    scans = raw["scans"]
    failed = [scan["run"] for scan in scans if scan["exit_status"] != 0 or not scan["report_parsed"]]

    walls = [scan["wall_seconds"] for scan in scans]
    rss = [scan["max_rss_kib"] / 1024 for scan in scans if scan["max_rss_kib"]]
    expected = raw["expected"]
    tag_pages = [scan["requests"]["tags_list"] for scan in scans]
    manifests = [scan["requests"]["manifest"] for scan in scans]
    targets = {
        "one_tag_list_walk_per_repository": all(pages <= expected["tags_list_pages"] for pages in tag_pages),
        "one_manifest_request_per_newest_patch": all(count <= expected["newest_patches"] for count in manifests),
        "full_scan_under_10s": max(walls) < TARGET_SECONDS,
        "rss_under_64mib": max(rss, default=float("inf")) < TARGET_RSS_MIB,
    }
    summary = {"quick": quick, "machine": machine, **raw, "targets_met": targets, "failed_runs": failed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def cell(values: list, digits: int) -> str:
        if len(values) == 1:
            return f"{values[0]:.{digits}f}"
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"

    lines = [
        f"Scanner benchmark: {raw['workloads']} workloads over {raw['repositories']} repositories of "
        f"{raw['tags_per_repository']} tags, pages of {raw['page_size']}, {len(scans)} scan(s)"
        + (" (quick mode: figures are not meaningful)" if quick else ""),
        "",
        "| figure | median (min–max) | expected |",
        "| --- | --- | --- |",
        f"| wall time (s) | {cell(walls, 2)} | under {TARGET_SECONDS:.0f} |",
        f"| max RSS (MiB) | {cell(rss, 1)} | under {TARGET_RSS_MIB:.0f} |",
        f"| tag-list requests | {cell(tag_pages, 0)} | {expected['tags_list_pages']} |",
        f"| manifest requests | {cell(manifests, 0)} | {expected['newest_patches']} |",
        f"| blob requests | {cell([scan['requests']['blob'] for scan in scans], 0)} | 0 |",
        f"| /v2/ and other requests | {cell([scan['requests']['base'] + scan['requests']['other'] for scan in scans], 0)} | |",
        f"| all registry requests | {cell([scan['requests']['total'] for scan in scans], 0)} | |",
        "",
        "Targets: " + ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in targets.items()),
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if failed:
        print(f"scan(s) {failed} did not run to the end; see {out}/scan-N.log", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
