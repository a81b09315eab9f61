#!/usr/bin/env python3
"""Sampler for bench/continuous.sh: the WAL's size every 100 ms and the files of a replica.

    python3 cont_sampler.py --wal live.db-wal --repo REPO_DIR --out PREFIX

Runs until SIGTERM/SIGINT, then writes
  PREFIX.wal.tsv    "epoch_s bytes" each time the -wal file's size changed (0 = missing)
  PREFIX.files.tsv  "first_seen_epoch_s size path" for every file ever seen under REPO_DIR
                    (listed every 0.5 s; a file created and deleted within 0.5 s is missed)
so the driver can count the WAL's maximum and the objects created in any time window, also
for a tool that deletes objects later (litestream drops L0 files after compaction).
"""
import argparse
import os
import signal
import time


def walk(root, seen, now):
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            if p in seen:
                continue
            try:
                size = os.stat(p).st_size
            except OSError:
                continue
            seen[p] = (now, size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wal", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    wal = []
    last = None
    seen = {}
    next_walk = 0.0
    while not stop:
        now = time.time()
        try:
            s = os.stat(a.wal).st_size
        except OSError:
            s = 0
        if s != last:
            wal.append((now, s))
            last = s
        if now >= next_walk:
            walk(a.repo, seen, now)
            next_walk = now + 0.5
        time.sleep(0.1)
    walk(a.repo, seen, time.time())
    with open(a.out + ".wal.tsv", "w") as f:
        for t, s in wal:
            f.write("%.3f %d\n" % (t, s))
    with open(a.out + ".files.tsv", "w") as f:
        for p, (t, s) in sorted(seen.items(), key=lambda x: x[1][0]):
            f.write("%.3f %d %s\n" % (t, s, os.path.relpath(p, a.repo)))


if __name__ == "__main__":
    main()
