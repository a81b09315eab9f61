#!/usr/bin/env python3
"""mutate.py with per-transaction timing and a mid-day pause for a reference copy (bench/continuous.sh).

The workload is mutate.py's, unchanged (same events, same transactions, same pacing); this copy
only adds two options:
  --latency-out FILE   one line per transaction: "<begin..commit µs> <COMMIT statement µs>"
                       (BEGIN IMMEDIATE to the return of COMMIT, as the app sees it, and the COMMIT
                       alone, where the WAL write and any autocheckpoint happen)
  --mid-backup PATH    at the half-way event: commit, pause (at least --mid-pause s), take
                       `sqlite3 DB ".backup PATH"` during the pause, then resume; the pacing clock
                       is shifted by the pause so no events are rushed afterwards. The pause's
                       wall-clock bounds and its middle T (RFC 3339, UTC, ms) go into the JSON
                       output under "mid" (T = the moment to restore to: every transaction before
                       the pause committed before T, none after).

    python3 mutate_lat.py --db live.db --seed 1 --day 1 --duration 600 --latency-out lat.txt --mid-backup mid.db

Original description (mutate.py):

Apply one realistic day of chat-server activity to a database made by gen_chat_db.py.

What a day contains (all deterministic from --seed/--day and the database's state):
  * new messages totalling ~--pct percent of the database size (default 1%), each in
    its own transaction by default (--batch 1: a chat server commits per message),
    with thread replies, reactions, quick edits of just-posted messages and read
    markers (channel_members.last_read_message_id) moving for readers;
  * users logging in (users.last_seen_at), git-over-ssh use (ssh_keys.last_used_at),
    a few sign-ups with ssh keys, maybe a new channel;
  * a few writes to OLD rows chosen uniformly over the whole history, so dirty pages
    are spread through the file: edits and soft-deletes of old messages, reactions
    added to and removed from old messages (counts scale with the message count:
    --old-frac, default 2e-5 of messages each, at least 5).
Events are interleaved in time order over the day. The database stays in WAL mode
with synchronous=NORMAL and SQLite's default autocheckpoint (1000 pages), like an
app; the WAL is not truncated at the end. --duration SECONDS spreads the events
evenly over that wall time (to let a continuous replicator see many small syncs);
the default 0 runs them as fast as possible.
"""
import argparse
import collections
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chatdb_common as C  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--seed", type=int, default=1, help="same seed as the generator (text model)")
    ap.add_argument("--day", type=int, default=1, help="day number; each day gives different activity")
    ap.add_argument("--pct", type=float, default=1.0, help="new message volume, percent of DB size")
    ap.add_argument("--batch", type=int, default=1, help="events per transaction (default 1)")
    ap.add_argument("--old-frac", type=float, default=2e-5,
                    help="old-row edits/deletes/reaction changes, fraction of messages each")
    ap.add_argument("--duration", type=float, default=0.0, help="spread events over this many seconds")
    ap.add_argument("--latency-out", help="write one line per transaction: total_us commit_us")
    ap.add_argument("--mid-backup", help="at the half-way event pause and .backup the DB to this path")
    ap.add_argument("--mid-pause", type=float, default=2.0, help="minimum pause length, seconds")
    args = ap.parse_args()

    t_start = time.monotonic()
    r = random.Random(args.seed * 1000003 + args.day)
    text = C.TextModel(args.seed)

    con = sqlite3.connect(args.db, isolation_level=None, timeout=30)
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA busy_timeout=30000")

    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    page_count = con.execute("PRAGMA page_count").fetchone()[0]
    db_bytes = page_size * page_count
    max_mid, t_last = con.execute("SELECT max(id), max(created_at) FROM messages").fetchone()
    n_users = con.execute("SELECT max(id) FROM users").fetchone()[0]
    n_chan = con.execute("SELECT max(id) FROM channels").fetchone()[0]
    max_key = con.execute("SELECT coalesce(max(id),0) FROM ssh_keys").fetchone()[0]
    usernames = [u for (u,) in con.execute("SELECT username FROM users ORDER BY id")]
    user_keys = collections.defaultdict(list)
    for kid, uid in con.execute("SELECT id, user_id FROM ssh_keys ORDER BY id"):
        user_keys[uid].append(kid)
    members = collections.defaultdict(list)
    member_set = set()
    for c, u in con.execute("SELECT channel_id, user_id FROM channel_members ORDER BY channel_id, user_id"):
        members[c].append(u)
        member_set.add((c, u))
    fts = con.execute("SELECT count(*) FROM sqlite_master WHERE name='messages_fts'").fetchone()[0] > 0

    n_new = max(10, round(args.pct / 100.0 * db_bytes / C.BYTES_PER_MESSAGE))
    n_old = max(5, int(max_mid * args.old_frac))
    day0 = t_last + 3600

    uw = [1.0 / (k + 1) ** 0.9 for k in range(n_users)]
    r.shuffle(uw)
    cw = [1.0 / (k + 1) ** 1.1 for k in range(n_chan)]
    r.shuffle(cw)
    u_cum = list(C._accumulate(uw))
    c_cum = list(C._accumulate(cw))

    # Build the day's event list: (time, seq, kind, payload)
    ev = []
    seq = 0

    def add(ts, kind, *payload):
        nonlocal seq
        seq += 1
        ev.append((ts, seq, kind, payload))

    # message times: busier in the afternoon (sum of two uniforms gives a bump)
    times = sorted(day0 + int((r.random() + r.random()) * C.DAY / 2) for _ in range(n_new))
    for ts in times:
        add(ts, "msg")
    active = set(r.choices(range(1, n_users + 1), cum_weights=u_cum, k=max(5, n_users // 3)))
    for u in sorted(active):
        add(day0 + r.randint(0, C.DAY - 1), "seen", u)
        if user_keys.get(u) and r.random() < 0.3:
            add(day0 + r.randint(0, C.DAY - 1), "keyuse", r.choice(user_keys[u]))
    for _ in range(max(1, n_users // 200)):
        add(day0 + r.randint(0, C.DAY - 1), "signup")
    if r.random() < 0.3:
        add(day0 + r.randint(0, C.DAY - 1), "channel")
    for _ in range(n_old):
        add(day0 + r.randint(0, C.DAY - 1), "old_edit", r.randint(1, max_mid))
        add(day0 + r.randint(0, C.DAY - 1), "old_delete", r.randint(1, max_mid))
        add(day0 + r.randint(0, C.DAY - 1), "old_react", r.randint(1, max_mid))
        add(day0 + r.randint(0, C.DAY - 1), "old_unreact", r.randint(1, max_mid))
    ev.sort()

    stats = collections.Counter()
    mid = max_mid
    uid_next = n_users
    chan_next = n_chan
    recent_in_channel = collections.defaultdict(lambda: collections.deque(maxlen=30))
    recent_bodies = collections.deque(maxlen=200)
    pending_edits = []  # (due_seq_index, mid)
    in_tx = 0
    pace = args.duration / len(ev) if args.duration > 0 else 0.0
    t_pace0 = time.monotonic()
    lat = []  # (total_ns, commit_ns) per transaction
    t_begin = 0
    mid_idx = len(ev) // 2 if args.mid_backup else -1
    mid_info = None

    def begin():
        nonlocal in_tx, t_begin
        if in_tx == 0:
            t_begin = time.perf_counter_ns()
            con.execute("BEGIN IMMEDIATE")
        in_tx += 1

    def maybe_commit(force=False):
        nonlocal in_tx
        if in_tx and (force or in_tx >= args.batch):
            t_c = time.perf_counter_ns()
            con.execute("COMMIT")
            t_e = time.perf_counter_ns()
            lat.append((t_e - t_begin, t_e - t_c))
            stats["commits"] += 1
            in_tx = 0

    def iso(t):
        return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    for idx, (ts, _s, kind, payload) in enumerate(ev):
        if idx == mid_idx:
            maybe_commit(force=True)
            m0 = time.monotonic()
            w0 = time.time()
            subprocess.run(["sqlite3", args.db, ".timeout 30000", ".backup '%s'" % args.mid_backup], check=True)
            w_bk = time.time()
            time.sleep(max(args.mid_pause - (time.monotonic() - m0), 1.0))
            w1 = time.time()
            t_pace0 += time.monotonic() - m0
            mid_info = {"event": idx, "commits_before": stats["commits"], "pause_start": iso(w0),
                   "backup_done": iso(w_bk), "pause_end": iso(w1), "T": iso((w0 + w1) / 2),
                   "T_epoch": round((w0 + w1) / 2, 3), "pause_s": round(w1 - w0, 3)}
        if pace:
            delay = t_pace0 + idx * pace - time.monotonic()
            if delay > 0:
                maybe_commit(force=True)
                time.sleep(delay)
        begin()
        if kind == "msg":
            mid += 1
            u = r.choices(range(1, n_users + 1), cum_weights=u_cum)[0]
            c = r.choices(range(1, n_chan + 1), cum_weights=c_cum)[0]
            body = text.body(r, usernames, recent_bodies)
            rc = recent_in_channel[c]
            thread = r.choice(rc) if rc and r.random() < 0.10 else None
            con.execute("INSERT INTO messages VALUES (?,?,?,?,?,?,NULL,0)", (mid, c, u, thread, body, ts))
            if fts:
                con.execute("INSERT INTO messages_fts(rowid, body) VALUES (?,?)", (mid, body))
            if (c, u) not in member_set:
                member_set.add((c, u))
                members[c].append(u)
                con.execute("INSERT INTO channel_members VALUES (?,?,?,?)", (c, u, ts, mid))
            else:
                con.execute("UPDATE channel_members SET last_read_message_id=? WHERE channel_id=? AND user_id=?",
                            (mid, c, u))
            # a couple of readers catch up
            for _ in range(r.choice((0, 0, 1, 1, 2))):
                if members[c]:
                    con.execute("UPDATE channel_members SET last_read_message_id=? "
                                "WHERE channel_id=? AND user_id=?", (mid, c, r.choice(members[c])))
                    stats["read_markers"] += 1
            if r.random() < 0.22:
                for _ in range(min(8, int(r.expovariate(0.7)) + 1)):
                    con.execute("INSERT OR IGNORE INTO reactions VALUES (?,?,?,?)",
                                (mid, r.randint(1, n_users), r.choice(C.EMOJI[:12]), ts + r.randint(1, 600)))
                    stats["reactions"] += 1
            rc.append(mid)
            if body and len(body) < 400:
                recent_bodies.append(body)
            if r.random() < 0.03:
                pending_edits.append((idx + r.randint(1, 20), mid, body))
            stats["messages"] += 1
        elif kind == "seen":
            con.execute("UPDATE users SET last_seen_at=? WHERE id=?", (ts, payload[0]))
            stats["last_seen"] += 1
        elif kind == "keyuse":
            con.execute("UPDATE ssh_keys SET last_used_at=? WHERE id=?", (ts, payload[0]))
            stats["key_use"] += 1
        elif kind == "signup":
            uid_next += 1
            uname = C.make_word(r) + str(uid_next)
            con.execute("INSERT INTO users VALUES (?,?,?,?,?,?,?,?,0,?,?)",
                        (uid_next, uname, uname.capitalize(), uname + "@example.org", C.password_hash(r),
                         "", None, C.settings_json(r), ts, ts))
            if r.random() < 0.6:
                max_key += 1
                kt, pk, fp, cm = C.ssh_key(r, uname)
                con.execute("INSERT INTO ssh_keys VALUES (?,?,?,?,?,?,?,NULL)",
                            (max_key, uid_next, kt, pk, fp, cm, ts))
            stats["signups"] += 1
        elif kind == "channel":
            chan_next += 1
            con.execute("INSERT INTO channels VALUES (?,?,?,0,?,?)",
                        (chan_next, "new-%s-%d" % (C.make_word(r), chan_next), text.sentence(r),
                         r.randint(1, n_users), ts))
            stats["channels"] += 1
        elif kind == "old_edit":
            m = payload[0]
            con.execute("UPDATE messages SET body=body||?, edited_at=? WHERE id=? AND deleted=0",
                        (" (edit: " + text.sentence(r) + ")", ts, m))
            stats["old_edits"] += 1
        elif kind == "old_delete":
            m = payload[0]
            con.execute("UPDATE messages SET body='', deleted=1, edited_at=? WHERE id=?", (ts, m))
            con.execute("DELETE FROM reactions WHERE message_id=?", (m,))
            stats["old_deletes"] += 1
        elif kind == "old_react":
            con.execute("INSERT OR IGNORE INTO reactions VALUES (?,?,?,?)",
                        (payload[0], r.randint(1, n_users), r.choice(C.EMOJI[:12]), ts))
            stats["old_reacts"] += 1
        elif kind == "old_unreact":
            row = con.execute("SELECT message_id, user_id, emoji FROM reactions WHERE message_id>=? LIMIT 1",
                              (payload[0],)).fetchone()
            if row:
                con.execute("DELETE FROM reactions WHERE message_id=? AND user_id=? AND emoji=?", row)
            stats["old_unreacts"] += 1
        # quick edits of recent messages fall due
        while pending_edits and pending_edits[0][0] <= idx:
            _, em, eb = pending_edits.pop(0)
            con.execute("UPDATE messages SET body=?, edited_at=? WHERE id=?", (eb + " (fixed typo)", ts, em))
            stats["recent_edits"] += 1
        maybe_commit()
    maybe_commit(force=True)

    counts = C.table_counts(con)
    page_count2 = con.execute("PRAGMA page_count").fetchone()[0]
    con.close()
    wal = args.db + "-wal"
    if args.latency_out:
        with open(args.latency_out, "w") as f:
            for tot, com in lat:
                f.write("%d %d\n" % (tot // 1000, com // 1000))
    print(json.dumps({
        "mid": mid_info,
        "db": args.db, "seed": args.seed, "day": args.day, "journal_mode": mode,
        "db_bytes_before": db_bytes, "db_pages_after": page_count2,
        "wal_bytes_after": os.path.getsize(wal) if os.path.exists(wal) else 0,
        "new_messages_target": n_new, "old_rows_each": n_old, "events": len(ev),
        "stats": dict(stats), "counts": counts,
        "elapsed_s": round(time.monotonic() - t_start, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
