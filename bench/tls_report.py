#!/usr/bin/env python3
"""The TLS benchmark report: runs.tsv (round, scenario, server, JSON line) -> Markdown."""
import json, statistics, sys, subprocess, os
path, out, runs, duration, hold = sys.argv[1:6]
rows = {}
for line in open(path):
    rnd, sc, srv, js = line.rstrip("\n").split("\t", 3)
    rows.setdefault((sc, srv), []).append(json.loads(js))
def fig(sc, r):
    if not r.get("ok"): return None
    return {"bulk": r.get("mb_per_s"), "full": r.get("per_s"), "resumed": r.get("per_s"),
            "hold": r.get("kib_per_conn"), "stall": r.get("kib_per_conn")}[sc]
def cpu(sc, r):
    if not r.get("ok"): return None
    return {"bulk": r.get("server_cpu_ns_per_byte"), "full": r.get("server_cpu_us_per_handshake"),
            "resumed": r.get("server_cpu_us_per_handshake"), "hold": None, "stall": None}[sc]
units = {"bulk": ("MB/s", "server CPU ns/byte"), "full": ("handshakes/s", "server CPU µs/handshake"),
         "resumed": ("handshakes/s", "server CPU µs/handshake"), "hold": ("KiB/conn (lower is better)", ""),
         "stall": ("KiB/stalled handshake (lower is better)", "")}
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def ratio(sc, f):
    a, b = rows.get((sc, "torsion"), []), rows.get((sc, "tokio_rustls"), [])
    rs = [f(sc, x) / f(sc, y) for x, y in zip(a, b) if f(sc, x) and f(sc, y)]
    return statistics.median(rs) if rs else None
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"# TLS echo benchmarks ({commit})", "",
         f"`RUNS={runs} DURATION={duration} HOLD_CONNS={hold} bench/tls.sh` on {os.cpu_count()} CPUs "
         f"(load average {os.getloadavg()[0]:.2f}); server pinned to one CPU, tlsload to another; "
         "rustls 0.23 + ring on both servers and the client.", "",
         "| scenario | unit | torsion | tokio-rustls | torsion/tokio-rustls | server CPU: torsion | tokio-rustls | CPU ratio |",
         "|---|---|---|---|---|---|---|---|"]
for sc in ["bulk", "full", "resumed", "hold", "stall"]:
    if (sc, "torsion") not in rows: continue
    t = med([fig(sc, r) for r in rows[(sc, "torsion")]]); k = med([fig(sc, r) for r in rows.get((sc, "tokio_rustls"), [])])
    ct = med([cpu(sc, r) for r in rows[(sc, "torsion")]]); ck = med([cpu(sc, r) for r in rows.get((sc, "tokio_rustls"), [])])
    rf, rc = ratio(sc, fig), ratio(sc, cpu)
    f = lambda x, d=2: "—" if x is None else f"{x:.{d}f}"
    lines.append(f"| {sc} | {units[sc][0]} | {f(t)} | {f(k)} | {f(rf)} | {f(ct)} | {f(ck)} | {f(rc)} |")
fails = [(k, r.get("error")) for k, v in rows.items() for r in v if not r.get("ok")]
if fails:
    lines += ["", "Failures:"] + [f"- {k}: {e}" for k, e in fails]
lines += ["", "Ratios are per round (the two servers ran back to back), then the median. For",
          "throughput above 1 favours torsion; for CPU per unit and KiB per connection, below 1 does."]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
