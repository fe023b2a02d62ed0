#!/usr/bin/env python3
"""Logging TCP proxy for ZooKeeper's client port (used to capture the golden fixtures).

usage: proxy.py LISTEN_PORT UPSTREAM_PORT LOG_FILE

Listens on 127.0.0.1:LISTEN_PORT, forwards every connection to 127.0.0.1:UPSTREAM_PORT unchanged,
and appends each length-prefixed frame, per direction, to LOG_FILE as one JSON line:
{"conn": n, "dir": "c2s" | "s2c", "hex": "<frame body without the 4-byte length>"}.
"""
import json
import socket
import struct
import sys
import threading

lock = threading.Lock()


def pump(conn_id, direction, src, dst, log):
    buf = b""
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            break
        dst.sendall(data)
        buf += data
        while len(buf) >= 4:
            (n,) = struct.unpack(">i", buf[:4])
            if n < 0 or len(buf) < 4 + n:
                break
            body, buf = buf[4 : 4 + n], buf[4 + n :]
            with lock:
                log.write(json.dumps({"conn": conn_id, "dir": direction, "hex": body.hex()}) + "\n")
                log.flush()
    for s in (src, dst):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    listen_port, upstream_port, log_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    log = open(log_path, "a")
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", listen_port))
    srv.listen()
    conn_id = 0
    while True:
        client, _ = srv.accept()
        conn_id += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", upstream_port))
        except OSError:
            client.close()
            continue
        for d, a, b in (("c2s", client, upstream), ("s2c", upstream, client)):
            threading.Thread(target=pump, args=(conn_id, d, a, b, log), daemon=True).start()


if __name__ == "__main__":
    main()
