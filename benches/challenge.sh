#!/usr/bin/env bash
# Concurrent challenges on this machine (issue 17): the scamguard binary with media on, and a
# SIPp robodialer (tests/sipp/uac_challenge.xml) placing N calls at once from N distinct numbers
# that a list entry in category "challenge" names. Every call gets the 183 with the "press 5"
# prompt as early media (4 s of RTP to the caller), presses nothing, and is refused 603+ once
# challenge.timeout_secs have passed after the prompt: N challenges in progress together. The
# figures are the scamguard process's CPU time (utime + stime from /proc/<pid>/stat, so the SIPp
# caller's own work is not counted) over the burst, per challenged call, and its peak memory.
#
#   benches/challenge.sh                     # N = 50, 200, 400
#   LEVELS="100 800" benches/challenge.sh
#
# Knobs: LEVELS [50 200 400]  TIMEOUT_S [1]  SKIP_BUILD [0]  WORK [a temp dir]
# Velocity is off: N calls a second from one source address are its business, not the
# challenge's. Not part of the test suite; needs sipp and curl.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LEVELS="${LEVELS:-50 200 400}"
TIMEOUT_S="${TIMEOUT_S:-1}"
WORK="${WORK:-$(mktemp -d /tmp/scamguard-challenge-XXXXXX)}"
mkdir -p "$WORK/lists"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$REPO" && cargo build --release --bin scamguard)
fi
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/scamguard"
[[ -x "$BIN" ]] || { echo "ERROR: $BIN missing (build it or unset SKIP_BUILD)" >&2; exit 1; }

SIP_PORT=25060
API_PORT=25080
SINK_PORT=25062
cat > "$WORK/lists/suspects.csv" <<'EOF'
pattern,action,category,reason
+1212736XXXX,warn,challenge,bench: every caller of this range is challenged
EOF
cat > "$WORK/scamguard.toml" <<EOF
[sip]
listen = "127.0.0.1:$SIP_PORT"
next_hop = "127.0.0.1:$SINK_PORT"
[api]
listen = "127.0.0.1:$API_PORT"
[lists]
dir = "$WORK/lists"
[store]
data_dir = "$WORK/data"
[log]
decisions = { file = "$WORK/decisions.jsonl" }
level = "warn"
[media]
enabled = true
bind_ip = "127.0.0.1"
port_min = 40000
port_max = 43999
max_sessions = 1000
prompts_dir = "$REPO/prompts"
[challenge]
timeout_secs = $TIMEOUT_S
max_concurrent = 1000
[signals.velocity]
enabled = false
EOF
"$BIN" validate --config "$WORK/scamguard.toml" >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$API_PORT/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
tck=$(getconf CLK_TCK)

printf '%-6s %-8s %-7s %-9s %-10s %-14s %-10s\n' calls started failed wall_s cpu_s cpu_ms/call peak_MiB
for n in $LEVELS; do
  rm -rf "$WORK/data" "$WORK/decisions.jsonl"
  "$BIN" run --config "$WORK/scamguard.toml" 2>"$WORK/agent-$n.err" &
  pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$API_PORT/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  { echo SEQUENTIAL; for i in $(seq 1 "$n"); do printf '+1212736%04d;+14155550100;\n' "$i"; done; } \
    > "$WORK/calls-$n.csv"
  c0=$(cpu_ticks $pid)
  t0=$(date +%s.%N)
  sipp -sf "$REPO/tests/sipp/uac_challenge.xml" -inf "$WORK/calls-$n.csv" -i 127.0.0.1 \
    -p 25070 -m "$n" -r 1000 -l "$n" -nostdin -timeout 120s \
    -trace_err -error_file "$WORK/sipp-$n.err" "127.0.0.1:$SIP_PORT" >"$WORK/sipp-$n.log" 2>&1 \
    || echo "sipp: some calls failed (see $WORK/sipp-$n.log)" >&2
  t1=$(date +%s.%N)
  c1=$(cpu_ticks $pid)
  peak=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
  started=$(metric 'scamguard_challenges_total{outcome="started"}')
  failed=$(metric 'scamguard_challenges_total{outcome="failed"}')
  kill $pid; wait $pid 2>/dev/null || true
  awk -v n="$n" -v s="$started" -v f="$failed" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" \
      -v tck="$tck" -v p="$peak" 'BEGIN {
    printf "%-6d %-8d %-7d %-9.1f %-10.2f %-14.2f %-10s\n", n, s, f, t1 - t0, c / tck,
      1000 * c / tck / n, p }'
done
echo "machine: $(nproc) CPUs, $(uname -sr), $(lscpu | sed -n 's/^Model name: *//p'); work dir $WORK"
