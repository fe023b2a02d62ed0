#!/usr/bin/env bash
# Volery vs Apache ZooKeeper 3.8, same machine, same `volery bench` loads, one run.
#
# Usage: compat/bench/run.sh --volery PATH [options]
#   --volery PATH     the volery binary (cargo build --release), used as server and as load generator
#   --bench PATH      another binary providing `bench` (default: the --volery binary)
#   --targets LIST    comma separated among zk1,zk3,volery1,volery3 (default: all)
#   --warmup D        warm-up of every run (default 2s)
#   --duration D      measured window of every run (default 8s)
#   --sweep LIST      session counts of the throughput-vs-clients sweep (default 1,4,16,32,64)
#   --quick           1s warm-up, 3s windows, sweep 1,8,32 (a smoke test)
#   --out DIR         results folder (default compat/bench/results)
#   --note TEXT       a line added to the report (e.g. how the binary was built)
#
# Targets: zk1 = ZooKeeper standalone, zk3 = 3-server ensemble on 127.0.0.1 (forceSync on),
# volery1 = Volery standalone, volery3 = a 3-server Volery cluster from the same kind of zoo.cfg
# files (every vote fsync'd on every server). Loads: setData 1 KB and getData 1 KB, 32 sessions x 25 outstanding,
# plus the sweep. Writes DIR/raw/*.json, DIR/README.md (table, ratios Volery/ZooKeeper) and SVG
# charts. Every process started here is stopped on exit; 127.0.0.1 only.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ZKJAR=/usr/share/java/zookeeper.jar
ZK_CP="/etc/zookeeper/conf:$ZKJAR"
JAVA_OPTS=(-Xms512m -Xmx1g -Dzookeeper.admin.enableServer=false)

VOLERY="" BENCH="" TARGETS="zk1,zk3,volery1,volery3" WARMUP=2s DURATION=8s SWEEP="1,4,16,32,64"
OUT="$HERE/results"
NOTES=()
COMMAND="compat/bench/run.sh $*"
usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --volery) VOLERY="${2:-}"; shift 2 || usage ;;
    --bench) BENCH="${2:-}"; shift 2 || usage ;;
    --targets) TARGETS="${2:-}"; shift 2 || usage ;;
    --warmup) WARMUP="${2:-}"; shift 2 || usage ;;
    --duration) DURATION="${2:-}"; shift 2 || usage ;;
    --sweep) SWEEP="${2:-}"; shift 2 || usage ;;
    --quick) WARMUP=1s; DURATION=3s; SWEEP="1,8,32"; shift ;;
    --out) OUT="${2:-}"; shift 2 || usage ;;
    --note) NOTES+=(--note "${2:-}"); shift 2 || usage ;;
    -h|--help) usage ;;
    *) echo "bench: unknown argument $1" >&2; usage ;;
  esac
done
[ -n "$VOLERY" ] || usage
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
[ -x "$VOLERY" ] || { echo "bench: $VOLERY is not an executable" >&2; exit 1; }
VOLERY="$(abspath "$VOLERY")"
BENCH="${BENCH:-$VOLERY}"
[ -x "$BENCH" ] || { echo "bench: $BENCH is not an executable" >&2; exit 1; }
BENCH="$(abspath "$BENCH")"
"$BENCH" bench --help >/dev/null 2>&1 || { echo "bench: $BENCH has no 'bench' subcommand" >&2; exit 1; }
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 1; }
PY=(python3 "$HERE/report.py")
wanted() { case ",$TARGETS," in *",$1,"*) return 0 ;; esac; return 1; }

# ---------------------------------------------------------------- cleanup
PGIDS=()
TMPDIRS=()
stop_all() {
  local pg
  for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
  for pg in "${PGIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  PGIDS=()
}
cleanup() {
  stop_all
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------- dependencies
if ! { [ -f "$ZKJAR" ] && command -v java >/dev/null; }; then
  echo "bench: installing Debian's zookeeper" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y zookeeper >&2 \
    || { apt-get update >&2 && apt-get install -y zookeeper >&2; } \
    || { echo "bench: cannot install zookeeper" >&2; exit 1; }
fi

mkdir -p "$OUT/raw"
rm -f "$OUT"/raw/*.json
WORK="$(mktemp -d -t volery-bench-XXXXXX)"; TMPDIRS+=("$WORK")
SERVER_PIDS=""

# start NAME CMD...: starts CMD in its own process group, logs to $WORK/NAME.log; adds its pid.
start() {
  local name="$1"; shift
  setsid "$@" >"$WORK/$name.log" 2>&1 </dev/null &
  local pid=$!
  PGIDS+=("$pid")
  SERVER_PIDS="${SERVER_PIDS:+$SERVER_PIDS,}$pid"
}

# ready ADDR...: every server answers a handshake within 90 s, or the target is skipped.
ready() {
  if "${PY[@]}" wait "$@" 90; then return 0; fi
  echo "bench: servers $* not ready; last log lines:" >&2
  tail -n 20 "$WORK"/*.log >&2
  return 1
}

zk_cfg() { # zk_cfg DIR CLIENT_PORT -> DIR/zoo.cfg (standalone part)
  mkdir -p "$1/data"
  cat >"$1/zoo.cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$1/data
clientPort=$2
clientPortAddress=127.0.0.1
maxClientCnxns=0
forceSync=yes
admin.enableServer=false
EOF
}

# run_loads TARGET SERVERS: the same loads on every target.
run_loads() {
  local target="$1" servers="$2" n load mix
  local sizes=()
  IFS=, read -r -a sizes <<<"$SWEEP"
  case ",$SWEEP," in *",32,"*) ;; *) sizes+=(32) ;; esac
  for load in set1k get1k; do
    case "$load" in set1k) mix=set=100 ;; get1k) mix=get=100 ;; esac
    for n in "${sizes[@]}"; do
      echo "== $target $load $n sessions" >&2
      timeout -k 5 120 "$BENCH" bench --servers "$servers" --sessions "$n" --outstanding 25 \
        --mix "$mix" --size 1000 --warmup "$WARMUP" --duration "$DURATION" \
        --server-pids "$SERVER_PIDS" --label "$target/$load" --quiet \
        --json "$OUT/raw/${target}__${load}__${n}.json" \
        || echo "bench: $target $load $n failed" >&2
    done
  done
}

# ------------------------------------------------------------- targets
if wanted zk1; then
  read -r P <<<"$("${PY[@]}" ports 1)"
  zk_cfg "$WORK/zk1" "$P"
  start zk1 java "${JAVA_OPTS[@]}" -cp "$ZK_CP" org.apache.zookeeper.server.ZooKeeperServerMain "$WORK/zk1/zoo.cfg"
  if ready "127.0.0.1:$P"; then run_loads zk1 "127.0.0.1:$P"; fi
  stop_all; SERVER_PIDS=""
fi

# ensemble_cfgs NAME [EXTRA_LINE]: zoo.cfg + myid for 3 servers in $WORK/NAME-{1,2,3} on free ports;
# sets $servers to their client addresses.
ensemble_cfgs() {
  local name="$1" extra="${2:-}" i j d cp_
  read -r -a PS <<<"$("${PY[@]}" ports 9)"
  servers=""
  for i in 1 2 3; do
    d="$WORK/$name-$i"; cp_=${PS[$((i - 1))]}
    zk_cfg "$d" "$cp_"
    echo "$i" >"$d/data/myid"
    [ -n "$extra" ] && echo "$extra" >>"$d/zoo.cfg"
    for j in 1 2 3; do
      echo "server.$j=127.0.0.1:${PS[$((3 + 2 * (j - 1)))]}:${PS[$((4 + 2 * (j - 1)))]}" >>"$d/zoo.cfg"
    done
    servers="${servers:+$servers,}127.0.0.1:$cp_"
  done
}

if wanted zk3; then
  ensemble_cfgs zk3
  for i in 1 2 3; do
    start "zk3-$i" java "${JAVA_OPTS[@]}" -cp "$ZK_CP" org.apache.zookeeper.server.quorum.QuorumPeerMain "$WORK/zk3-$i/zoo.cfg"
  done
  if ready ${servers//,/ }; then run_loads zk3 "$servers"; fi
  stop_all; SERVER_PIDS=""
fi

if wanted volery1; then
  read -r P <<<"$("${PY[@]}" ports 1)"
  mkdir -p "$WORK/volery1"
  start volery1 "$VOLERY" start --port "$P" --bind 127.0.0.1 --data-dir "$WORK/volery1" --max-client-cnxns 0
  if ready "127.0.0.1:$P"; then run_loads volery1 "127.0.0.1:$P"; fi
  stop_all; SERVER_PIDS=""
fi

if wanted volery3; then
  ensemble_cfgs volery3 "metricsProvider.httpPort=0"
  for i in 1 2 3; do
    start "volery3-$i" "$VOLERY" start --zoo-cfg "$WORK/volery3-$i/zoo.cfg"
  done
  if ready ${servers//,/ }; then sleep 2; run_loads volery3 "$servers"; fi
  stop_all; SERVER_PIDS=""
fi

# ------------------------------------------------------------- report
ZKVER="$(dpkg-query -W -f '${Version}' zookeeper 2>/dev/null || echo '?')"
REV="$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo '?')"
"${PY[@]}" summarize "$OUT/raw" "$OUT" --command "$COMMAND" \
  --note "Apache ZooKeeper $ZKVER (Debian), JVM ${JAVA_OPTS[*]}, forceSync=yes, maxClientCnxns=0" \
  --note "Volery at $REV: $VOLERY; load generator: $BENCH" \
  --note "Each run: warm-up $WARMUP, measured window $DURATION; the servers and the load generator share the machine's CPUs." \
  "${NOTES[@]}"
echo "bench: results in $OUT/README.md" >&2
