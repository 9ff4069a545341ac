#!/usr/bin/env bash
# Instructions per call of the whole agent under SIPp load, counted by valgrind's callgrind: the
# peer harness's job (1M exact numbers, 10k prefixes, every signal on, the decision log to a
# file), a fixed number of calls at a low fixed rate.
#
#   benches/callgrind.sh                       # this checkout's release binary
#   benches/callgrind.sh /path/to/scamguard    # another build (say, an older commit's)
#   RATE=100 CALLS=4000 benches/callgrind.sh   # the defaults
#   NUMBERS=1 benches/callgrind.sh             # the job that dials numbers (FLEET=1 benches/load.sh)
#   NUMBERS=1 FLEET=1 benches/callgrind.sh     # the same with [fleet] on, against its own Redis
#
# Why instructions and not seconds: on a shared 2-core VM other work moves CPU time per call by
# 20 % from run to run, while callgrind's count is the same whatever else runs. It is not time
# (cache misses, system calls and lock waits are not in it), so it shows where the agent's own
# code got cheaper or dearer; benches/load.sh still measures the seconds. Counting starts once
# the agent is ready (the lists' load is not in it) and stops when SIPp is done, so the timers'
# work during the run is in it too: compare runs with the same RATE and CALLS only.
#
# NUMBERS=1 runs the job of FLEET=1 benches/load.sh: the harness's calls, each to a callee
# number (benches/sipp/callee/uac.xml, benches/callee_calls.py), so that velocity, wangiri and
# concurrency count them (log-only there: benches/peer_lists.py --numbers). FLEET=1 adds [fleet]
# against a redis-server started here on REDIS_PORT [6391] (loopback, no persistence, stopped by
# its PID), and prints the Redis commands per call; compare NUMBERS=1 with and without FLEET=1
# for what the fleet costs the agent, in instructions.
#
# Needs the harness's data set ($WORK/data, as benches/load.sh generates it), SIPp and valgrind.
# Prints the calls that succeeded and failed (a run with failures counts retransmissions: rerun
# it), the instructions per call, and writes the profile for callgrind_annotate.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${1:-$REPO/target/release/scamguard}"
RATE="${RATE:-100}"
CALLS="${CALLS:-4000}"
WORK="${WORK:-/tmp/peer-bench}"
DATA="${DATA:-$WORK/data}"
# As benches/load.sh: beside the repo, or beside the worktrees' folder.
if [[ -z "${PEER_DIR:-}" ]]; then
  for d in "$REPO/../shared/bench/peer" "$REPO/../../shared/bench/peer"; do
    [[ -s "$d/sipp/uas.xml" ]] && PEER_DIR="$d" && break
  done
fi
[[ -s "${PEER_DIR:-}/sipp/uas.xml" ]] || {
  echo "ERROR: peer harness not found; set PEER_DIR to the folder holding sipp/uas.xml" >&2
  exit 1
}
OUT="${OUT:-$WORK/callgrind-$(date +%Y%m%d-%H%M%S)}"
[[ -x "$BIN" ]] || { echo "ERROR: $BIN missing (cargo build --release)" >&2; exit 1; }
[[ -s "$DATA/numbers.txt" ]] || { echo "ERROR: no data set in $DATA (run benches/load.sh once)" >&2; exit 1; }
for t in valgrind callgrind_control sipp; do
  command -v "$t" >/dev/null || { echo "ERROR: $t missing (apt-get install valgrind sip-tester)" >&2; exit 1; }
done
mkdir -p "$OUT"
UAC_SF="$PEER_DIR/sipp/uac.xml"
CALLS_CSV="$DATA/calls.csv"
if [[ "${NUMBERS:-0}" == 1 ]]; then
  CFG="$(python3 "$REPO/benches/peer_lists.py" "$DATA" "$OUT/sg" "$OUT/decisions.jsonl" --numbers)"
  UAC_SF="$REPO/benches/sipp/callee/uac.xml"
  CALLS_CSV="$WORK/calls-callee.csv"
  python3 "$REPO/benches/callee_calls.py" "$DATA" "$CALLS_CSV"
else
  CFG="$(python3 "$REPO/benches/peer_lists.py" "$DATA" "$OUT/sg" "$OUT/decisions.jsonl")"
fi
REDIS=
if [[ "${FLEET:-0}" == 1 ]]; then
  command -v redis-server >/dev/null || { echo "ERROR: redis-server missing (apt-get install redis-server)" >&2; exit 1; }
  REDIS_PORT="${REDIS_PORT:-6391}"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$OUT" \
    --logfile "$OUT/redis.log" &
  REDIS=$!
  for _ in $(seq 100); do
    [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] && break
    sleep 0.1
  done
  [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]] || {
    kill "$REDIS"
    echo "ERROR: redis-server did not start" >&2
    exit 1
  }
  cat >> "$CFG" <<TOML

# Added by benches/callgrind.sh (FLEET=1). Under valgrind the agent runs some 50 times slower:
# with the default 100 ms bound on a round trip its flushes time out and the breaker opens.
[fleet]
enabled = true
url = "redis://127.0.0.1:$REDIS_PORT"
name = "bench"
agent_id = "callgrind-1"
timeout_ms = 5000
TOML
fi

valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out" \
  "$BIN" run --config "$CFG" > "$OUT/agent.log" 2>&1 &
AGENT=$!
UAS=
cleanup() {
  kill "$AGENT" 2>/dev/null || true
  [[ -n "$UAS" ]] && kill "$UAS" 2>/dev/null || true
  [[ -n "$REDIS" ]] && kill "$REDIS" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 600); do
  grep -q "scamguard ready" "$OUT/agent.log" && break
  kill -0 "$AGENT" 2>/dev/null || { cat "$OUT/agent.log" >&2; exit 1; }
  sleep 1
done
sipp -sf "$PEER_DIR/sipp/uas.xml" -i 127.0.0.1 -p 5070 -nostdin -max_socket 1000 \
  -recv_timeout 10000 > "$OUT/uas.out" 2>&1 &
UAS=$!
sleep 2
[[ -n "$REDIS" ]] && redis-cli -p "$REDIS_PORT" config resetstat > /dev/null
callgrind_control -i on "$AGENT" > /dev/null
sipp 127.0.0.1:5060 -sf "$UAC_SF" -inf "$CALLS_CSV" -i 127.0.0.1 -p 5080 \
  -s bench -r "$RATE" -m "$CALLS" -l 15000 -max_socket 1000 -recv_timeout 10000 -nostdin \
  -trace_stat -stf "$OUT/stat.csv" -fd 1 > "$OUT/uac.out" 2>&1 || true
callgrind_control -i off "$AGENT" > /dev/null
callgrind_control -d "$AGENT" > /dev/null
[[ -n "$REDIS" ]] && redis-cli -p "$REDIS_PORT" info commandstats > "$OUT/commandstats"
sleep 2
cleanup
wait "$AGENT" 2>/dev/null || true
trap - EXIT

field() { # the last row's value of a column of SIPp's statistics file
  python3 - "$OUT/stat.csv" "$1" <<'EOF'
import sys
rows = [l.rstrip("\n").split(";") for l in open(sys.argv[1]) if l.strip()]
print(rows[-1][rows[0].index(sys.argv[2])])
EOF
}
ok="$(field 'SuccessfulCall(C)')"
failed="$(field 'FailedCall(C)')"
# The dump taken while counting holds the run; the file written at exit holds nothing more.
total="$(cat "$OUT"/callgrind.out* | sed -n 's/^totals: //p' | awk '{s += $1} END {print s}')"
echo "calls: $ok succeeded, $failed failed (rate $RATE/s, $CALLS calls)"
echo "instructions per call: $((total / CALLS))"
if [[ -s "$OUT/commandstats" ]]; then
  python3 - "$OUT/commandstats" "$CALLS" <<'EOF'
import re, sys
stats = {m.group(1): int(m.group(2)) for m in
         (re.match(r"cmdstat_([^:]+):calls=(\d+)", l) for l in open(sys.argv[1])) if m}
calls = int(sys.argv[2])
scripts = stats.get("evalsha", 0) + stats.get("eval", 0)
every = sum(v for k, v in stats.items() if k not in ("config|resetstat", "info"))
print("Redis per call: %.2f count scripts (EVALSHA), %.2f commands run in all" % (
    scripts / calls, every / calls))
EOF
fi
echo "profile: $(ls "$OUT"/callgrind.out.* | head -1) (callgrind_annotate --tree=none)"
