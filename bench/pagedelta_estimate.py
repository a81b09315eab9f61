#!/usr/bin/env python3
"""Estimate what storing each changed page as a difference from its previous version would
save continuous capture, on the real workload (issue 14's bytes target).

    python3 pagedelta_estimate.py --v0 /tmp/lbbench/large/v0.db --work /tmp/lbbench/pde \\
        --duration 60 --pct 0.1 [--tx-per-interval 119]

Copies v0, holds a read transaction from the start (so SQLite never backfills or restarts the
log: every frame stays in the -wal), runs mutate_lat.py paced over --duration, then reads the
-wal offline. Transactions are grouped into intervals of --tx-per-interval commits (the paced
day commits ~119 a second, so one group is about one of lifeboat's 1-s intervals). Per
interval, each page written in it counts once, with its last version; its previous version is
the one the previous intervals left (or v0's page). Prints, summed over the intervals, the
zstd -3 size of (a) the whole pages, as lifeboat stores them today (one 4 MiB block per
interval at most), (b) each page XORed with its previous version, (c) only the changed byte
ranges (offset, length, bytes), and how many pages were new (no previous version).
"""
import argparse
import os
import shutil
import sqlite3
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def zsize(data):
    if not data:
        return 0
    p = subprocess.run(["zstd", "-3", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True)
    return len(p.stdout)


def ranges(old, new):
    """The changed byte ranges of new against old, merged across gaps under 16 bytes."""
    out = bytearray()
    i, n = 0, len(new)
    while i < n:
        if old[i] == new[i]:
            i += 1
            continue
        j = i
        last = i
        while j < n and j - last < 16:
            if old[j] != new[j]:
                last = j
            j += 1
        out += struct.pack("<HH", i, last + 1 - i) + new[i:last + 1]
        i = last + 1
    return bytes(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--v0", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--pct", type=float, default=0.1)
    ap.add_argument("--tx-per-interval", type=int, default=119)
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    db = os.path.join(a.work, "live.db")
    for s in ("", "-wal", "-shm"):
        if os.path.exists(db + s):
            os.remove(db + s)
    shutil.copyfile(a.v0, db)
    hold = sqlite3.connect(db, isolation_level=None)
    ps = hold.execute("PRAGMA page_size").fetchone()[0]
    hold.execute("PRAGMA journal_mode=WAL")
    hold.execute("BEGIN")
    hold.execute("SELECT count(*) FROM sqlite_schema").fetchone()
    subprocess.run([sys.executable, os.path.join(HERE, "mutate_lat.py"), "--db", db, "--seed", "1",
                    "--day", "1", "--pct", str(a.pct), "--duration", str(a.duration)],
                   stdout=subprocess.DEVNULL, check=True)
    wal = open(db + "-wal", "rb").read()
    hold.execute("COMMIT")
    hold.close()
    base = open(a.v0, "rb")
    prev = {}

    def previous(pg):
        if pg in prev:
            return prev[pg]
        base.seek((pg - 1) * ps)
        b = base.read(ps)
        return b if len(b) == ps else None

    fl = 24 + ps
    salts = wal[16:24]
    frames, pending, txs = [], {}, 0
    intervals = []
    off = 32
    while off + fl <= len(wal):
        h = wal[off:off + 24]
        if h[8:16] != salts:
            break
        pg, commit = struct.unpack(">II", h[:8])
        pending[pg] = wal[off + 24:off + fl]
        if commit:
            txs += 1
            frames.append(pending)
            pending = {}
            if txs % a.tx_per_interval == 0:
                merged = {}
                for f in frames:
                    merged.update(f)
                intervals.append(merged)
                frames = []
        off += fl
    whole = xor = rng = 0
    pages = new = 0
    for iv in intervals:
        w, x, r = bytearray(), bytearray(), bytearray()
        for pg in sorted(iv):
            data = iv[pg]
            old = previous(pg)
            pages += 1
            w += data
            if old is None:
                new += 1
                x += data
                r += data
            else:
                x += bytes(p ^ q for p, q in zip(old, data))
                r += ranges(old, data)
            prev[pg] = data
        whole += zsize(bytes(w))
        xor += zsize(bytes(x))
        rng += zsize(bytes(r))
    print(f"transactions {txs}, intervals {len(intervals)}, page versions {pages} ({new} new pages)")
    print(f"whole pages, zstd -3:          {whole / 2**20:8.1f} MiB  1.00")
    print(f"XOR with previous, zstd -3:    {xor / 2**20:8.1f} MiB  {xor / whole:.2f}")
    print(f"changed ranges only, zstd -3:  {rng / 2**20:8.1f} MiB  {rng / whole:.2f}")


if __name__ == "__main__":
    main()
