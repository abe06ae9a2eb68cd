#!/usr/bin/env bash
# pss.sh OUT: waits for the bench cluster, creates pg_stat_statements, snapshots it every 0.3 s to OUT (last one wins).
OUT=$1; U=postgres://postgres@127.0.0.1:19832/herald
until psql "$U" -Atc "select 1" >/dev/null 2>&1; do sleep 0.2; done
psql "$U" -qc "create extension if not exists pg_stat_statements" >/dev/null 2>&1
while psql "$U" -At -F $'\t' -c "select calls, round(total_exec_time::numeric,1), round(total_plan_time::numeric,1), toplevel, regexp_replace(left(query,110),'\s+',' ','g') from pg_stat_statements order by total_exec_time desc limit 40" > "$OUT.tmp" 2>/dev/null; do mv "$OUT.tmp" "$OUT"; sleep 0.3; done
