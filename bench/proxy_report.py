#!/usr/bin/env python3
"""The report of bench/proxy.sh: runs.tsv (round, scenario, proxy, loadgen JSON) in,
Markdown out (printed and written to OUT).

usage: proxy_report.py RUNS_TSV OUT COMMAND LOADAVG HAPROXY_VERSION COMMIT
"""
import json
import os
import statistics
import sys

TITLES = {
    "pp50": ("pingpong 64 B, C=50", "msgs/s", "msgs_per_s", "message"),
    "pp1": ("pingpong 64 B, C=1", "msgs/s", "msgs_per_s", "message"),
    "bulk": ("bulk 16 KiB, C=10", "MB/s", "mb_per_s", "16 KiB chunk"),
}


def fmt(v):
    if v is None:
        return "–"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def cell(values):
    """Median, with the spread (min–max) over rounds."""
    if not values:
        return "FAIL"
    m = statistics.median(values)
    if len(values) == 1:
        return fmt(m)
    return f"{fmt(m)} ({fmt(min(values))}–{fmt(max(values))})"


def main():
    tsv, out, command, loadavg, haproxy, commit = sys.argv[1:7]
    runs = {}  # (scenario, proxy) -> {round: json}
    scenarios, proxies, failures = [], [], []
    for line in open(tsv):
        rnd, sc, proxy, js = line.rstrip("\n").split("\t", 3)
        if sc not in scenarios:
            scenarios.append(sc)
        if proxy not in proxies:
            proxies.append(proxy)
        try:
            d = json.loads(js)
        except json.JSONDecodeError:
            d = {"ok": False, "error": js}
        if not d.get("ok"):
            failures.append(f"{proxy} {sc} round {rnd}: {d.get('error')}")
            continue
        runs.setdefault((sc, proxy), {})[int(rnd)] = d

    others = [p for p in proxies if p != "torsion"]
    lines = [
        "# TCP proxy benchmarks",
        "",
        f"- command: `{command}`",
        f"- machine: {os.cpu_count()} CPUs, load average at start {loadavg}, commit {commit}",
        f"- haproxy: {haproxy or 'not installed'}",
        "- the proxy pinned alone to one CPU; torsion's echo_server (behind every proxy) and "
        "the load generator share the other",
        "- cells: median over rounds (min–max); ratios: torsion/peer per round, then the median",
        "",
    ]

    def table(title, key, per_unit):
        hdr = f"| scenario | {per_unit} | " + " | ".join(proxies) + " |"
        hdr += "".join(f" torsion/{p} |" for p in others if "torsion" in proxies)
        lines.extend([title, "", hdr, "|---|---|" + "---:|" * (len(proxies) + len(others))])
        for sc in scenarios:
            name, unit, main_key, per = TITLES[sc]
            field = main_key if key == "main" else "server_cpu_us_per_msg"
            row = f"| {name} | {unit if key == 'main' else 'µs per ' + per} |"
            for p in proxies:
                vals = [d[field] for d in runs.get((sc, p), {}).values() if d.get(field) is not None]
                row += f" {cell(vals)} |"
            if "torsion" in proxies:
                for p in others:
                    ratios = []
                    for rnd, d in runs.get((sc, "torsion"), {}).items():
                        o = runs.get((sc, p), {}).get(rnd)
                        if o and o.get(field) and d.get(field) is not None:
                            ratios.append(d[field] / o[field])
                    row += f" {statistics.median(ratios):.2f} |" if ratios else " – |"
            lines.append(row)
        lines.append("")

    table("## Throughput through the proxy (higher is better)", "main", "unit")
    table("## Proxy CPU per message (µs, utime+stime of the proxy; lower is better)", "cpu", "per")
    lines.append(
        "A CPU ratio below 1 means torsion's proxy spends less CPU per message than the peer."
    )
    if failures:
        lines.extend(["", "## Failures", ""] + [f"- {f}" for f in failures])
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
