#!/usr/bin/env python3
"""Split proxy.py's log into one fixture file per connection.

usage: extract.py FRAMES_JSONL OUT_DIR CONN=NAME[:MAX_FRAMES] ...

Each fixture has one frame per line, "c2s <hex>" or "s2c <hex>", in the order the proxy saw them
(per direction; the two directions are interleaved as they arrived). The first frame of each
direction is the ConnectRequest / ConnectResponse.
"""
import json
import sys

frames_path, out_dir, specs = sys.argv[1], sys.argv[2], sys.argv[3:]
wanted = {}
for spec in specs:
    conn, rest = spec.split("=", 1)
    name, _, limit = rest.partition(":")
    wanted[int(conn)] = (name, int(limit) if limit else None)
lines = {c: [] for c in wanted}
for line in open(frames_path):
    f = json.loads(line)
    if f["conn"] in wanted:
        lines[f["conn"]].append(f"{f['dir']} {f['hex']}")
for conn, (name, limit) in wanted.items():
    with open(f"{out_dir}/{name}.hex", "w") as out:
        out.write("\n".join(lines[conn][:limit]) + "\n")
