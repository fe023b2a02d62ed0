#!/usr/bin/env python3
"""Helpers of compat/bench/run.sh, standard library only.

  report.py ports N                 print N distinct free TCP ports on 127.0.0.1
  report.py wait HOST:PORT... SECS  wait until every server completes a ZooKeeper handshake
  report.py summarize RAW_DIR OUT_DIR [--command CMD] [--note TEXT]
                                    write OUT_DIR/README.md (tables, ratios) and SVG charts from
                                    the `volery bench --json` files in RAW_DIR
  report.py seconds DURATION        print a `volery bench` duration (5s, 500ms, 1m) in whole seconds
  report.py scaling RAW_DIR OUT_DIR [--budget CORES] [--command CMD] [--note TEXT]
                                    write OUT_DIR/scaling.md and OUT_DIR/scaling-*.svg from the
                                    runs of scaling.sh in RAW_DIR

Raw files are named by run.sh: <target>__<load>__<sessions>.json, with load set1k or get1k; by
scaling.sh: k<partitions>__g<create/delete percent>[__r<round>].json (g100: create/delete only) beside
k<partitions>__g<percent>[__r<round>].throttle (per partition: CFS periods and throttled periods in
the run) and .steal (the machine's steal and total CPU jiffies over the run, from /proc/stat).
"""

import glob
import json
import math
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from zkutil import free_ports, zk_handshake  # noqa: E402  (compat/zkutil.py, shared with the suites)

TARGETS = [
    # (key, name in tables, colour)
    ("zk1", "ZooKeeper 3.8 standalone", "#1f77b4"),
    ("zk3", "ZooKeeper 3.8 ensemble (3)", "#ff7f0e"),
    ("volery1", "Volery standalone", "#2ca02c"),
    ("volery3", "Volery 3 replicas", "#d62728"),
]
LOADS = [("set1k", "setData 1 KB"), ("get1k", "getData 1 KB")]
# The shape a Volery row is compared with.
BASELINE = {"volery1": "zk1", "volery3": "zk3"}
MAIN_SESSIONS = 32


# ------------------------------------------------------------------ ports and readiness
def wait(addrs, secs):
    deadline = time.time() + secs
    pending = list(addrs)
    while pending and time.time() < deadline:
        host, port = pending[0].rsplit(":", 1)
        if zk_handshake(host, int(port)):
            pending.pop(0)
        else:
            time.sleep(0.3)
    if pending:
        print("not ready: %s" % ", ".join(pending), file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------ results
def load_runs(raw_dir):
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw_dir, "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        parts = name.split("__")
        if len(parts) != 3:
            continue
        target, load, sessions = parts[0], parts[1], int(parts[2])
        with open(path) as f:
            runs[(target, load, sessions)] = json.load(f)
    return runs


def fmt(x, digits=1):
    if x is None:
        return "–"
    if x >= 100:
        return "{:,.0f}".format(x)
    return "{:.{d}f}".format(x, d=digits)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return "{:.2f}x".format(a / b)


def metrics(run):
    if run is None:
        return None
    cpu = run.get("server_cpu") or {}
    return {
        "ops": run["total"]["ops_per_sec"],
        "p50": run["total"]["latency_ms"]["p50"],
        "p99": run["total"]["latency_ms"]["p99"],
        "p999": run["total"]["latency_ms"]["p999"],
        "cpu": cpu.get("us_per_op"),
        "errors": run["total"]["errors"],
        "failed": run.get("sessions_failed", 0),
    }


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = "%.0f GiB" % (kb / 1024 / 1024)
    except (OSError, ValueError, IndexError):
        pass
    java = "?"
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=20)
        java = (out.stderr or out.stdout).splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return "%d CPUs (%s), %s RAM, Linux %s, %s" % (
        os.cpu_count() or 0,
        model,
        mem,
        platform.release(),
        java,
    )


# ------------------------------------------------------------------ SVG
W, H = 640, 400
ML, MR, MT, MB = 70, 40, 40, 50


def svg_open(title):
    return [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'font-family="sans-serif" font-size="12">' % (W, H),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="%d" y="22" font-size="15" text-anchor="middle">%s</text>' % (W // 2, esc(title)),
    ]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if v <= m * e:
            return m * e
    return 10 * e


def axes(out, xticks, yticks, xlabel, ylabel):
    x0, y0, x1, y1 = ML, H - MB, W - MR, MT
    out.append('<g stroke="#ccc">')
    for x, _ in xticks:
        out.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d"/>' % (x, y0, x, y1))
    for y, _ in yticks:
        out.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f"/>' % (x0, y, x1, y))
    out.append("</g>")
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>'
               % (x0, y1, x1 - x0, y0 - y1))
    for x, label in xticks:
        out.append('<text x="%.1f" y="%d" text-anchor="middle">%s</text>' % (x, y0 + 16, esc(label)))
    for y, label in yticks:
        out.append('<text x="%d" y="%.1f" text-anchor="end">%s</text>' % (x0 - 6, y + 4, esc(label)))
    out.append('<text x="%d" y="%d" text-anchor="middle">%s</text>' % ((x0 + x1) // 2, H - 12, esc(xlabel)))
    out.append('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>'
               % ((y0 + y1) // 2, (y0 + y1) // 2, esc(ylabel)))


def legend(out, entries):
    for i, (name, colour) in enumerate(entries):
        y = MT + 14 + 16 * i
        out.append('<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>'
                   % (ML + 10, y - 4, ML + 30, y - 4, colour))
        out.append('<text x="%d" y="%d">%s</text>' % (ML + 36, y, esc(name)))


def polyline(out, pts, colour):
    out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>'
               % (colour, " ".join("%.1f,%.1f" % p for p in pts)))
    for x, y in pts:
        out.append('<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>' % (x, y, colour))


def throughput_chart(runs, load, title):
    series = []
    for key, name, colour in TARGETS:
        pts = sorted((s, r["total"]["ops_per_sec"]) for (t, l, s), r in runs.items() if t == key and l == load)
        if pts:
            series.append((name, colour, pts))
    if not series:
        return None
    xs = sorted({s for _, _, pts in series for s, _ in pts})
    lo, hi = math.log2(max(xs[0], 1)), math.log2(max(xs[-1], 2))
    if hi == lo:
        hi = lo + 1
    ymax = nice_max(max(v for _, _, pts in series for _, v in pts) * 1.05)
    x = lambda s: ML + (math.log2(max(s, 1)) - lo) / (hi - lo) * (W - ML - MR)
    y = lambda v: H - MB - v / ymax * (H - MB - MT)
    out = svg_open(title)
    yt = [(y(ymax * i / 5), "{:,.0f}".format(ymax * i / 5)) for i in range(6)]
    axes(out, [(x(s), str(s)) for s in xs], yt, "sessions (x 25 outstanding requests each)", "operations / s")
    for name, colour, pts in series:
        polyline(out, [(x(s), y(v)) for s, v in pts], colour)
    legend(out, [(n, c) for n, c, _ in series])
    out.append("</svg>")
    return "\n".join(out)


def cdf_chart(runs, load, sessions, title):
    """Latency by percentile, HDR style: x is -log10(1 - p), so 90, 99, 99.9 are equally spaced."""
    series = []
    for key, name, colour in TARGETS:
        r = runs.get((key, load, sessions))
        if r and r.get("latency_cdf_ms"):
            series.append((name, colour, [(p, v) for p, v in r["latency_cdf_ms"] if p < 100.0]))
    if not series:
        return None
    nines = lambda p: -math.log10(max(1e-4, 1 - p / 100.0))
    xmax = 4.0
    # Latency on a log scale, whole decades of milliseconds.
    vals = [max(v, 0.001) for _, _, pts in series for _, v in pts]
    lo = math.floor(math.log10(min(vals)))
    hi = max(math.ceil(math.log10(max(vals))), lo + 1)
    x = lambda p: ML + min(nines(p), xmax) / xmax * (W - ML - MR)
    y = lambda v: H - MB - (math.log10(max(v, 10 ** lo)) - lo) / (hi - lo) * (H - MB - MT)
    out = svg_open(title)
    xt = [(x(p), label) for p, label in ((0, "0%"), (90, "90%"), (99, "99%"), (99.9, "99.9%"), (99.99, "99.99%"))]
    yt = [(y(10 ** e), "{:g}".format(10 ** e)) for e in range(lo, hi + 1)]
    axes(out, xt, yt, "percentile", "latency (ms, log scale)")
    for name, colour, pts in series:
        polyline(out, [(x(p), y(v)) for p, v in pts], colour)
    legend(out, [(n, c) for n, c, _ in series])
    out.append("</svg>")
    return "\n".join(out)


# ------------------------------------------------------------------ markdown
def header(title, command, notes):
    """A report's title and its date, machine, command and notes."""
    lines = ["# " + title, ""]
    lines.append("- Date: %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
    lines.append("- Machine: %s" % machine())
    if command:
        lines.append("- Command: `%s`" % command)
    lines.extend("- %s" % n for n in notes)
    return lines


def summarize(raw_dir, out_dir, command, notes):
    runs = load_runs(raw_dir)
    present = [t for t in TARGETS if any(k[0] == t[0] for k in runs)]
    lines = header("volery bench: Volery vs Apache ZooKeeper 3.8", command, notes)
    lines.append("- Load: `volery bench`, closed loop, %d sessions x 25 outstanding requests unless noted; "
                 "throughput in operations per second, latency in milliseconds, server CPU in "
                 "CPU-microseconds per operation (utime+stime of the server processes over the window)." % MAIN_SESSIONS)
    lines.append("")

    lines.append("## %d sessions x 25 outstanding" % MAIN_SESSIONS)
    lines.append("")
    head = "| load | target | ops/s | p50 ms | p99 ms | p99.9 ms | server CPU us/op | errors | ops/s ratio | p99 ratio | CPU/op ratio |"
    lines.append(head)
    lines.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for load, load_name in LOADS:
        for key, name, _ in present:
            m = metrics(runs.get((key, load, MAIN_SESSIONS)))
            if m is None:
                lines.append("| %s | %s | not run | | | | | | | | |" % (load_name, name))
                continue
            base = BASELINE.get(key)
            b = metrics(runs.get((base, load, MAIN_SESSIONS))) if base else None
            errs = str(m["errors"]) + (" (%d sessions failed)" % m["failed"] if m["failed"] else "")
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                load_name, name, fmt(m["ops"]), fmt(m["p50"], 2), fmt(m["p99"], 2), fmt(m["p999"], 2),
                fmt(m["cpu"]), errs,
                ratio(m["ops"], b["ops"]) if b else "",
                ratio(m["p99"], b["p99"]) if b else "",
                ratio(m["cpu"], b["cpu"]) if b else ""))
    lines.append("")
    lines.append("Ratios are Volery / ZooKeeper in the same shape (standalone vs standalone, 3 vs 3): "
                 "above 1 is better for ops/s, below 1 is better for p99 and CPU per operation.")
    lines.append("")

    charts = []
    for load, load_name in LOADS:
        sweep = sorted({s for (t, l, s) in runs if l == load})
        if len(sweep) > 1:
            lines.append("## %s: throughput vs sessions" % load_name)
            lines.append("")
            lines.append("| target | " + " | ".join("%d" % s for s in sweep) + " |")
            lines.append("|---|" + "---:|" * len(sweep))
            for key, name, _ in present:
                cells = []
                for s in sweep:
                    m = metrics(runs.get((key, load, s)))
                    cells.append(fmt(m["ops"]) if m else "–")
                lines.append("| %s | %s |" % (name, " | ".join(cells)))
            lines.append("")
            svg = throughput_chart(runs, load, "%s: throughput vs sessions" % load_name)
            if svg:
                fname = "throughput-%s.svg" % load
                charts.append((fname, svg))
                lines.append("![%s throughput vs sessions](%s)" % (load_name, fname))
                lines.append("")
        svg = cdf_chart(runs, load, MAIN_SESSIONS, "%s: latency by percentile, %d sessions" % (load_name, MAIN_SESSIONS))
        if svg:
            fname = "latency-%s.svg" % load
            charts.append((fname, svg))
            lines.append("![%s latency by percentile](%s)" % (load_name, fname))
            lines.append("")

    os.makedirs(out_dir, exist_ok=True)
    for fname, svg in charts:
        with open(os.path.join(out_dir, fname), "w") as f:
            f.write(svg + "\n")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


# ------------------------------------------------------------------ scaling (scaling.sh)
SHARE_COLOURS = {0: "#2ca02c", 1: "#1f77b4", 5: "#ff7f0e", 10: "#d62728"}
PAPER_FIG8 = [
    "Figure 8 of the paper (section 7.2.3; in-memory storage, 1000-byte commands, 3 replicas per "
    "partition on a cluster of dedicated machines) plots throughput and latency of Volery with 1, 2, 4 "
    "and 8 partitions for 0%, 1%, 5% and 10% create/delete. The text copy of the paper kept with the "
    "project (`/work/shared/paper/s-smr-fast-ssmr.txt`) has the figure's caption and discussion but "
    "not its bar values, so no absolute numbers are quoted here. What the paper states:",
    "",
    "- throughput grows with the number of partitions in every configuration except 10% create/delete "
    "from 4 to 8 partitions;",
    "- Volery with two partitions outperforms ZooKeeper in all of these experiments;",
    "- latency grows with the share of global commands and with the number of partitions, the extra "
    "time being spent waiting for signals from the other partitions (figure 8 right); a convoy effect "
    "makes local commands wait behind global ones (figure 9).",
]


def seconds(text):
    text = text.strip()
    for unit, mult in (("ms", 0.001), ("min", 60.0), ("s", 1.0), ("m", 60.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * mult
    return float(text)


def load_scaling(raw_dir):
    """{(k, share): [(run, [(periods, throttled)] per partition), ...] one per round} from
    scaling.sh's files (k<k>__g<share>[__r<round>].json and .throttle)."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(raw_dir, "k*__g*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        parts = name.split("__")
        k, g = int(parts[0][1:]), int(parts[1][1:])
        with open(path) as f:
            run = json.load(f)
        throttle = []
        tpath = path[: -len(".json")] + ".throttle"
        if os.path.exists(tpath):
            with open(tpath) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) == 2:
                        throttle.append((int(fields[0]), int(fields[1])))
        steal = None
        spath = path[: -len(".json")] + ".steal"
        if os.path.exists(spath):
            with open(spath) as f:
                fields = f.read().split()
            if len(fields) == 2 and int(fields[1]) > 0:
                steal = int(fields[0]) / int(fields[1])
        run["host_steal"] = steal
        runs.setdefault((k, g), []).append((run, throttle))
    return runs


def load_alone(raw_dir):
    """{k: {round: [run, ...] one per partition}} from scaling.sh --alone's files
    (k<k>__alone<server>__r<round>.json)."""
    out = {}
    for path in sorted(glob.glob(os.path.join(raw_dir, "k*__alone*__r*.json"))):
        parts = os.path.basename(path)[: -len(".json")].split("__")
        k, rnd = int(parts[0][1:]), int(parts[2][1:])
        with open(path) as f:
            out.setdefault(k, {}).setdefault(rnd, []).append(json.load(f))
    return out


def alone_section(raw_dir):
    """scaling.md's lines on partitions loaded one at a time (empty without --alone runs)."""
    runs = load_alone(raw_dir)
    if not runs:
        return []
    rows = {}
    for k, rounds in sorted(runs.items()):
        # A round counts only with every partition measured.
        sums = [sum(r["total"]["ops_per_sec"] for r in each) for each in rounds.values() if len(each) == k]
        costs = [r["server_cpu"]["us_per_op"] for each in rounds.values() for r in each
                 if (r.get("server_cpu") or {}).get("us_per_op") is not None]
        alone = [r["total"]["ops_per_sec"] for each in rounds.values() for r in each]
        rows[k] = (median(sums), costs, alone, len(sums))
    base = rows[min(rows)][0]
    lines = ["## Each partition alone, added up", "",
             "The other way to give each partition a fixed CPU budget: one partition at a time is loaded "
             "(one partition's sessions, on its server and its keys, local setData only) while the other "
             "k-1 run idle, and the throughputs are added up. A partition then does not share the "
             "machine's two CPUs with k-1 busy ones and the load generator, as in the runs above; the "
             "idle ones still take part in the global group and its skips. CPU-us per setData is the "
             "loaded server's CPU over its operations.",
             "",
             "| partitions | sum of ops/s | vs k = %d | CPU-us per setData at the loaded partition | "
             "ops/s of one partition alone | complete rounds |" % min(rows),
             "|---:|---:|---:|---:|---:|---:|"]
    for k, (total, costs, alone, n) in sorted(rows.items()):
        lines.append("| %d | %s | %s | %s (%s) | %s | %d |" % (
            k, fmt(total), ratio(total, base), fmt(median(costs)),
            spread(costs), spread(alone, 0), n))
    lines.append("")
    return lines


def median(values):
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def over_rounds(k, rounds):
    """The metrics of every round of one (k, share), and their medians: throughput and CPU per
    operation each take their own median over the rounds (CPU with its range beside it; the
    throughput of each round is listed under "Every run")."""
    each = [scaling_metrics(k, run, throttle) for run, throttle in rounds]
    cpus = [r["cpu_per_op"] for r in each if r["cpu_per_op"] is not None]
    return {
        "rounds": each,
        "ops": median([r["ops"] for r in each]),
        "cpu_per_op": median(cpus),
        "cpu_range": cpus,
        "cpu_per_op_each": [v for r in each for v in r["cpu_per_op_each"]],
    }


def scaling_metrics(k, run, throttle):
    """What scaling.md reports of one run: throughput, the measured global share, and CPU per
    operation per partition (one replica each, so a partition is one process)."""
    total = run["total"]
    count = max(total["count"], 1)
    global_ops = sum(o["count"] for o in run["ops"] if o["op"] in ("create", "delete"))
    cpu = run.get("server_cpu") or {}
    per = cpu.get("per_pid_seconds") or []
    window = run.get("window_secs") or 1.0
    periods = [t for t in throttle if t[0] > 0]
    return {
        "ops": total["ops_per_sec"],
        "count": total["count"],
        "errors": total["errors"] + run.get("sessions_failed", 0),
        "p50": total["latency_ms"]["p50"],
        "p99": total["latency_ms"]["p99"],
        "global": global_ops / count,
        # All server CPU of the window over all operations: with one replica per partition this is
        # the CPU one partition spends per local operation (front end included); a global operation
        # runs in all k partitions, so its cost per partition is this divided by k.
        "cpu_per_op": cpu.get("us_per_op"),
        # Each partition's CPU over its share (1/k) of the operations: the spread between partitions.
        "cpu_per_op_each": [s * 1e6 * k / count for s in per],
        "cores_each": [s / window for s in per],
        "throttled": (sum(t for _, t in periods) / sum(p for p, _ in periods)) if periods else None,
        "steal": run.get("host_steal"),
    }


def line_chart(title, xs, series, xlabel, ylabel, log_x=True):
    """series: [(name, colour, [(x, y)], dashed)]."""
    ys = [v for _, _, pts, _ in series for _, v in pts]
    if not ys:
        return None
    ymax = nice_max(max(ys) * 1.05)
    tx = (lambda v: math.log2(v)) if log_x else (lambda v: v)
    lo, hi = tx(xs[0]), tx(xs[-1])
    if hi == lo:
        hi = lo + 1
    x = lambda v: ML + (tx(v) - lo) / (hi - lo) * (W - ML - MR)
    y = lambda v: H - MB - v / ymax * (H - MB - MT)
    out = svg_open(title)
    yt = [(y(ymax * i / 5), "{:,.0f}".format(ymax * i / 5) if ymax >= 10 else "{:g}".format(ymax * i / 5)) for i in range(6)]
    axes(out, [(x(v), str(v)) for v in xs], yt, xlabel, ylabel)
    for name, colour, pts, dashed in series:
        if dashed:
            out.append('<polyline fill="none" stroke="%s" stroke-width="1.5" stroke-dasharray="6,4" points="%s"/>'
                       % (colour, " ".join("%.1f,%.1f" % (x(a), y(b)) for a, b in pts)))
        else:
            polyline(out, [(x(a), y(b)) for a, b in pts], colour)
    legend(out, [(n, c) for n, c, _, _ in series])
    out.append("</svg>")
    return "\n".join(out)


def spread(values, digits=1):
    if not values:
        return "–"
    return "%s–%s" % (fmt(min(values), digits), fmt(max(values), digits))


def scaling(raw_dir, out_dir, budget, command, notes):
    runs = load_scaling(raw_dir)
    ks = sorted({k for k, _ in runs})
    shares = sorted({g for _, g in runs if g != 100})
    m = {key: over_rounds(key[0], rounds) for key, rounds in runs.items()}
    n_rounds = max((len(r) for r in runs.values()), default=1)
    # "median (min–max)" when there was more than one round.
    with_range = lambda value, values, digits=1: fmt(value, digits) + (
        " (%s)" % spread(values, digits) if len(values) > 1 else "")
    lines = header("Volery: scaling with partitions (the paper's figure 8 experiment on one machine)",
                   command, notes)
    lines.append("- Shape: k partitions x 1 replica, k = %s, every server on 127.0.0.1 and a client front "
                 "end for the whole tree; sessions spread round-robin over the k servers. Local operations: setData of 1000 "
                 "bytes on keys hashed over all partitions; global operations: create of a 1000-byte znode "
                 "followed by its delete (both ordered and executed in every partition)." % ", ".join(map(str, ks)))
    lines.append("- 3 replicas per partition (the paper's setting) are out of reach here: 8 x 3 = 24 servers, "
                 "each fsyncing its votes, on 2 CPUs would leave a budget of well under 0.1 core per process. "
                 "With one replica a partition is one process, and its CPU time is the partition's cost.")
    lines.append("")

    if not runs:
        lines.append("No run completed.")
    # ---- cost
    lines.append("## CPU cost per operation at each partition")
    lines.append("")
    lines.append("CPU-microseconds (utime+stime from /proc, all threads, the measured window only). "
                 "Local setData: all servers' CPU over all operations (each runs in one partition; "
                 "the range is each partition's CPU over 1/k of the operations). Global create/delete: "
                 "all servers' CPU over all operations divided by k (each runs in every partition), "
                 "from the create/delete-only run." + (
                     " Each figure is the median of %d rounds, their range in brackets." % n_rounds
                     if n_rounds > 1 else ""))
    lines.append("")
    lines.append("| partitions | local setData: CPU-us per op per partition | range over partitions | "
                 "global create/delete: CPU-us per op per partition | whole cluster per global op |")
    lines.append("|---:|---:|---:|---:|---:|")
    for k in ks:
        loc = m.get((k, 0))
        glo = m.get((k, 100))
        lines.append("| %d | %s | %s | %s | %s |" % (
            k,
            with_range(loc["cpu_per_op"], loc["cpu_range"]) if loc else "not run",
            spread(loc["cpu_per_op_each"]) if loc else "",
            with_range(glo["cpu_per_op"] / k, [c / k for c in glo["cpu_range"]])
            if glo and glo["cpu_per_op"] is not None else "not run",
            fmt(glo["cpu_per_op"]) if glo and glo["cpu_per_op"] is not None else ""))
    lines.append("")
    charts = []
    cost_series = []
    pts = [(k, m[(k, 0)]["cpu_per_op"]) for k in ks if (k, 0) in m and m[(k, 0)]["cpu_per_op"] is not None]
    if pts:
        cost_series.append(("local setData, per partition", "#2ca02c", pts, False))
    pts = [(k, m[(k, 100)]["cpu_per_op"] / k) for k in ks if (k, 100) in m and m[(k, 100)]["cpu_per_op"] is not None]
    if pts:
        cost_series.append(("global create/delete, per partition", "#d62728", pts, False))
    svg = line_chart("CPU per operation at each partition", ks, cost_series, "partitions (1 replica each)",
                     "CPU-us per operation") if ks else None
    if svg:
        charts.append(("scaling-cost.svg", svg))
        lines.append("![CPU per operation at each partition](scaling-cost.svg)")
        lines.append("")

    # ---- throughput
    lines.append("## Throughput under a fixed CPU budget per partition" if budget > 0 else "## Throughput (no CPU budget)")
    lines.append("")
    if budget > 0:
        lines.append("Each partition's process may use %g core (CFS quota); k partitions get k x %g cores, "
                     "so ideal scaling is linear in k. Speedup is against k = 1 with the same share of "
                     "create/delete." % (budget, budget) + (
                         " Each figure is the median of %d rounds; the range over rounds is in "
                         "\"Every run\" below." % n_rounds if n_rounds > 1 else ""))
    lines.append("")
    lines.append("| partitions | " + " | ".join("%d%% create/delete" % g for g in shares) + " |")
    lines.append("|---:|" + "---:|" * len(shares))
    for k in ks:
        cells = []
        for g in shares:
            r, base = m.get((k, g)), m.get((ks[0], g)) if ks else None
            if r is None:
                cells.append("not run")
            else:
                sp = (" (%.2fx)" % (r["ops"] / base["ops"])) if base and base["ops"] > 0 and k != ks[0] else ""
                cells.append(fmt(r["ops"]) + sp)
        lines.append("| %d | %s |" % (k, " | ".join(cells)))
    lines.append("")
    tp_series = []
    for g in shares:
        pts = [(k, m[(k, g)]["ops"]) for k in ks if (k, g) in m]
        if pts:
            tp_series.append(("%d%% create/delete" % g, SHARE_COLOURS.get(g, "#7f7f7f"), pts, False))
    if (ks and (ks[0], 0) in m) and len(ks) > 1:
        base = m[(ks[0], 0)]["ops"]
        tp_series.append(("ideal (k x k=%d at 0%%)" % ks[0], "#999999", [(k, base * k / ks[0]) for k in ks], True))
    svg = line_chart("Throughput vs partitions" + (", %g core per partition" % budget if budget > 0 else ""),
                     ks, tp_series, "partitions (1 replica each)", "operations / s") if ks else None
    if svg:
        charts.append(("scaling-throughput.svg", svg))
        lines.append("![Throughput vs partitions](scaling-throughput.svg)")
        lines.append("")

    lines.extend(alone_section(raw_dir))

    # ---- details
    lines.append("## Every run")
    lines.append("")
    lines.append("| partitions | create/delete asked | round | measured | ops/s | p50 ms | p99 ms | server CPU-us/op | "
                 "cores per partition | throttled periods (whole run) | host steal | errors |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    every = [(k, g, i + 1, r) for (k, g) in sorted(m) for i, r in enumerate(m[(k, g)]["rounds"])]
    for k, g, rnd, r in every:
        lines.append("| %d | %d%% | %d | %.1f%% | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            k, g, rnd, r["global"] * 100, fmt(r["ops"]), fmt(r["p50"], 2), fmt(r["p99"], 2),
            fmt(r["cpu_per_op"]), spread(r["cores_each"], 2),
            "–" if r["throttled"] is None else "%.0f%%" % (r["throttled"] * 100),
            "–" if r["steal"] is None else "%.1f%%" % (r["steal"] * 100), r["errors"]))
    lines.append("")
    if budget > 0:
        lines.append("Cores per partition at the budget (%g) and most periods throttled means the run was "
                     "limited by the budget, as intended; well below it means something else (the load "
                     "generator, the machine's two CPUs, waiting for other partitions) was the limit. Host "
                     "steal is the share of the machine's CPU time the hypervisor gave to other guests "
                     "during the run: it slows every process alike, so runs with more of it cost more "
                     "CPU-us per operation." % budget)
        lines.append("")

    lines.append("## The paper's figure 8")
    lines.append("")
    lines.extend(PAPER_FIG8)
    lines.append("")

    os.makedirs(out_dir, exist_ok=True)
    for fname, svg in charts:
        with open(os.path.join(out_dir, fname), "w") as f:
            f.write(svg + "\n")
    with open(os.path.join(out_dir, "scaling.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "ports":
        print(" ".join(str(p) for p in free_ports(int(argv[2]))))
        return 0
    if len(argv) >= 4 and argv[1] == "wait":
        return wait(argv[2:-1], float(argv[-1]))
    if len(argv) == 3 and argv[1] == "seconds":
        print(int(math.ceil(seconds(argv[2]))))
        return 0
    if len(argv) >= 4 and argv[1] == "scaling":
        budget, command, notes, rest = 0.0, "", [], argv[4:]
        while rest:
            if rest[0] == "--budget" and len(rest) > 1:
                budget, rest = float(rest[1]), rest[2:]
            elif rest[0] == "--command" and len(rest) > 1:
                command, rest = rest[1], rest[2:]
            elif rest[0] == "--note" and len(rest) > 1:
                notes.append(rest[1])
                rest = rest[2:]
            else:
                print("unknown argument %s" % rest[0], file=sys.stderr)
                return 2
        return scaling(argv[2], argv[3], budget, command, notes)
    if len(argv) >= 4 and argv[1] == "summarize":
        command, notes, rest = "", [], argv[4:]
        while rest:
            if rest[0] == "--command" and len(rest) > 1:
                command, rest = rest[1], rest[2:]
            elif rest[0] == "--note" and len(rest) > 1:
                notes.append(rest[1])
                rest = rest[2:]
            else:
                print("unknown argument %s" % rest[0], file=sys.stderr)
                return 2
        return summarize(argv[2], argv[3], command, notes)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
