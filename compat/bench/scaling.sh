#!/usr/bin/env bash
# Volery's scaling with partitions (the paper's figure 8 experiment, on one machine): for each k,
# k partitions x 1 replica on 127.0.0.1, each partition's process held to a fixed CPU budget by a
# cgroup (v1 cpu controller, CFS quota), the load generator in its own unlimited cgroup; `volery
# bench --local` setData 1 KB, each session on the keys of its server's partition (the paper's
# local commands: clients send them to their own partition), with 0/1/5/10% of the operations
# being create/delete (global: ordered and executed in every partition), plus a create/delete-only
# run for the cost of a global operation.
#
# Usage: compat/bench/scaling.sh --volery PATH [options]
#   --volery PATH        the volery binary (cargo build --release): servers and load generator
#   --partitions LIST    comma separated partition counts (default 1,2,4,8)
#   --shares LIST        create/delete percentages of all operations (default 0,1,5,10)
#   --cpu C              CPU budget of each partition, in cores (default 0.2; k*C must fit the machine)
#   --no-budget          no CPU quota (the processes share the machine freely)
#   --sessions N         sessions per partition (default 32: k partitions get 32k sessions, so each
#                        partition sees the same offered load at every k, as the paper's clients
#                        grow with its partitions; spread round-robin over the servers)
#   --total-sessions N   N sessions in all at every k instead (a partition then sees N/k)
#   --outstanding N      requests each session keeps in flight (default 25)
#   --keys N             keys set by setData (default 1000; they hash over the partitions)
#   --spread             sessions pick keys of every partition, not of their server's only
#   --warmup D           warm-up of every run (default 3s)
#   --duration D         measured window of every run (default 10s)
#   --quick              1s warm-up, 4s windows (a smoke test)
#   --repeat N           measure every k N times (default 1), the rounds interleaved over k (k=1,
#                        2, 4, 8, then again) so a machine that drifts affects every k alike; the
#                        report gives each figure's median and its range over the rounds
#   --max-minutes M      stop starting runs after M minutes (default 45)
#   --out DIR            results folder (default compat/bench/results): writes DIR/scaling.md,
#                        DIR/scaling-*.svg and DIR/raw-scaling/*.json
#   --note TEXT          a line added to the report
#   --alone              also load each partition alone (its server's sessions only, the others
#                        idle but running): the issue's "run partitions one at a time and add up",
#                        free of the contention of k servers and the load generator on this
#                        machine's CPUs
#
# Every process started here is stopped on exit and its cgroups removed; 127.0.0.1 and free ports
# only. Needs root (cgroup v1 cpu controller at /sys/fs/cgroup/cpu) unless --no-budget.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VOLERY="" PARTS="1,2,4,8" SHARES="0,1,5,10" CPU=0.2 BUDGET=1 SESSIONS=32 PER_PARTITION=1 OUTSTANDING=25 KEYS=1000
WARMUP=3s DURATION=10s REPEAT=1 MAX_MINUTES=45 OUT="$HERE/results" LOCAL=--local
NOTES=()
ALONE=0
COMMAND="compat/bench/scaling.sh $*"
usage() { sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --volery) VOLERY="${2:-}"; shift 2 || usage ;;
    --partitions) PARTS="${2:-}"; shift 2 || usage ;;
    --shares) SHARES="${2:-}"; shift 2 || usage ;;
    --cpu) CPU="${2:-}"; shift 2 || usage ;;
    --no-budget) BUDGET=0; shift ;;
    --sessions) SESSIONS="${2:-}"; PER_PARTITION=1; shift 2 || usage ;;
    --total-sessions) SESSIONS="${2:-}"; PER_PARTITION=0; shift 2 || usage ;;
    --outstanding) OUTSTANDING="${2:-}"; shift 2 || usage ;;
    --keys) KEYS="${2:-}"; shift 2 || usage ;;
    --spread) LOCAL=""; shift ;;
    --warmup) WARMUP="${2:-}"; shift 2 || usage ;;
    --duration) DURATION="${2:-}"; shift 2 || usage ;;
    --quick) WARMUP=1s; DURATION=4s; shift ;;
    --repeat) REPEAT="${2:-}"; shift 2 || usage ;;
    --max-minutes) MAX_MINUTES="${2:-}"; shift 2 || usage ;;
    --out) OUT="${2:-}"; shift 2 || usage ;;
    --note) NOTES+=(--note "${2:-}"); shift 2 || usage ;;
    --alone) ALONE=1; shift ;;
    -h|--help) usage ;;
    *) echo "scaling: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$VOLERY" ] || usage
[ -x "$VOLERY" ] || { echo "scaling: $VOLERY is not an executable" >&2; exit 1; }
VOLERY="$(cd "$(dirname "$VOLERY")" && pwd)/$(basename "$VOLERY")"
"$VOLERY" bench --help >/dev/null 2>&1 || { echo "scaling: $VOLERY has no 'bench' subcommand" >&2; exit 1; }
command -v python3 >/dev/null || { echo "scaling: python3 is required" >&2; exit 1; }
PY=(python3 "$HERE/report.py")
case "$REPEAT" in ''|*[!0-9]*|0) echo "scaling: --repeat $REPEAT is not a positive count" >&2; exit 2 ;; esac
IFS=, read -r -a KS <<<"$PARTS"
IFS=, read -r -a GS <<<"$SHARES"
for g in "${GS[@]}"; do
  case "$g" in ''|*[!0-9]*) echo "scaling: share $g is not a whole percentage" >&2; exit 2 ;; esac
  [ "$g" -le 100 ] || { echo "scaling: share $g is over 100" >&2; exit 2; }
done
# The CFS period and quota of a partition: short periods keep throttling pauses short.
PERIOD_US=10000
QUOTA_US="$(python3 -c 'import sys; print(int(round(float(sys.argv[1]) * 10000)))' "$CPU")"
if [ "$BUDGET" = 1 ]; then
  [ "$QUOTA_US" -ge 1000 ] || { echo "scaling: --cpu $CPU is below the 1 ms CFS minimum per 10 ms" >&2; exit 2; }
  CG_ROOT=/sys/fs/cgroup/cpu
  [ -w "$CG_ROOT/cgroup.procs" ] || { echo "scaling: $CG_ROOT (cgroup v1 cpu controller) is not writable; run as root or use --no-budget" >&2; exit 1; }
fi

# ---------------------------------------------------------------- cleanup
PGIDS=()
TMPDIRS=()
CG=""
stop_all() {
  local pg
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for pg in "${PGIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  PGIDS=()
}
remove_cgroups() {
  [ -n "$CG" ] && [ -d "$CG" ] || return 0
  local d
  for d in "$CG"/*/; do
    [ -d "$d" ] || continue
    for _ in $(seq 1 50); do rmdir "$d" 2>/dev/null && break; sleep 0.1; done
  done
  rmdir "$CG" 2>/dev/null || echo "scaling: could not remove cgroup $CG" >&2
}
cleanup() {
  stop_all
  remove_cgroups
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

WORK="$(mktemp -d -t volery-scaling-XXXXXX)"; TMPDIRS+=("$WORK")
RAW="$OUT/raw-scaling"
mkdir -p "$RAW"
rm -f "$RAW"/*.json
DEADLINE=$(($(date +%s) + MAX_MINUTES * 60))

if [ "$BUDGET" = 1 ]; then
  # One cgroup per run of this script; inside it one per partition (quota) and one for the load
  # generator (no quota). The parent's weight keeps the budgets met when other jobs run.
  CG="$CG_ROOT/volery-scaling-$$"
  mkdir "$CG" || exit 1
  echo 4096 >"$CG/cpu.shares"
  mkdir "$CG/loadgen"
  echo 4096 >"$CG/loadgen/cpu.shares"
fi

# sh -c "$IN_CGROUP" DIR CMD...: CMD (exec'd, so the pid is the caller's $!) inside cgroup DIR,
# or outside any when DIR is empty.
IN_CGROUP='if [ -n "$0" ]; then echo $$ >"$0/cgroup.procs" || exit 1; fi; exec "$@"'

# throttled DIR: "nr_periods nr_throttled" of a cgroup so far (0 0 without budgets).
throttled() {
  if [ -n "$1" ] && [ -f "$1/cpu.stat" ]; then
    awk '$1 == "nr_periods" { p = $2 } $1 == "nr_throttled" { t = $2 } END { print p + 0, t + 0 }' "$1/cpu.stat"
  else
    echo "0 0"
  fi
}

# mix_for G: a `volery bench` mix whose operations are G% create/delete (each create is followed by
# its delete, so set=2(100-G),create=G sends 2G global operations of every 200).
mix_for() {
  case "$1" in
    0) echo "set=100" ;;
    100) echo "create=1" ;;
    *) echo "set=$((2 * (100 - $1))),create=$1" ;;
  esac
}

# start_cluster K: K partitions x 1 replica; sets SERVERS (connect list), PIDS (comma list), CGS.
start_cluster() {
  local k="$1" i ports servers_toml d cport pport
  read -r -a ports <<<"$("${PY[@]}" ports $((2 * k)))"
  servers_toml=""
  SERVERS=""
  for i in $(seq 1 "$k"); do
    cport=${ports[$((2 * (i - 1)))]} pport=${ports[$((2 * i - 1))]}
    servers_toml+="[[servers]]
id = $i
host = \"127.0.0.1\"
peer_port = $pport
client_port = $cport
"
    SERVERS="${SERVERS:+$SERVERS,}127.0.0.1:$cport"
  done
  PIDS=""
  CGS=()
  for i in $(seq 1 "$k"); do
    d="$WORK/k$k/s$i"
    mkdir -p "$d"
    cat >"$d/volery.toml" <<EOF
server_id = $i
partitions = $k
client_address = "127.0.0.1"
data_dir = "$d/data"
max_client_cnxns = 0
four_letter_whitelist = ["srvr", "mntr"]

[metrics]
host = "127.0.0.1"
port = 0

$servers_toml
EOF
    local cg=""
    if [ "$BUDGET" = 1 ]; then
      cg="$CG/k$k-p$i"
      mkdir -p "$cg"
      echo "$PERIOD_US" >"$cg/cpu.cfs_period_us"
      echo "$QUOTA_US" >"$cg/cpu.cfs_quota_us"
    fi
    CGS+=("$cg")
    setsid sh -c "$IN_CGROUP" "$cg" "$VOLERY" start --config "$d/volery.toml" >"$WORK/k$k-s$i.log" 2>&1 </dev/null &
    PGIDS+=("$!")
    PIDS="${PIDS:+$PIDS,}$!"
  done
}

# cpu_times: "steal all" jiffies of the machine's CPUs so far (/proc/stat): time the hypervisor gave
# to other guests while this one wanted to run. It slows every process here alike, so a run with
# much of it costs more CPU-us per operation than the same run on a quiet host.
cpu_times() {
  awk '$1 == "cpu" { all = 0; for (i = 2; i <= NF; i++) all += $i; print $9 + 0, all; exit }' /proc/stat
}

# run_bench K G MIX NAME [DIR]: one `volery bench` run against the cluster; writes DIR/NAME.json
# (DIR: $RAW), the cgroups' throttling counters over the run into DIR/NAME.throttle and the
# machine's steal and total CPU jiffies over the run into DIR/NAME.steal. With ONLY=I set, one
# partition's sessions go to server I alone and only its CPU is measured.
run_bench() {
  local k="$1" g="$2" mix="$3" name="$4" dir="${5:-$RAW}" i before=() after=()
  local servers="$SERVERS" pids="$PIDS"
  if [ -n "${ONLY:-}" ]; then
    servers="$(cut -d, -f"$ONLY" <<<"$SERVERS")" pids="$(cut -d, -f"$ONLY" <<<"$PIDS")"
  fi
  if [ "$(date +%s)" -ge "$DEADLINE" ]; then
    echo "scaling: --max-minutes $MAX_MINUTES reached; $name not run" >&2
    return 1
  fi
  echo "== k=$k ${g}% create/delete ($mix)" >&2
  for i in "${!CGS[@]}"; do before+=("$(throttled "${CGS[$i]}")"); done
  local cpu_before; cpu_before="$(cpu_times)"
  local limit=$(( $("${PY[@]}" seconds "$WARMUP") + $("${PY[@]}" seconds "$DURATION") + 120 ))
  # Every partition sees the same sessions in a run of all and alone: SESSIONS per partition, or
  # SESSIONS/k of --total-sessions.
  local sessions="$SESSIONS"
  if [ -z "${ONLY:-}" ]; then
    [ "$PER_PARTITION" = 1 ] && sessions=$((SESSIONS * k))
  elif [ "$PER_PARTITION" = 0 ]; then
    sessions=$(( SESSIONS / k > 0 ? SESSIONS / k : 1 ))
  fi
  timeout -k 5 "$limit" sh -c "$IN_CGROUP" "${CG:+$CG/loadgen}" "$VOLERY" bench --servers "$servers" --sessions "$sessions" --outstanding "$OUTSTANDING" \
    --mix "$mix" $LOCAL --size 1000 --keys "$KEYS" --warmup "$WARMUP" --duration "$DURATION" \
    --server-pids "$pids" --label "k$k/g$g" --quiet --json "$dir/$name.json" >"$WORK/$name.out" 2>&1
  local rc=$?
  for i in "${!CGS[@]}"; do after+=("$(throttled "${CGS[$i]}")"); done
  : >"$dir/$name.throttle"
  for i in "${!CGS[@]}"; do
    read -r p0 t0 <<<"${before[$i]}"; read -r p1 t1 <<<"${after[$i]}"
    echo "$((p1 - p0)) $((t1 - t0))" >>"$dir/$name.throttle"
  done
  read -r s0 a0 <<<"$cpu_before"; read -r s1 a1 <<<"$(cpu_times)"
  echo "$((s1 - s0)) $((a1 - a0))" >"$dir/$name.steal"
  if [ "$rc" -ne 0 ]; then
    echo "scaling: k=$k $mix failed (exit $rc):" >&2; tail -n 15 "$WORK/$name.out" >&2
    return 1
  fi
  grep -E '^(total|server CPU|client CPU|  per pid|sessions failed)' "$WORK/$name.out" >&2
  grep -A5 '^sessions failed' "$WORK/$name.out" | grep '^  ' >&2
  # Requests or sessions that failed, or a near-stall (under 500 ops/s, where every run here does
  # thousands): the servers' warnings, leader changes and signal re-asks so far (their logs go
  # with the cluster's temporary directory).
  if awk '($1 == "total" && ($NF > 0 || $3 < 500)) || /^sessions failed/ { bad = 1 } END { exit !bad }' "$WORK/$name.out"; then
    for i in $(seq 1 "$k"); do
      echo "scaling: k=$k $name had errors or stalled; server $i, last warnings, leader changes and signal re-asks:" >&2
      grep -E ' (WARN|ERROR) |leader changed|stepping down|suspecting|asking again' "$WORK/k$k-s$i.log" | tail -n 8 >&2
    done
  fi
}

FAILED=()
for round in $(seq 1 "$REPEAT"); do
for k in "${KS[@]}"; do
  if [ "$(date +%s)" -ge "$DEADLINE" ]; then echo "scaling: out of time before k=$k (round $round)" >&2; break 2; fi
  start_cluster "$k"
  sleep 1
  alive=1
  for pid in ${PIDS//,/ }; do kill -0 "$pid" 2>/dev/null || alive=0; done
  if [ "$alive" = 0 ] || ! "${PY[@]}" wait ${SERVERS//,/ } 90; then
    echo "scaling: k=$k servers not ready; last log lines:" >&2
    tail -n 15 "$WORK"/k"$k"-s*.log >&2
    FAILED+=("k=$k: servers not ready ($(grep -h -m1 -iE 'error|refus' "$WORK"/k"$k"-s*.log | head -n 1))")
    stop_all
    continue
  fi
  # A first run on a fresh cluster is slower (allocation, page cache, connection set-up): one
  # unrecorded setData run first.
  run_bench "$k" 0 "$(mix_for 0)" "k${k}__prime" "$WORK" >/dev/null 2>&1 || true
  for g in "${GS[@]}"; do
    run_bench "$k" "$g" "$(mix_for "$g")" "k${k}__g${g}__r${round}" || FAILED+=("k=$k ${g}% (round $round)")
  done
  # Global operations alone: the cost of a create/delete at each partition.
  run_bench "$k" 100 "$(mix_for 100)" "k${k}__g100__r${round}" || FAILED+=("k=$k 100% (round $round)")
  if [ "$ALONE" = 1 ]; then
    for i in $(seq 1 "$k"); do
      ONLY=$i run_bench "$k" 0 "$(mix_for 0)" "k${k}__alone${i}__r${round}" || FAILED+=("k=$k partition $i alone (round $round)")
    done
  fi
  for i in $(seq 1 "$k"); do
    if grep -qiE 'panic|ERROR' "$WORK/k$k-s$i.log"; then
      echo "scaling: k=$k server $i logged errors:" >&2; grep -iE 'panic|ERROR' "$WORK/k$k-s$i.log" | head -n 5 >&2
    fi
  done
  stop_all
  if [ "$BUDGET" = 1 ]; then for d in "$CG"/k"$k"-p*; do rmdir "$d" 2>/dev/null || true; done; fi
  rm -rf "$WORK/k$k"
done
done

# ------------------------------------------------------------- report
REV="$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ "$BUDGET" = 1 ]; then
  BUDGET_NOTE="CPU budget: $CPU core per partition (cgroup v1 cpu controller, cfs_quota_us=$QUOTA_US per cfs_period_us=$PERIOD_US, one cgroup per server process, all its threads included); the load generator runs in a sibling cgroup without quota."
else
  BUDGET_NOTE="No CPU budget: every process shares the machine's CPUs."
fi
"${PY[@]}" scaling "$RAW" "$OUT" --budget "$( [ "$BUDGET" = 1 ] && echo "$CPU" || echo 0)" \
  --command "$COMMAND" \
  --note "Volery at $REV: $VOLERY (server and load generator)" \
  --note "$BUDGET_NOTE" \
  --note "Each run: $SESSIONS sessions$( [ "$PER_PARTITION" = 1 ] && echo ' per partition') x $OUTSTANDING outstanding, setData 1 KB values on $KEYS keys (${LOCAL:+each session on the keys of its own partition}${LOCAL:-keys of every partition}), warm-up $WARMUP, measured window $DURATION; a fresh cluster for each k$( [ "$REPEAT" -gt 1 ] && echo " in each of $REPEAT rounds, the rounds interleaved over k")." \
  "${NOTES[@]}"
echo "scaling: results in $OUT/scaling.md" >&2
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "scaling: failed runs: ${FAILED[*]}" >&2
  exit 1
fi
