#!/usr/bin/env python3
"""Summarize the raw results of benches/webhook.sh into summary.json and summary.md.

Usage: summarize_webhook.py OUT_DIR ROUNDS SECONDS QUICK

Throughput is wrk's flat-out rate. The headline ratio is the median webhook rate over the
median baseline rate, and each round's own ratio shows the spread. The parse-only server
(the baseline that also parses each request with the webhook's parser) gets the same
ratio, to show how much of the gap reading the request accounts for. Latency is from
bench-rate at 1,000 requests a second. Memory is the largest VmRSS sampled under load and
the VmHWM at the end of the step. Targets are reported as met or missed, never enforced.
"""

import json
import statistics
import sys
from pathlib import Path

TARGET_RATIO = 0.80
TARGET_P99_MS = 2.0
TARGET_RSS_MIB = 30.0
KINDS = ("baseline", "parse-only", "webhook")


def read_step(out: Path, round_number: int, kind: str) -> dict:
    prefix = out / f"round-{round_number}-{kind}"
    wrk_line = next(
        line for line in (prefix.with_name(prefix.name + "-wrk.txt")).read_text().splitlines() if line.startswith("WRK_JSON ")
    )
    rss = [int(value) for value in prefix.with_name(prefix.name + "-rss.txt").read_text().split() if value.isdigit()]
    hwm = prefix.with_name(prefix.name + "-hwm.txt").read_text().strip()
    return {
        "wrk": json.loads(wrk_line.removeprefix("WRK_JSON ")),
        "rate_1000": json.loads(prefix.with_name(prefix.name + "-rate.json").read_text()),
        "max_rss_mib": max(rss, default=0) / 1024,
        "hwm_mib": int(hwm) / 1024 if hwm.isdigit() else None,
    }


def spread(values: list) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": len(values)}


def main() -> None:
    out, rounds, seconds, quick = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    steps = {kind: [read_step(out, number, kind) for number in range(1, rounds + 1)] for kind in KINDS}
    machine = dict(line.split("=", 1) for line in (out / "machine.txt").read_text().splitlines() if "=" in line)
    fixtures = json.loads((out / "fixtures.json").read_text())

    def figures(kind: str) -> dict:
        runs = steps[kind]
        return {
            "throughput_rps": spread([run["wrk"]["rate"] for run in runs]),
            "wrk_errors": sum(run["wrk"]["errors"] + run["wrk"]["non_2xx"] for run in runs),
            "p50_ms": spread([run["rate_1000"]["p50_ms"] for run in runs]),
            "p99_ms": spread([run["rate_1000"]["p99_ms"] for run in runs]),
            "p999_ms": spread([run["rate_1000"]["p999_ms"] for run in runs]),
            "rate_errors": sum(run["rate_1000"]["errors"] for run in runs),
            "achieved_rate": spread([run["rate_1000"]["achieved_rate"] for run in runs]),
            "max_rss_mib": max(run["max_rss_mib"] for run in runs),
            "hwm_mib": max(run["hwm_mib"] or 0 for run in runs),
        }

    baseline, parse_only, webhook = (figures(kind) for kind in KINDS)
    ratio = webhook["throughput_rps"]["median"] / baseline["throughput_rps"]["median"]
    round_ratios = [w["wrk"]["rate"] / b["wrk"]["rate"] for b, w in zip(steps["baseline"], steps["webhook"])]
    parse_ratio = parse_only["throughput_rps"]["median"] / baseline["throughput_rps"]["median"]
    parse_round_ratios = [p["wrk"]["rate"] / b["wrk"]["rate"] for b, p in zip(steps["baseline"], steps["parse-only"])]
    targets = {
        "throughput_ratio_at_least_0.80": ratio >= TARGET_RATIO,
        "p99_under_2ms_at_1000rps": webhook["p99_ms"]["max"] < TARGET_P99_MS,
        "rss_under_30mib": max(webhook["max_rss_mib"], webhook["hwm_mib"]) < TARGET_RSS_MIB,
    }
    summary = {
        "quick": quick,
        "rounds": rounds,
        "seconds_per_step": seconds,
        "machine": machine,
        "fixtures": fixtures,
        "baseline": baseline,
        "parse_only": parse_only,
        "webhook": webhook,
        "throughput_ratio": ratio,
        "round_ratios": round_ratios,
        "parse_only_ratio": parse_ratio,
        "parse_only_round_ratios": parse_round_ratios,
        "targets_met": targets,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    def cell(figure: dict, digits: int = 2) -> str:
        if figure["runs"] == 1:
            return f"{figure['median']:.{digits}f}"
        return f"{figure['median']:.{digits}f} ({figure['min']:.{digits}f}–{figure['max']:.{digits}f})"

    columns = (baseline, parse_only, webhook)

    def row(name: str, render) -> tuple:
        return (name, *(render(column) for column in columns))

    rows = [
        row("throughput, wrk flat out (req/s)", lambda c: cell(c["throughput_rps"], 0)),
        row("p50 at 1,000 req/s (ms)", lambda c: cell(c["p50_ms"], 3)),
        row("p99 at 1,000 req/s (ms)", lambda c: cell(c["p99_ms"], 3)),
        row("p99.9 at 1,000 req/s (ms)", lambda c: cell(c["p999_ms"], 3)),
        row("max VmRSS under load (MiB)", lambda c: f"{c['max_rss_mib']:.1f}"),
        row("VmHWM at the end (MiB)", lambda c: f"{c['hwm_mib']:.1f}"),
        row("failed requests", lambda c: str(c["wrk_errors"] + c["rate_errors"])),
    ]
    lines = [
        f"Webhook benchmark: {rounds} round(s) of {seconds} s a step" + (" (quick mode: figures are not meaningful)" if quick else ""),
        "",
        "| figure | baseline | parse-only | webhook |",
        "| --- | --- | --- | --- |",
        *("| " + " | ".join(cells) + " |" for cells in rows),
        "",
        f"Throughput ratio (median webhook / median baseline): {ratio:.2f}; per round: "
        + ", ".join(f"{value:.2f}" for value in round_ratios),
        f"Parse-only ratio (median parse-only / median baseline): {parse_ratio:.2f}; per round: "
        + ", ".join(f"{value:.2f}" for value in parse_round_ratios),
        "Targets: " + ", ".join(f"{name} {'met' if met else 'MISSED'}" for name, met in targets.items()),
    ]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
