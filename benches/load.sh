#!/usr/bin/env bash
# Side-by-side load test: scamguard against Kamailio 5.6 doing the same job (1M exact numbers,
# 10k prefixes, ~30% blocked, mixed caller formats, P-Asserted-Identity) on the same machine,
# with the shared peer harness (SIPp caller and callee; ../shared/bench/peer/README.md).
#
#   benches/load.sh                 # build, convert the data, run scamguard, then Kamailio
#   DIRECT=0 PCAP=0 STEP_S=10 CONFIRM_S=15 benches/load.sh     # a quick look
#   KAMAILIO=0 benches/load.sh      # scamguard only (compare with KAM_RUN=<an earlier run dir>)
#   FLEET=1 benches/load.sh         # scamguard with [fleet] off, then on (issue 14), no Kamailio
#
# Knobs (defaults in brackets), besides the harness's own (STEP_S, CONFIRM_S, DIRECT [0 here],
# PCAP, START_RATE, EXTRA_ARGS, N_EXACT, N_PREFIXES, N_CALLS, FORCE_GEN, SKIP_INSTALL ...):
#   PEER_DIR   [../shared/bench/peer beside the repo]   WORK [/tmp/peer-bench]
#   SKIP_BUILD [0]   KAMAILIO [1]   SCAMGUARD [1]   KAM_RUN []   SG_RUN []
#   LAT_RATES  [500,3000,5880]  fixed latency rates for both proxies (5880 = 0.8 x Kamailio's
#              7,360 cps max), so p99s are compared at the same offered load
#   DECISIONS  [$WORK/scamguard-decisions.jsonl]  decision log target ("stdout" or a file path)
#   SG_UDP_WORKERS [0]  sip.udp_workers (0 = one per CPU)
#   FLEET      [0]  1: run scamguard twice, [fleet] off then on, against one redis-server this
#              script starts on REDIS_PORT [6390] (loopback, no persistence, its own folder, and
#              stopped by its PID at the end); prints CPU per call on / off as a ratio (target
#              <= 1.15), max cps both ways, and the Redis commands per call (INFO commandstats
#              before and after the fleet run, over the calls the decision log shows screened)
#              NB: the harness dials the service "bench" (sipp -s bench), not a number, and
#              velocity and wangiri count only calls to a number: for the count scripts' cost
#              the harness must dial a number (docs/fleet.md, Sizing)
#   FLEET_RUN  [$WORK/scamguard-fleet-<stamp>]  the run folder of the fleet-on run
#
# The harness's smoke test fails on any wrong verdict, so a run that gets past it also shows
# that scamguard reads this data set's callers correctly.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PEER_DIR:-}" ]]; then
  for d in "$REPO/../shared/bench/peer" "$REPO/../../shared/bench/peer"; do
    [[ -x "$d/run-peer.sh" ]] && PEER_DIR="$d" && break
  done
fi
[[ -n "${PEER_DIR:-}" && -x "$PEER_DIR/run-peer.sh" ]] || {
  echo "ERROR: peer harness not found; set PEER_DIR to the folder holding run-peer.sh" >&2
  exit 1
}
PEER_DIR="$(cd "$PEER_DIR" && pwd)"
export WORK="${WORK:-/tmp/peer-bench}"
export DATA="${DATA:-$WORK/data}"
export DIRECT="${DIRECT:-0}"
LAT_RATES="${LAT_RATES:-500,3000,5880}"
DECISIONS="${DECISIONS:-$WORK/scamguard-decisions.jsonl}"
export EXTRA_ARGS="${EXTRA_ARGS:-} --lat-rates $LAT_RATES --lat-fracs 0"
mkdir -p "$WORK"

# ---------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$REPO" && cargo build --release --bin scamguard)
fi
BIN="$REPO/target/release/scamguard"
[[ -x "$BIN" ]] || { echo "ERROR: $BIN missing (build it or unset SKIP_BUILD)" >&2; exit 1; }

# ---------------------------------------------------------------- data (same args as run-peer.sh)
if [[ "${FORCE_GEN:-0}" == 1 || ! -s "$DATA/stats.txt" ]]; then
  echo "generating data in $DATA" >&2
  python3 "$PEER_DIR/gen_data.py" --out "$DATA" --exact "${N_EXACT:-1000000}" \
      --prefixes "${N_PREFIXES:-10000}" --calls "${N_CALLS:-100000}"
fi
export FORCE_GEN=0   # generated above; the harness must not regenerate under us
CFG="$(python3 "$REPO/benches/peer_lists.py" "$DATA" "$WORK/scamguard" "$DECISIONS")"
"$BIN" validate --config "$CFG" >&2

stamp="$(date +%Y%m%d-%H%M%S)"
SG_RUN="${SG_RUN:-$WORK/scamguard-$stamp}"
KAM_RUN="${KAM_RUN:-$WORK/kamailio-$stamp}"
FLEET_RUN="${FLEET_RUN:-$WORK/scamguard-fleet-$stamp}"
if [[ "${FLEET:-0}" == 1 ]]; then
  KAMAILIO=0
fi

# Waits until the scamguard of config $1 has let go of port 5060 (the harness stops it by signal
# and goes on at once; its receive threads wake every 100 ms and the decision log flushes last).
wait_gone() {
  for _ in $(seq 60); do
    pgrep -f "$BIN run --config $1" >/dev/null 2>&1 || break
    sleep 0.5
  done
}

# ---------------------------------------------------------------- runs
if [[ "${SCAMGUARD:-1}" == 1 ]]; then
  echo "== scamguard (run folder $SG_RUN; decision log: $DECISIONS)" >&2
  : > "$DECISIONS" 2>/dev/null || true
  # Through sh, so that an unexpected exit is logged with its status (the harness measures the
  # whole process tree; sh itself costs nothing while it waits).
  RUN="$SG_RUN" PROXY_NAME=scamguard \
    PROXY_CMD="sh -c '$BIN run --config $CFG; echo scamguard exited with status \$? >&2'" \
    "$PEER_DIR/run-peer.sh" || echo "scamguard run failed (see $SG_RUN)" >&2
fi
if [[ "${FLEET:-0}" == 1 ]]; then
  wait_gone "$CFG"
  command -v redis-server >/dev/null 2>&1 || {
    echo "ERROR: FLEET=1 needs redis-server and redis-cli (apt-get install redis-server)" >&2
    exit 1
  }
  REDIS_PORT="${REDIS_PORT:-6390}"
  REDIS_DIR="$WORK/redis-$stamp"
  mkdir -p "$REDIS_DIR"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log" &
  REDIS_PID=$!
  # Only the server started here is stopped, by its PID.
  trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
  rcli() { redis-cli -p "$REDIS_PORT" "$@"; }
  for _ in $(seq 100); do
    [[ "$(rcli ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
  done
  [[ "$(rcli ping 2>/dev/null)" == PONG ]] || { echo "ERROR: redis-server did not start" >&2; exit 1; }
  CFG_FLEET="${CFG%.toml}-fleet.toml"
  cp "$CFG" "$CFG_FLEET"
  cat >> "$CFG_FLEET" <<TOML

# Added by benches/load.sh (FLEET=1): the same agent, sharing its counts through Redis.
[fleet]
enabled = true
url = "redis://127.0.0.1:$REDIS_PORT"
name = "bench"
agent_id = "bench-1"
TOML
  "$BIN" validate --config "$CFG_FLEET" >&2
  echo "== scamguard with [fleet] on (run folder $FLEET_RUN; Redis on port $REDIS_PORT)" >&2
  : > "$DECISIONS" 2>/dev/null || true
  rcli config resetstat >/dev/null
  rcli info commandstats > "$FLEET_RUN.commandstats-before" 2>/dev/null || true
  RUN="$FLEET_RUN" PROXY_NAME=scamguard-fleet \
    PROXY_CMD="sh -c '$BIN run --config $CFG_FLEET; echo scamguard exited with status \$? >&2'" \
    "$PEER_DIR/run-peer.sh" || echo "scamguard fleet run failed (see $FLEET_RUN)" >&2
  wait_gone "$CFG_FLEET"
  rcli info commandstats > "$FLEET_RUN.commandstats"
  rcli info memory | grep -E '^used_memory(_human)?:' > "$FLEET_RUN.memory" || true
  rcli dbsize > "$FLEET_RUN.keys" || true
  SCREENED="$(grep -c '"call_id"' "$DECISIONS" 2>/dev/null || echo 0)"
  echo
  python3 "$REPO/benches/fleet_compare.py" "$SG_RUN" "$FLEET_RUN" "$FLEET_RUN.commandstats" \
    "$SCREENED" "$FLEET_RUN.memory" "$FLEET_RUN.keys" || true
fi
if [[ "${KAMAILIO:-1}" == 1 ]]; then
  wait_gone "$CFG"
  echo "== kamailio (run folder $KAM_RUN)" >&2
  RUN="$KAM_RUN" PROXY_NAME=kamailio "$PEER_DIR/run-peer.sh" \
    || echo "kamailio run failed (see $KAM_RUN)" >&2
fi

# ---------------------------------------------------------------- results
echo
for r in "$SG_RUN" "$KAM_RUN"; do
  [[ -s "$r/result.txt" ]] && cat "$r/result.txt"
done
if [[ -s "$SG_RUN/summary.json" && -s "$KAM_RUN/summary.json" ]]; then
  echo
  python3 "$REPO/benches/peer_compare.py" "$SG_RUN" "$KAM_RUN" scamguard kamailio
fi
echo
echo "machine: $(nproc) CPUs, $(uname -sr), $(lscpu | sed -n 's/^Model name: *//p')"
