#!/usr/bin/env python3
"""stmts.py NAME: from a diag.sh statement log (NAME.pg.log) and trace (NAME.trace.tsv), the push
window's statements per 100 ms of time after the first send: executions and summed duration (bind +
execute, ms) per kind, and the slowest executions."""
import re, sys, collections, datetime
name = sys.argv[1]
first = None
for line in open(name + '.trace.tsv'):
    if line.startswith('# first send at'):
        first = int(line.split()[4]) / 1e6
rx = re.compile(r'^(\S+ \S+) UTC \[(\d+)\] LOG:  duration: ([\d.]+) ms  (bind|execute|parse) [^:]*: (.*)$')
kinds = [('offline', 'herald_store_offline'), ('block', 'block_list b'), ('archive', 'herald_archive_append_all'),
         ('enqueue', 'herald_relay_enqueue'), ('devices', 'FROM relay_devices WHERE account_id IN'),
         ('claim', 'WITH claimed'), ('mark', 'UPDATE relay_outbox'), ('commit', 'COMMIT'), ('begin', 'BEGIN')]
buckets = collections.defaultdict(lambda: collections.defaultdict(lambda: [0, 0.0, 0.0]))
slow = []
for line in open(name + '.pg.log', errors='replace'):
    m = rx.match(line)
    if not m:
        continue
    t = datetime.datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S.%f').replace(tzinfo=datetime.timezone.utc).timestamp()
    rel = (t - first) * 1000
    if rel < -50 or rel > 1300:
        continue
    kind = next((k for k, s in kinds if s in m.group(5)), 'other:' + m.group(5)[:40])
    d = float(m.group(3))
    b = buckets[int(rel // 100)][kind]
    if m.group(4) == 'execute':
        b[0] += 1
    b[1] += d
    b[2] = max(b[2], d)
    slow.append((d, rel, m.group(2), m.group(4), kind))
for k in sorted(buckets):
    row = buckets[k]
    tot = sum(v[1] for v in row.values())
    print(f'{k*100:5d} ms: total {tot:6.1f} ms | ' + ', '.join(f'{kind} {v[0]}x {v[1]:.1f} (max {v[2]:.1f})' for kind, v in sorted(row.items(), key=lambda kv: -kv[1][1])[:8]))
print('slowest:')
for s in sorted(slow, reverse=True)[:25]:
    print(f'  {s[0]:.2f} ms at {s[1]:.0f} ms pid {s[2]} {s[3]} {s[4]}')
