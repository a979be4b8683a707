#!/usr/bin/env bash
# Where PostgreSQL's CPU per order goes, orderflow against the same-shape
# baseline: runs one bench round of each (bin/orderflow bench -rounds 1),
# samples every process with perf while each round runs, and prints the CPU
# per order of PostgreSQL's main code paths for both systems and their
# difference. pg_stat_statements counts execution time only; this shows the
# rest too (executor start-up, foreign-key triggers, commits, the protocol).
#
#   scripts/profile-postgres.sh [orders per round, default 1500]
#
# Needs perf (Debian: apt-get install linux-perf) and the right to sample
# every process (root, or kernel.perf_event_paranoid <= 0). One profile on a
# shared machine: compare the two columns, not with other runs.
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-1500}

if ! command -v perf >/dev/null 2>&1; then
  echo "profile-postgres: perf is missing (Debian/Ubuntu: sudo apt-get install linux-perf)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ] && [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -gt 0 ]; then
  echo "profile-postgres: perf cannot sample every process: run as root, or sudo sysctl kernel.perf_event_paranoid=0" >&2
  exit 1
fi

make -s build
work=$(mktemp -d)
log=$work/bench.log
bench=
cleanup() {
  [ -n "$bench" ] && kill "$bench" 2>/dev/null && wait "$bench" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The bench's progress goes to the log, a line per tenth of a phase: a
# round starts when the phase before it logs 100% and ends at its own
# "done in" line. The idle lag phase runs just before orderflow's round.
progress() { tr '\r' '\n' <"$log" | grep -q "$1"; }
wait_for() {
  until progress "$1"; do
    if ! kill -0 "$bench" 2>/dev/null; then
      echo "profile-postgres: the bench stopped; its log:" >&2
      tr '\r' '\n' <"$log" | tail -20 >&2
      exit 1
    fi
    sleep 0.2
  done
}

echo "profile-postgres: one round of $orders orders per system (log: $log)"
: >"$log"
./bin/orderflow bench -n "$orders" -rounds 1 -drain 0 -out "$work/results" >"$log" 2>&1 &
bench=$!
start_after=("idle lag .*(100%)" "round 1/1 orderflow .*done in")
systems=(orderflow same-shape)
for i in 0 1; do
  sys=${systems[$i]}
  wait_for "${start_after[$i]}"
  perf record -a -g -F 499 -o "$work/$sys.data" >"$work/$sys.perf.log" 2>&1 &
  rec=$!
  wait_for "round 1/1 $sys .*done in"
  kill -INT "$rec" 2>/dev/null || true
  wait "$rec" || true
  if [ ! -s "$work/$sys.data" ]; then
    echo "profile-postgres: perf recorded nothing during the $sys round; its log:" >&2
    cat "$work/$sys.perf.log" >&2
    exit 1
  fi
  tr '\r' '\n' <"$log" | grep "round 1/1 $sys .*done in"
done

# CPU ms per order of one function and everything it calls, in PostgreSQL's
# processes: its share of the samples ("children") times the CPU sampled.
report() {
  local data=$1
  local total
  total=$(perf report -i "$data" --stdio --sort comm -g none 2>/dev/null |
    awk '/Event count/ {print $NF}')
  perf report -i "$data" --stdio --no-children --sort comm -g none 2>/dev/null |
    awk -v total="$total" -v orders="$orders" '
      $2 == "postgres" { pct = $1; sub("%", "", pct)
        printf "all PostgreSQL processes\t%.2f\n", pct / 100 * total / 1e6 / orders }'
  perf report -i "$data" --stdio --children --comm postgres --sort sym -g none 2>/dev/null |
    awk -v total="$total" -v orders="$orders" '
      /^ +[0-9.]+%/ {
        pct = $1; sub("%", "", pct)
        name = $0; sub(/.*\] /, "", name); sub(/ +$/, "", name)
        ms[name] += pct / 100 * total / 1e6 / orders
      }
      END { for (n in ms) printf "%s\t%.2f\n", n, ms[n] }'
}
report "$work/orderflow.data" >"$work/orderflow.tsv"
report "$work/same-shape.data" >"$work/same-shape.tsv"

printf '\nPostgreSQL CPU ms per order (each row includes what it calls):\n\n'
printf '%-28s %10s %11s %8s\n' "function" orderflow same-shape diff
awk -F'\t' '
  FNR == NR { a[$1] = $2; next }
  { b[$1] = $2 }
  END {
    split("all PostgreSQL processes,PostgresMain,PortalRun,standard_ExecutorStart,standard_ExecutorRun,ExecInsertIndexTuples,standard_ExecutorFinish,AfterTriggerEndQuery,CommitTransactionCommand,XLogFlush,fdatasync,pq_getbyte,__x64_sys_sendto,GetCachedPlan", rows, ",")
    for (i = 1; i in rows; i++) {
      n = rows[i]
      printf "%-28s %10.2f %11.2f %+8.2f\n", n, a[n], b[n], a[n] - b[n]
    }
  }' "$work/orderflow.tsv" "$work/same-shape.tsv"
cat <<'EOF'

PostgresMain is the backends' work, the rest is background processes.
PortalRun runs statements: ExecutorStart sets up their plans,
ExecutorRun executes them, ExecutorFinish runs the data-modifying CTEs
that the final SELECT does not read and then the AFTER triggers
(AfterTriggerEndQuery: the foreign-key checks). ExecInsertIndexTuples is
every write's index entries, wherever it runs. CommitTransactionCommand is
the commits (XLogFlush and its fdatasync: the WAL flush); pq_getbyte and
sendto are the client protocol.
EOF
