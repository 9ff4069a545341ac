#!/usr/bin/env bash
# Side-by-side load test: scamguard against Kamailio 5.6 doing the same job (1M exact numbers,
# 10k prefixes, ~30% blocked, mixed caller formats, P-Asserted-Identity) on the same machine,
# with the shared peer harness (SIPp caller and callee; ../shared/bench/peer/README.md).
#
#   benches/load.sh                 # build, convert the data, run scamguard, then Kamailio
#   DIRECT=0 PCAP=0 STEP_S=10 CONFIRM_S=15 benches/load.sh     # a quick look
#   KAMAILIO=0 benches/load.sh      # scamguard only (compare with KAM_RUN=<an earlier run dir>)
#
# Knobs (defaults in brackets), besides the harness's own (STEP_S, CONFIRM_S, DIRECT [0 here],
# PCAP, START_RATE, EXTRA_ARGS, N_EXACT, N_PREFIXES, N_CALLS, FORCE_GEN, SKIP_INSTALL ...):
#   PEER_DIR   [../shared/bench/peer beside the repo]   WORK [/tmp/peer-bench]
#   SKIP_BUILD [0]   KAMAILIO [1]   SCAMGUARD [1]   KAM_RUN []   SG_RUN []
#   LAT_RATES  [500,3000,5880]  fixed latency rates for both proxies (5880 = 0.8 x Kamailio's
#              7,360 cps max), so p99s are compared at the same offered load
#   DECISIONS  [$WORK/scamguard-decisions.jsonl]  decision log target ("stdout" or a file path)
#   SG_UDP_WORKERS [0]  sip.udp_workers (0 = one per CPU)
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
if [[ "${KAMAILIO:-1}" == 1 ]]; then
  # The harness stops scamguard by signal and goes on at once; give its receive threads (which
  # wake every 100 ms) and the decision log's last flush time to let go of port 5060.
  for _ in $(seq 60); do
    pgrep -f "$BIN run --config $CFG" >/dev/null 2>&1 || break
    sleep 0.5
  done
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
