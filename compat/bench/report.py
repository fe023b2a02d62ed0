#!/usr/bin/env python3
"""Helpers of compat/bench/run.sh, standard library only.

  report.py ports N                 print N distinct free TCP ports on 127.0.0.1
  report.py wait HOST:PORT... SECS  wait until every server completes a ZooKeeper handshake
  report.py summarize RAW_DIR OUT_DIR [--command CMD] [--note TEXT]
                                    write OUT_DIR/README.md (tables, ratios) and SVG charts from
                                    the `volery bench --json` files in RAW_DIR

Raw files are named by run.sh: <target>__<load>__<sessions>.json, with load set1k or get1k.
"""

import glob
import json
import math
import os
import platform
import socket
import struct
import subprocess
import sys
import time

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
def free_ports(n):
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def handshake(host, port, timeout=2.0):
    """True if the server answers a ConnectRequest with a session (ZooKeeper refuses connections
    until it serves, e.g. before an ensemble has a quorum)."""
    body = struct.pack(">iqiqi16sB", 0, 0, 30000, 0, 16, b"\0" * 16, 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 4:
                chunk = s.recv(4 - len(head))
                if not chunk:
                    return False
                head += chunk
            (n,) = struct.unpack(">i", head)
            rsp = b""
            while len(rsp) < n:
                chunk = s.recv(n - len(rsp))
                if not chunk:
                    return False
                rsp += chunk
            _, tmo, sid = struct.unpack(">iiq", rsp[:16])
            # Close the session politely: closeSession (opcode -11).
            s.sendall(struct.pack(">iii", 8, 1, -11))
            return tmo > 0 and sid != 0
    except OSError:
        return False


def wait(addrs, secs):
    deadline = time.time() + secs
    pending = list(addrs)
    while pending and time.time() < deadline:
        host, port = pending[0].rsplit(":", 1)
        if handshake(host, int(port)):
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
def summarize(raw_dir, out_dir, command, notes):
    runs = load_runs(raw_dir)
    present = [t for t in TARGETS if any(k[0] == t[0] for k in runs)]
    lines = ["# volery bench: Volery vs Apache ZooKeeper 3.8", ""]
    lines.append("- Date: %s" % time.strftime("%Y-%m-%d %H:%M %Z"))
    lines.append("- Machine: %s" % machine())
    if command:
        lines.append("- Command: `%s`" % command)
    for n in notes:
        lines.append("- %s" % n)
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


def main(argv):
    if len(argv) >= 2 and argv[1] == "ports":
        print(" ".join(str(p) for p in free_ports(int(argv[2]))))
        return 0
    if len(argv) >= 4 and argv[1] == "wait":
        return wait(argv[2:-1], float(argv[-1]))
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
