#!/usr/bin/env bash
# Where PostgreSQL's CPU per order goes, orderflow against the same-shape
# baseline: runs one bench round of each (bin/orderflow bench -rounds 1),
# samples every process with perf while each round runs, and prints the CPU
# per order of PostgreSQL's main code paths for both systems and their
# difference. pg_stat_statements counts execution time only; this shows the
# rest too (executor set-up, foreign-key triggers, commits, the protocol).
#
#   scripts/profile-postgres.sh [orders per round, default 1500]
#
# Needs:
# - perf (Debian: apt-get install linux-perf; Ubuntu: linux-tools-$(uname -r));
# - the right to sample every process and to read kernel symbols: root, or
#   sudo sysctl kernel.perf_event_paranoid=-1 kernel.kptr_restrict=0;
# - the bench's private PostgreSQL (DATABASE_URL unset) and no other
#   PostgreSQL server on the machine: every process named postgres counts;
# - a PostgreSQL built with frame pointers (Debian's and Ubuntu's are), or
#   the figures of a function cannot include what it calls.
# It builds bin/orderflow when Go is on PATH; under sudo, whose PATH may
# lack Go, run make build first. One profile on a shared machine: compare
# the two columns, not with other runs.
set -euo pipefail
cd "$(dirname "$0")/.."
orders=${1:-1500}

fail() {
  echo "profile-postgres: $*" >&2
  exit 1
}
command -v perf >/dev/null 2>&1 ||
  fail "perf is missing (Debian: sudo apt-get install linux-perf; Ubuntu: sudo apt-get install linux-tools-\$(uname -r))"
if [ "$(id -u)" -ne 0 ]; then
  [ "$(cat /proc/sys/kernel/perf_event_paranoid)" -le 0 ] ||
    fail "perf cannot sample every process: run as root, or sudo sysctl kernel.perf_event_paranoid=-1"
  [ "$(cat /proc/sys/kernel/kptr_restrict)" -eq 0 ] ||
    fail "perf cannot read kernel symbols (the commits' and the protocol's system calls): run as root, or sudo sysctl kernel.kptr_restrict=0"
fi
[ -z "${DATABASE_URL:-}" ] ||
  fail "DATABASE_URL is set: this profiles the bench's private PostgreSQL on this machine; unset it"
if pgrep -x postgres >/dev/null; then
  fail "another PostgreSQL runs on this machine (pgrep -x postgres); its processes would be counted: stop it first"
fi
if command -v go >/dev/null 2>&1; then
  make -s build
elif [ ! -x bin/orderflow ]; then
  fail "go is not on PATH and bin/orderflow is not built: run make build first"
fi

work=$(mktemp -d)
log=$work/bench.log
bench=
recs=()
cleanup() {
  for rec in "${recs[@]}"; do
    kill -INT "$rec" 2>/dev/null || true
    wait "$rec" 2>/dev/null || true
  done
  if [ -n "$bench" ]; then
    kill "$bench" 2>/dev/null || true
    wait "$bench" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT # also when only this shell gets it, not its children
trap 'exit 143' TERM

# The bench's progress goes to the log, a line per tenth of a phase: a
# round starts when the phase before it logs 100% and has ended when it
# logged both 100% and its "done in" line (a failed round logs "done in"
# too, without the 100%). The idle lag phase runs just before orderflow's.
progress() { tr '\r' '\n' <"$log" | grep -q "$1"; }
wait_for() {
  until progress "$1"; do
    if ! kill -0 "$bench" 2>/dev/null; then
      echo "profile-postgres: the bench stopped; the end of its log:" >&2
      tr '\r' '\n' <"$log" | grep -v '^$' | tail -20 >&2
      exit 1
    fi
    sleep 0.2
  done
}

echo "profile-postgres: one round of $orders orders per system"
: >"$log"
./bin/orderflow bench -n "$orders" -rounds 1 -drain 0 -out "$work/results" >"$log" 2>&1 &
bench=$!
start_after=("idle lag .*(100%)" "round 1/1 orderflow .*done in")
systems=(orderflow same-shape)
for i in 0 1; do
  sys=${systems[$i]}
  wait_for "${start_after[$i]}"
  # cpu-clock counts nanoseconds on every machine (the default event may be
  # cycles). The previous round's perf is stopped without waiting for it to
  # write its file, so that this one starts with the round.
  perf record -e cpu-clock -a -g -F 499 -o "$work/$sys.data" >"$work/$sys.perf.log" 2>&1 &
  recs+=($!)
  sleep 1
  kill -0 "${recs[$i]}" 2>/dev/null || {
    cat "$work/$sys.perf.log" >&2
    fail "perf did not start for the $sys round (its log is above)"
  }
  wait_for "round 1/1 $sys: $orders/$orders (100%)"
  wait_for "round 1/1 $sys .*done in"
  kill -INT "${recs[$i]}" 2>/dev/null || true
  tr '\r' '\n' <"$log" | grep "round 1/1 $sys .*done in"
done
kill "$bench" 2>/dev/null || true # its naive round is not profiled
wait "$bench" 2>/dev/null || true
bench=
for i in 0 1; do
  sys=${systems[$i]}
  wait "${recs[$i]}" || true
  if [ ! -s "$work/$sys.data" ]; then
    cat "$work/$sys.perf.log" >&2
    fail "perf recorded nothing during the $sys round (its log is above)"
  fi
done
recs=()

# CPU ms per order of one function and everything it calls, in PostgreSQL's
# processes: its share of the samples ("children", which perf gives as a
# share of all samples) times the CPU sampled.
report() {
  local data=$1 err=$1.report.log total
  # One pass by process name gives both the CPU sampled and PostgreSQL's
  # share of it.
  perf report -i "$data" --stdio --no-children --sort comm -g none >"$data.comm" 2>"$err" || true
  total=$(awk '/Event count/ {print $NF; exit}' "$data.comm")
  [ -n "$total" ] || {
    cat "$err" >&2
    fail "perf report could not read $data (its errors are above)"
  }
  awk -v total="$total" -v orders="$orders" '
    $2 == "postgres" { pct = $1; sub("%", "", pct)
      printf "all PostgreSQL processes\t%.2f\n", pct / 100 * total / 1e6 / orders }' "$data.comm"
  perf report -i "$data" --stdio --children --comm postgres --sort sym -g none 2>>"$err" |
    awk -v total="$total" -v orders="$orders" '
      /^ +[0-9.]+%/ {
        pct = $1; sub("%", "", pct)
        name = $0; sub(/.*\] /, "", name); sub(/ +$/, "", name)
        ms[name] += pct / 100 * total / 1e6 / orders
      }
      END { for (n in ms) printf "%s\t%.2f\n", n, ms[n] }'
}
for sys in "${systems[@]}"; do
  report "$work/$sys.data" >"$work/$sys.tsv"
  grep -q '^PostgresMain	' "$work/$sys.tsv" ||
    fail "no PostgresMain in the $sys profile: perf found no symbols in PostgreSQL's binary"
done

printf '\nPostgreSQL CPU ms per order (each row includes what it calls; rows overlap):\n\n'
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
PortalRun runs statements. ExecutorStart sets up a statement's executor
(for a plain SELECT at bind time, outside PortalRun), ExecutorRun executes
it, ExecutorFinish runs the data-modifying CTEs that the final SELECT does
not read to their end and then the AFTER triggers (AfterTriggerEndQuery:
the foreign-key checks). ExecInsertIndexTuples is every write's index
entries, wherever it runs. CommitTransactionCommand is the commits
(XLogFlush and its fdatasync: the WAL flush); pq_getbyte and sendto are
the client protocol. GetCachedPlan is the prepared statements' plans.
EOF
