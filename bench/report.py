#!/usr/bin/env python3
"""Turn run_peers.sh / raw_limits.sh output into markdown tables.

    python3 report.py [RESULTS_DIR] > tables.md     (default /tmp/lbbench/results)

Every figure is the MEDIAN over the cycles of run_peers.sh; wall columns also show
[min-max]. CPU = user + sys. RSS = peak resident set of the largest single process.
Sizes are MiB (2^20 bytes).
"""
import csv
import json
import os
import statistics
import sys

MiB = 1048576.0


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_wall(xs):
    if not xs:
        return "-"
    m = med(xs)
    if len(xs) == 1:
        return "%.2f" % m
    return "%.2f [%.2f-%.2f]" % (m, min(xs), max(xs))


def targets(w, size, sel, stats, pdiff, verify):
    """lifeboat's targets (issue 4) as ratios against peers measured in the same run."""
    def m_(method, phase, col):
        rs = sel(size, method, phase)
        if not rs:
            return None
        wl, cpu, rss, repo, delta = stats(rs)
        return {"wall": med(wl), "delta": med(delta), "rss": med(rss)}[col]

    lb = lambda phase, col: m_("lifeboat", phase, col)  # noqa: E731
    if lb("full", "wall") is None:
        return
    rows = []

    def ratio(name, num, den, limit, fmt="%.2f"):
        if num is None or den is None or den == 0:
            rows.append((name, "-", "<= %s" % limit, "not measured (peer missing)"))
            return
        r = num / den
        rows.append((name, fmt % r, "<= %s" % limit, "met" if r <= limit else "NOT met"))

    ratio("full backup wall / borg-lz4 wall", lb("full", "wall"), m_("borg-lz4", "full", "wall"), 0.6)
    ratio("full backup stored / zstd -3 stored", lb("full", "delta"), m_("zstd", "full", "delta"), 1.02)
    floor = pdiff["changed_bytes_zlib1"] if pdiff else None
    ratio("incremental bytes added / changed pages (zlib-1)", lb("incr", "delta"), floor, 1.3)
    ratio("incremental bytes added / litestream's", lb("incr", "delta"), m_("litestream", "incr", "delta"), 0.25)
    ratio("incremental wall / zstd wall", lb("incr", "wall"), m_("zstd", "incr", "wall"), 0.5)
    un = lb("unchanged", "delta")
    rows.append(("unchanged backup bytes added", "%d B" % un if un is not None else "-", "<= 65536 B",
                 "met" if un is not None and un <= 65536 else "NOT met"))
    ratio("unchanged backup wall / zstd wall", lb("unchanged", "wall"), m_("zstd", "unchanged", "wall"), 0.2)
    ratio("restore wall / zstd -d wall (verify full: integrity_check)", lb("restore", "wall"),
          m_("zstd", "restore", "wall"), 0.6)
    ratio("restore wall / zstd -d wall (verify quick: quick_check)", m_("lifeboat-quick", "restore", "wall"),
          m_("zstd", "restore", "wall"), 0.6)
    for phase in ("full", "incr", "restore"):
        r = lb(phase, "rss")
        rows.append(("peak RSS, %s" % phase, "%.0f MiB" % r if r is not None else "-", "<= 100 MiB",
                     "met" if r is not None and r <= 100 else "NOT met"))
    for m in ("lifeboat", "lifeboat-quick"):
        v = verify.get((size, m))
        if v is not None:
            rows.append(("%s restore verified by verify.py (integrity, counts, content hash)" % m, v, "yes",
                         "met" if v == "yes" else "NOT met"))
    w("### lifeboat's targets (%s), from this run\n" % size)
    w("| target | lifeboat | limit | |")
    w("|---|---|---|---|")
    for r in rows:
        w("| %s | %s | %s | %s |" % r)
    w("")


def main():
    res = sys.argv[1] if len(sys.argv) > 1 else "/tmp/lbbench/results"
    data = os.path.dirname(os.path.abspath(res))
    rows = list(csv.DictReader(open(os.path.join(res, "runs.tsv")), delimiter="\t"))
    ver = []
    vp = os.path.join(res, "versions.tsv")
    if os.path.exists(vp):
        for r in csv.DictReader(open(vp), delimiter="\t"):
            ver.append((r["tool"], r["version"]))
    verify = {}
    vt = os.path.join(res, "verify.tsv")
    if os.path.exists(vt):
        for r in csv.DictReader(open(vt), delimiter="\t"):
            verify[(r["size"], r["method"])] = r["ok"]

    sizes = []
    methods = []
    for r in rows:
        if r["size"] not in sizes:
            sizes.append(r["size"])
        if r["method"] not in methods and r["method"] not in ("generator", "app"):
            methods.append(r["method"])

    def sel(size, method, phase):
        return [r for r in rows if r["size"] == size and r["method"] == method and r["phase"] == phase
                and r["rc"] == "0"]

    def stats(rs):
        wall = [float(r["wall_s"]) for r in rs]
        cpu = [float(r["user_s"]) + float(r["sys_s"]) for r in rs]
        rss = [int(r["maxrss_kb"]) / 1024.0 for r in rs]
        repo = [int(r["repo_bytes"]) for r in rs]
        delta = [int(r["delta_bytes"]) for r in rs]
        return wall, cpu, rss, repo, delta

    out = []
    w = out.append
    if ver:
        w("### Versions\n")
        w("| method or tool | version |\n|---|---|")
        for k, v in ver:
            w("| %s | %s |" % (k, v))
        w("")

    for size in sizes:
        dd = os.path.join(data, size)
        db_bytes = None
        try:
            v0 = json.load(open(os.path.join(dd, "v0.json")))
            db_bytes = v0["file_bytes"]
            v1 = json.load(open(os.path.join(dd, "ref-v1.json")))
            pdiff = json.load(open(os.path.join(dd, "pagediff.json")))
        except (OSError, ValueError, KeyError):
            v0 = v1 = pdiff = None
        w("## Size `%s`\n" % size)
        if v0:
            w("Database v0: %.1f MiB; rows: %s." % (db_bytes / MiB, ", ".join(
                "%s %d" % (k, v) for k, v in v0["counts"].items())))
            w("After one day of `mutate.py` (v1): rows: %s." % ", ".join(
                "%s %d" % (k, v) for k, v in v1["counts"].items()))
            w("Pages that differ between v0 and v1 (`.backup` copies): %d of %d (%.2f%%) = %.1f MiB raw, "
              "%.1f MiB zlib-1; they touch %d of %d 1-MiB windows and %d of %d 4-MiB windows.\n" % (
                  pdiff["pages_changed"], pdiff["pages_new"], pdiff["changed_pct"],
                  pdiff["changed_bytes"] / MiB, pdiff["changed_bytes_zlib1"] / MiB,
                  pdiff["windows_1MiB_touched"], pdiff["windows_1MiB_total"],
                  pdiff["windows_4MiB_touched"], pdiff["windows_4MiB_total"]))
        app = sel(size, "app", "mutate")
        if app:
            wl, cpu, rss, _, _ = stats(app)
            w("App's day of writes alone (`mutate.py`, no backup tool running): wall %s s, CPU %.2f s.\n"
              % (fmt_wall(wl), med(cpu)))

        w("### Full backup of v0 (%s)\n" % size)
        w("| method | wall s (median [min-max]) | CPU s | peak RSS MiB | stored MiB | stored / DB |")
        w("|---|---|---|---|---|---|")
        for m in methods:
            rs = sel(size, m, "full")
            if not rs:
                continue
            wl, cpu, rss, repo, delta = stats(rs)
            w("| %s | %s | %.2f | %.0f | %.1f | %.2f |" % (
                m, fmt_wall(wl), med(cpu), med(rss), med(delta) / MiB,
                med(delta) / db_bytes if db_bytes else float("nan")))
        w("")
        w("### Incremental: second backup after one day of writes (%s)\n" % size)
        ideal = pdiff["changed_bytes"] if pdiff else None
        w("| method | wall s (median [min-max]) | CPU s | peak RSS MiB | bytes added MiB | added / DB | "
          "added / changed-pages |")
        w("|---|---|---|---|---|---|---|")
        for m in methods:
            rs = sel(size, m, "incr")
            if not rs:
                continue
            wl, cpu, rss, repo, delta = stats(rs)
            w("| %s | %s | %.2f | %.0f | %.2f | %.3f | %s |" % (
                m, fmt_wall(wl), med(cpu), med(rss), med(delta) / MiB,
                med(delta) / db_bytes if db_bytes else float("nan"),
                "%.2f" % (med(delta) / ideal) if ideal else "-"))
        w("")
        w("### Backup of an unchanged database (v1 again) (%s)\n" % size)
        w("| method | wall s (median [min-max]) | CPU s | peak RSS MiB | bytes added |")
        w("|---|---|---|---|---|")
        for m in methods:
            rs = sel(size, m, "unchanged")
            if not rs:
                continue
            wl, cpu, rss, repo, delta = stats(rs)
            w("| %s | %s | %.2f | %.0f | %d |" % (m, fmt_wall(wl), med(cpu), med(rss), med(delta)))
        w("")
        targets(w, size, sel, stats, pdiff, verify)
        extra = [m for m in methods if sel(size, m, "startup")]
        for m in extra:
            st = sel(size, m, "startup")
            mu = sel(size, m, "mutate-under-" + m)
            lt = sel(size, m, "daemon-lifetime")
            wl, cpu, rss, repo, delta = stats(st)
            w("%s daemon start after the `-once` snapshot: %s s until quiet, CPU %.2f s, peak RSS %.0f MiB, "
              "replica grew by %.1f MiB (%.2f x DB)." % (m, fmt_wall(wl), med(cpu), med(rss),
                                                       med(delta) / MiB, med(delta) / db_bytes))
            if mu:
                wl2, cpu2, _, _, _ = stats(mu)
                w("The app's day of writes with %s running: wall %s s, app CPU %.2f s." % (m, fmt_wall(wl2), med(cpu2)))
            if lt:
                wl3, cpu3, rss3, repo3, _ = stats(lt)
                w("Whole daemon life (start, day of writes, stop): CPU %.2f s, peak RSS %.0f MiB; replica at the "
                  "end %.1f MiB (%.2f x DB)." % (med(cpu3), med(rss3), med(repo3) / MiB, med(repo3) / db_bytes))
            w("")
        w("### Restore of the latest backup (%s)\n" % size)
        w("| method | wall s (median [min-max]) | CPU s | peak RSS MiB | integrity + counts + content hash |")
        w("|---|---|---|---|---|")
        for m in methods:
            rs = sel(size, m, "restore")
            if not rs:
                continue
            wl, cpu, rss, repo, delta = stats(rs)
            w("| %s | %s | %.2f | %.0f | %s |" % (m, fmt_wall(wl), med(cpu), med(rss),
                                                verify.get((size, m), "-")))
        skipped = [r["method"] for r in rows if r["size"] == size and r["phase"] == "skipped"]
        failed = sorted({r["method"] + "/" + r["phase"] for r in rows if r["size"] == size and r["rc"] not in ("0", "")
                         and r["phase"] != "skipped"})
        if skipped:
            w("\nSkipped (tool not installed): %s." % ", ".join(skipped))
        if failed:
            w("\nNon-zero exit: %s (see results/run.log)." % ", ".join(failed))
        w("")

    rawp = os.path.join(res, "raw.json")
    if os.path.exists(rawp):
        raw = json.load(open(rawp))
        size_line = open(os.path.join(res, "raw-cache.txt")).readline().strip()
        fbytes = int(size_line.split("(")[1].split()[0])
        w("## Raw limits on this machine (%s)\n" % size_line)
        w("| command | median s [min-max] | MB/s (10^6, median) | user s | sys s |")
        w("|---|---|---|---|---|")
        for r in raw["results"]:
            cmd = r["command"].replace(os.path.dirname(res) + "/", "")
            w("| `%s` | %.3f [%.3f-%.3f] | %.0f | %.2f | %.2f |" % (
                cmd.replace("|", "\\|"), r["median"], r["min"], r["max"], fbytes / r["median"] / 1e6,
                r["user"], r["system"]))
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
