#!/usr/bin/env python3
"""ab.py PREFIX_A PREFIX_B: per run of each prefix (files PREFIX-N.trace.tsv beside this script's folder),
p50, p99 and the pushes over 50 ms sent in the first 100 ms of the burst; then the medians."""
import glob, os, re, statistics, sys
DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def stats(path):
    lat, first = [], 0
    for line in open(path):
        if line.startswith('#') or line.startswith('device'):
            continue
        n, sender, sent, l = line.rstrip('\n').split('\t')
        if not l:
            continue
        lat.append(int(l) / 1000)
        if int(sent) < 100_000 and int(l) > 50_000:
            first += 1
    lat.sort()
    rank = lambda q: lat[max(1, -(-int(q * len(lat) * 1000) // 1000)) - 1]
    return rank(0.5), rank(0.99), first
for prefix in sys.argv[1:]:
    files = sorted(glob.glob(f'{DIR}/{prefix}-*.trace.tsv'), key=lambda f: int(re.findall(r'-(\d+)\.trace', f)[0]))
    rows = [stats(f) for f in files]
    for f, (p50, p99, first) in zip(files, rows):
        print(f'{os.path.basename(f)[:-10]:16s} p50 {p50:7.1f}  p99 {p99:7.1f}  first-100ms>50: {first}')
    print(f'{prefix}: {len(rows)} runs, median p50 {statistics.median(r[0] for r in rows):.1f}, median p99 '
          f'{statistics.median(r[1] for r in rows):.1f}, p99 < 50 in {sum(r[1] < 50 for r in rows)}, '
          f'median first-100ms>50 {statistics.median(r[2] for r in rows)}\n')
