#!/usr/bin/env python3
"""Hold a rolling read snapshot of a SQLite database the way lifeboat's continuous follower
does, and nothing else (bench/latency.sh's "reader" variant): two connections, one of which
always holds a read transaction; every second the other begins a new one and the old one ends;
once the WAL passes 4,096 frames both let go for up to a second (until the log restarts), as
the follower's handover does. Reads no pages, stores nothing: what the snapshot alone costs
the app's writers.

    python3 anchor_reader.py live.db
"""
import os
import sqlite3
import sys
import time

HANDOVER_FRAMES = 4096


def begin(c):
    c.execute("BEGIN")
    c.execute("SELECT count(*) FROM sqlite_schema").fetchone()


def gen_frames(path, page_size, gen):
    """Frames of the log's current generation: the slots from 1 whose header bears its salts
    (a prefix of the file; the rest are older generations'), found by bisection."""
    try:
        f = open(path + "-wal", "rb")
    except FileNotFoundError:
        return 0
    with f:
        n = max(0, (os.fstat(f.fileno()).st_size - 32) // (page_size + 24))

        def ours(slot):
            f.seek(32 + (slot - 1) * (page_size + 24) + 8)
            return f.read(8) == gen

        lo, hi = 0, n  # slots 1..lo are ours; slots past hi are not
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ours(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo


def salts(path):
    try:
        with open(path + "-wal", "rb") as f:
            return f.read(24)[16:24]
    except FileNotFoundError:
        return b""


def main():
    path = sys.argv[1]
    a = sqlite3.connect(path, isolation_level=None)
    b = sqlite3.connect(path, isolation_level=None)
    ps = a.execute("PRAGMA page_size").fetchone()[0]
    begin(a)
    while True:
        time.sleep(1)
        begin(b)
        a.execute("COMMIT")
        a, b = b, a
        gen = salts(path)
        if gen_frames(path, ps, gen) > HANDOVER_FRAMES:
            a.execute("COMMIT")
            t = time.monotonic()
            while salts(path) == gen and time.monotonic() - t < 1:
                time.sleep(0.002)
            begin(a)


if __name__ == "__main__":
    main()
