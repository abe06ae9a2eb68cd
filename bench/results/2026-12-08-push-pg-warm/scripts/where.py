#!/usr/bin/env python3
"""where.py TRACE...: where in the burst the slow pushes are (from herald-load --push-trace files).
Per trace: p50/p99, latency by 100 ms of send time (median, max), the 12 slowest pushes (send time,
sender, latency), and how many of the pushes over 50 ms were sent in each sender's first 5 messages."""
import datetime
import os
import sys

for path in sys.argv[1:]:
    rows = []
    first_send_us = None
    for line in open(path).readlines():
        if line.startswith("# first send at "):
            first_send_us = int(line.split()[4])
        if line.startswith("#") or line.startswith("device"):
            continue
        n, sender, sent, lat = line.rstrip("\n").split("\t")
        rows.append((int(sent), int(sender), int(n), int(lat) if lat else None))
    lats = sorted(r[3] for r in rows if r[3] is not None)
    rank = lambda q: lats[max(1, -(-int(q * len(lats) * 1000) // 1000)) - 1] / 1000
    print(f"== {path}: {len(lats)} pushes, p50 {rank(0.5):.1f} ms, p99 {rank(0.99):.1f} ms, max {lats[-1]/1000:.1f} ms")
    buckets = {}
    for sent, _, _, lat in rows:
        if lat is not None:
            buckets.setdefault(sent // 100_000, []).append(lat)
    print("  send time (ms) | pushes | median | max | over 50 ms")
    for b in sorted(buckets):
        v = sorted(buckets[b])
        print(f"  {b*100:5d}-{b*100+99:5d} | {len(v):4d} | {v[len(v)//2]/1000:6.1f} | {v[-1]/1000:6.1f} | {sum(x > 50_000 for x in v)}")
    order = {}
    for sent, sender, n, lat in sorted(rows):
        order.setdefault(sender, []).append((sent, n, lat))
    index = {}
    for sender, msgs in order.items():
        for i, (sent, n, lat) in enumerate(msgs):
            index[n] = i
    slow = sorted((r for r in rows if r[3] is not None), key=lambda r: -r[3])[:12]
    print("  slowest: " + ", ".join(f"{lat/1000:.1f} ms (sent {sent/1000:.0f} ms, sender {s}, msg #{index[n]})" for sent, s, n, lat in slow))
    over = [r for r in rows if r[3] is not None and r[3] > 50_000]
    first = sum(1 for r in over if index[r[2]] < 5)
    print(f"  over 50 ms: {len(over)}, of which in a sender's first 5 messages: {first}")
    print("  per sender: first send (ms) | median | max | over 50 ms")
    for sender in sorted(order):
        v = sorted(lat for _, _, lat in order[sender] if lat is not None)
        print(f"    {sender}: {order[sender][0][0]/1000:6.1f} | {v[len(v)//2]/1000:6.1f} | {v[-1]/1000:6.1f} | {sum(x > 50_000 for x in v)}")
    # With diag.sh's sampler (NAME.wal.tsv beside NAME.trace.tsv): when PostgreSQL was creating a WAL
    # segment (wait events IO/WALInitWrite, IO/WALInitSync), in ms after the first send.
    wal = path.replace(".trace.tsv", ".wal.tsv")
    if first_send_us is not None and os.path.exists(wal):
        day = datetime.datetime.fromtimestamp(first_send_us / 1e6, datetime.timezone.utc)
        inits = []
        for line in open(wal):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 4 or "WALInit" not in parts[3]:
                continue
            h, m, sec = parts[0].split(":")
            at = day.replace(hour=int(h), minute=int(m), second=0, microsecond=0).timestamp() + float(sec)
            inits.append(f"{(at * 1e6 - first_send_us) / 1000:.0f}")
        print(f"  WAL segment being created (sampled every 20 ms) at ms after the first send: {', '.join(inits) or 'never'}")
