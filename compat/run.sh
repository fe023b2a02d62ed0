#!/usr/bin/env bash
# Compatibility suites for Volery, checked against real Apache ZooKeeper 3.8.
#
# Usage:
#   compat/run.sh --volery PATH_TO_VOLERY_BINARY   start Volery on a free port, run every suite
#   compat/run.sh --server HOST:PORT               run every suite against a running server
#   compat/run.sh --zookeeper                      start a real ZooKeeper, run every suite (self-check)
#   compat/run.sh --volery-cluster PATH --partitions K --replicas R
#                                                  start K partitions x R replicas (K*R servers from
#                                                  volery.toml files), run every suite with a connect
#                                                  string listing all servers
# Options: --seed N (differential seed), --ops N (differential operations, default 10000),
#          --only recipes|cli|differential (repeatable).
#
# Prints per-suite counts and ends with the line "N passed, N failed"; exits non-zero on any failure.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv"
PY="$VENV/bin/python"
ZKCLI=/usr/share/zookeeper/bin/zkCli.sh
CLI_MT=/usr/lib/zookeeper/bin/cli_mt
ZKJAR=/usr/share/java/zookeeper.jar

MODE="" ARG="" SEED="" OPS=10000 ONLY=() PARTITIONS=1 REPLICAS=1
usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --volery) MODE=volery; ARG="${2:-}"; shift 2 || usage ;;
    --server) MODE=server; ARG="${2:-}"; shift 2 || usage ;;
    --zookeeper) MODE=zookeeper; shift ;;
    --volery-cluster) MODE=cluster; ARG="${2:-}"; shift 2 || usage ;;
    --partitions) PARTITIONS="${2:-}"; shift 2 || usage ;;
    --replicas) REPLICAS="${2:-}"; shift 2 || usage ;;
    --seed) SEED="${2:-}"; shift 2 || usage ;;
    --ops) OPS="${2:-}"; shift 2 || usage ;;
    --only) ONLY+=("${2:-}"); shift 2 || usage ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
done
[ -n "$MODE" ] || usage
[ "$MODE" = zookeeper ] || [ -n "$ARG" ] || usage
for n in "$PARTITIONS" "$REPLICAS"; do
  case "$n" in ''|*[!0-9]*|0*) echo "compat: --partitions and --replicas take a positive number" >&2; usage ;; esac
done

# ---------------------------------------------------------------- cleanup
PGIDS=()
TMPDIRS=()
cleanup() {
  local pg
  for pg in "${PGIDS[@]}"; do
    kill -TERM -- "-$pg" 2>/dev/null || true
  done
  for pg in "${PGIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 -- "-$pg" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pg" 2>/dev/null || true
  done
  for d in "${TMPDIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------- dependencies
ensure_zookeeper() {
  if [ -x "$ZKCLI" ] && [ -x "$CLI_MT" ] && [ -f "$ZKJAR" ] && command -v java >/dev/null; then
    return 0
  fi
  echo "compat: installing Debian zookeeper and zookeeper-bin" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y zookeeper zookeeper-bin >&2 \
    || { apt-get update >&2 && apt-get install -y zookeeper zookeeper-bin >&2; } \
    || { echo "compat: cannot install zookeeper" >&2; exit 1; }
}

ensure_venv() {
  local stamp="$VENV/.requirements"
  if [ -x "$PY" ] && [ -f "$stamp" ] && cmp -s "$stamp" "$HERE/requirements.txt"; then
    return 0
  fi
  echo "compat: creating $VENV with pinned requirements" >&2
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >&2; then
    # Debian's python3 needs python3-venv for `python3 -m venv`.
    rm -rf "$VENV"
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2 \
      || { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv >&2; }
    python3 -m venv "$VENV" >&2 || { echo "compat: python3 -m venv failed" >&2; exit 1; }
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" >&2 \
    || { echo "compat: pip install failed" >&2; exit 1; }
  cp "$HERE/requirements.txt" "$stamp"
}

ensure_zookeeper
ensure_venv
command -v stdbuf >/dev/null || { echo "compat: stdbuf (coreutils) is required" >&2; exit 1; }

free_port() { "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import zkutil; print(zkutil.free_port())' "$HERE"; }
# free_ports N: N distinct free ports on one line.
free_ports() { "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import zkutil; print(*zkutil.free_ports(int(sys.argv[2])))' "$HERE" "$1"; }

# wait_ready HOST PORT PID LOG: until the server answers a ZooKeeper handshake (60 s).
wait_ready() {
  local host="$1" port="$2" pid="$3" log="$4"
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "compat: server process exited; log $log:" >&2; tail -n 30 "$log" >&2; exit 1
    fi
    if "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import zkutil; sys.exit(0 if zkutil.zk_handshake(sys.argv[2], int(sys.argv[3])) else 1)' \
        "$HERE" "$host" "$port"; then
      return 0
    fi
    sleep 0.2
  done
  echo "compat: server on $host:$port not ready after 60s; log $log:" >&2; tail -n 30 "$log" >&2; exit 1
}

# --------------------------------------------------------------- target
SERVER_LOG=""
SERVER_LOGS=()
DIFF_ARGS=()
case "$MODE" in
  volery)
    BIN="$ARG"
    [ -x "$BIN" ] || { echo "compat: $BIN is not an executable" >&2; exit 1; }
    BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
    PORT="$(free_port)"
    DATA="$(mktemp -d -t compat-volery-XXXXXX)"; TMPDIRS+=("$DATA")
    SERVER_LOG="$(mktemp -t compat-volery-log-XXXXXX)"
    setsid "$BIN" start --port "$PORT" --data-dir "$DATA" >"$SERVER_LOG" 2>&1 </dev/null &
    PID=$!; PGIDS+=("$PID")
    wait_ready 127.0.0.1 "$PORT" "$PID" "$SERVER_LOG"
    SERVER="127.0.0.1:$PORT"
    echo "compat: Volery $BIN on $SERVER (log $SERVER_LOG)"
    ;;
  cluster)
    # K*R servers on 127.0.0.1, one volery.toml each: ids 1..K*R, partition p holding ids
    # p*R+1..(p+1)*R (the server's own rule: id order, consecutive runs of R).
    BIN="$ARG"
    [ -x "$BIN" ] || { echo "compat: $BIN is not an executable" >&2; exit 1; }
    BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"
    N=$((PARTITIONS * REPLICAS))
    read -r -a PORTS <<<"$(free_ports $((2 * N)))"
    DATA="$(mktemp -d -t compat-cluster-XXXXXX)"; TMPDIRS+=("$DATA")
    LOGDIR="$(mktemp -d -t compat-cluster-log-XXXXXX)"
    SERVERS_TOML=""
    SERVER=""
    for i in $(seq 1 "$N"); do
      cport=${PORTS[$((2 * (i - 1)))]} pport=${PORTS[$((2 * (i - 1) + 1))]}
      SERVERS_TOML+="[[servers]]
id = $i
host = \"127.0.0.1\"
peer_port = $pport
client_port = $cport
"
      SERVER="${SERVER:+$SERVER,}127.0.0.1:$cport"
    done
    PIDS=()
    for i in $(seq 1 "$N"); do
      mkdir -p "$DATA/s$i"
      cat >"$DATA/s$i/volery.toml" <<EOF
server_id = $i
partitions = $PARTITIONS
client_address = "127.0.0.1"
data_dir = "$DATA/s$i"

[metrics]
host = "127.0.0.1"
port = 0

$SERVERS_TOML
EOF
      log="$LOGDIR/server$i.log"; SERVER_LOGS+=("$log")
      setsid "$BIN" start --config "$DATA/s$i/volery.toml" >"$log" 2>&1 </dev/null &
      PIDS+=("$!"); PGIDS+=("$!")
    done
    for i in $(seq 1 "$N"); do
      wait_ready 127.0.0.1 "${PORTS[$((2 * (i - 1)))]}" "${PIDS[$((i - 1))]}" "${SERVER_LOGS[$((i - 1))]}"
    done
    # zxids are Lamport clocks per partition: commands of different partitions may share a
    # value, so the differential run compares zxid relations one way only (see its doc).
    if [ "$PARTITIONS" -gt 1 ]; then DIFF_ARGS+=(--partitioned); fi
    echo "compat: Volery cluster of $PARTITIONS partition(s) x $REPLICAS replica(s), $BIN, servers $SERVER (logs $LOGDIR)"
    ;;
  zookeeper)
    PORT="$(free_port)"
    SERVER_LOG="$(mktemp -t compat-zk-log-XXXXXX)"
    setsid "$PY" "$HERE/zkutil.py" serve "$PORT" >"$SERVER_LOG" 2>&1 </dev/null &
    PID=$!; PGIDS+=("$PID")
    wait_ready 127.0.0.1 "$PORT" "$PID" "$SERVER_LOG"
    SERVER="127.0.0.1:$PORT"
    echo "compat: Apache ZooKeeper on $SERVER"
    ;;
  server)
    SERVER="$ARG"
    echo "compat: server $SERVER"
    ;;
esac

# ---------------------------------------------------------------- suites
TOTAL_PASSED=0 TOTAL_FAILED=0
wanted() { [ ${#ONLY[@]} -eq 0 ] && return 0; local s; for s in "${ONLY[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
record() { # record SUITE PASSED FAILED
  echo "suite $1: $2 passed, $3 failed"
  TOTAL_PASSED=$((TOTAL_PASSED + $2)); TOTAL_FAILED=$((TOTAL_FAILED + $3))
}

run_pytest_suite() { # run_pytest_suite NAME FILE TIMEOUT
  local name="$1" file="$2" limit="$3" out rc passed failed errors
  out="$(mktemp -t compat-$name-XXXXXX)"; TMPDIRS+=("$out")
  echo "== $name ($file)"
  (cd "$HERE" && COMPAT_SERVER="$SERVER" timeout -k 10 "$limit" "$PY" -m pytest -p no:cacheprovider \
      -q -rfE --rootdir "$HERE" "$file") 2>&1 | tee "$out"
  rc=${PIPESTATUS[0]}
  local last; last="$(grep -E '[0-9]+ (passed|failed|error)' "$out" | tail -n 1)"
  passed="$(echo "$last" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || true)"
  failed="$(echo "$last" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || true)"
  errors="$(echo "$last" | grep -oE '[0-9]+ errors?' | grep -oE '[0-9]+' || true)"
  passed=${passed:-0}; failed=$(( ${failed:-0} + ${errors:-0} ))
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
    echo "compat: $name exited with $rc (timeout or crash)"; failed=1
  fi
  record "$name" "$passed" "$failed"
}

if wanted recipes; then run_pytest_suite recipes test_recipes.py 600; fi
if wanted cli; then run_pytest_suite cli test_cli.py 600; fi
if wanted differential; then
  echo "== differential (differential.py)"
  args=(--target "$SERVER" --ops "$OPS" "${DIFF_ARGS[@]}")
  [ -n "$SEED" ] && args+=(--seed "$SEED")
  (cd "$HERE" && timeout -k 10 1800 "$PY" differential.py "${args[@]}")
  rc=$?
  if [ "$rc" -eq 0 ]; then record differential 1 0; else record differential 0 1; fi
fi

if [ -n "$SERVER_LOG" ] && [ -f "$SERVER_LOG" ]; then
  if [ "$TOTAL_FAILED" -gt 0 ]; then
    echo "compat: server log kept at $SERVER_LOG; last lines:"; tail -n 20 "$SERVER_LOG"
  else
    TMPDIRS+=("$SERVER_LOG")
  fi
fi
if [ ${#SERVER_LOGS[@]} -gt 0 ]; then
  if [ "$TOTAL_FAILED" -gt 0 ]; then
    echo "compat: server logs kept in $LOGDIR; last lines of each:"
    for log in "${SERVER_LOGS[@]}"; do echo "-- $log"; tail -n 20 "$log"; done
  else
    TMPDIRS+=("$LOGDIR")
  fi
fi
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
