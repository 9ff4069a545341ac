#!/usr/bin/env bash
# Side-by-side load test: scamguard against Kamailio 5.6 doing the same job (1M exact numbers,
# 10k prefixes, ~30% blocked, mixed caller formats, P-Asserted-Identity) on the same machine,
# with the shared peer harness (SIPp caller and callee; ../shared/bench/peer/README.md), and the
# harness's no-proxy ceiling (SIPp UAC <-> SIPp UAS, PROXY=0) in the same session (issue 18).
#
#   benches/load.sh                 # build, convert the data, run scamguard, Kamailio, the ceiling
#   DIRECT=0 PCAP=0 STEP_S=10 CONFIRM_S=15 benches/load.sh     # a quick look
#   KAMAILIO=0 benches/load.sh      # scamguard only (compare with KAM_RUN=<an earlier run dir>)
#   KAMAILIO=0 CEILING=1 benches/load.sh   # scamguard and the ceiling
#   FLEET=1 benches/load.sh         # the job that dials numbers, [fleet] off then on (issue 14)
#   TLS=1 benches/load.sh           # the same over TLS: calls/s and CPU per call, both proxies
#
# What it prints: each run's one-line result; benches/peer_compare.py's table of scamguard
# against Kamailio (ratios, issue 18's targets), with max cps as a share of the ceiling measured
# in this session (target >= 50%); with FLEET=1, benches/fleet_compare.py's table instead.
#
# Knobs (defaults in brackets), besides the harness's own (STEP_S, CONFIRM_S, DIRECT [0 here],
# PCAP, START_RATE, EXTRA_ARGS, N_EXACT, N_PREFIXES, N_CALLS, FORCE_GEN, SKIP_INSTALL ...):
#   PEER_DIR   [../shared/bench/peer beside the repo]   WORK [/tmp/peer-bench]
#   SKIP_BUILD [0]   KAMAILIO [1]   SCAMGUARD [1]   KAM_RUN []   SG_RUN []
#   CEILING    [1 when scamguard and Kamailio both run, else 0]  1: also run the harness with
#              PROXY=0 DIRECT=1 (its no-proxy ceiling: the same ramp and confirmation, SIPp UAC
#              straight to a SIPp UAS that plays the verdicts), last, and print each proxy's
#              max cps as a share of it
#   CEIL_RUN   [$WORK/ceiling-<stamp>]  its run folder (give an earlier one with CEILING=0 to
#              compare against it without running it again)
#   LAT_RATES  [500,3000,5880]  fixed latency rates for both proxies (5880 = 0.8 x Kamailio's
#              7,360 cps max), so p99s are compared at the same offered load
#   DECISIONS  [$WORK/scamguard-decisions.jsonl]  decision log target ("stdout" or a file path)
#   SG_UDP_WORKERS [0]  sip.udp_workers (0 = one per CPU)
#   FLEET      [0]  1: no Kamailio; scamguard twice on the job that dials numbers, [fleet] off
#              then on, against one redis-server this script starts on REDIS_PORT [6390]
#              (loopback, no persistence, its own folder, stopped by its PID at the end).
#              The job: the harness run unchanged but for its load UAC, which dials a callee
#              number per call instead of the service "bench" (velocity, wangiri and
#              concurrency count only calls to a number): benches/sipp_callee.sh, passed to
#              the harness as its SIPp (--sipp), swaps in benches/sipp/callee/uac.xml and the
#              harness's calls with a callee each (benches/callee_calls.py), for both runs.
#              Every signal is on and the decision log is on; velocity and wangiri run
#              log-only on this job (benches/peer_lists.py --numbers says why).
#              Redis is snapshotted (benches/redis_snapshot.py) after CONFIG RESETSTAT before
#              the fleet run and after it, keys by family included; benches/fleet_compare.py
#              prints CPU per call on / off (target <= 1.15), max cps both ways, Redis's CPU,
#              its commands per call over the calls the decision log shows screened, and the
#              sizing row of docs/fleet.md (commands, CPU and memory per 1,000 cps)
#   FLEET_RUN  [$WORK/scamguard-fleet-<stamp>]  the run folder of the fleet-on run
#   TLS        [0]  1: the UAC reaches the proxy over SIP over TLS on 127.0.0.1:5061 (one TLS
#              connection, like a trunk; TLS_TRANSPORT=ln for one per call, a handshake each),
#              the UAS stays on UDP: scamguard with tls_listen, then Kamailio with its tls module
#              (benches/kamailio-tls.cfg, the harness's config plus a TLS listener). The UAC is a
#              SIPp built with TLS (benches/sipp_tls.sh, cached under $WORK; SIPP_SRC = a SIPp
#              git repository when GitHub cannot be reached), the UAS Debian's. The certificates
#              are self-signed, made here ($WORK/tls). No pcap latency (the capture reads UDP
#              5060): compare max cps and CPU per call, printed side by side as ratios.
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
BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/scamguard"
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
if [[ "${FLEET:-0}" == 1 ]]; then
  # The job that dials numbers, for both runs (fleet off and on), so that the ratio is fair.
  CFG="$(python3 "$REPO/benches/peer_lists.py" "$DATA" "$WORK/scamguard" "$DECISIONS" --numbers)"
  "$BIN" validate --config "$CFG" >&2
  export SG_CALLEE_CSV="$WORK/calls-callee.csv"
  python3 "$REPO/benches/callee_calls.py" "$DATA" "$SG_CALLEE_CSV"
  SG_EXTRA_ARGS="$EXTRA_ARGS --sipp $REPO/benches/sipp_callee.sh"
else
  SG_EXTRA_ARGS="$EXTRA_ARGS"
fi

stamp="$(date +%Y%m%d-%H%M%S)"
SG_RUN="${SG_RUN:-$WORK/scamguard-$stamp}"
KAM_RUN="${KAM_RUN:-$WORK/kamailio-$stamp}"
FLEET_RUN="${FLEET_RUN:-$WORK/scamguard-fleet-$stamp}"
SG_NAME=scamguard
if [[ "${FLEET:-0}" == 1 ]]; then
  KAMAILIO=0
fi
if [[ -z "${CEILING:-}" ]]; then
  # The ceiling is SIPp over UDP with no proxy: a TLS run has nothing to set beside it.
  if [[ "${SCAMGUARD:-1}" == 1 && "${KAMAILIO:-1}" == 1 && "${TLS:-0}" != 1 ]]; then
    CEILING=1
  else
    CEILING=0
  fi
fi
CEIL_RUN="${CEIL_RUN:-$WORK/ceiling-$stamp}"

# ---------------------------------------------------------------- TLS (TLS=1)
if [[ "${TLS:-0}" == 1 ]]; then
  [[ "${FLEET:-0}" != 1 ]] || { echo "ERROR: TLS=1 and FLEET=1 are separate runs" >&2; exit 1; }
  if [[ ! -e /usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so && "${KAMAILIO:-1}" == 1 ]]; then
    [[ "$(id -u)" == 0 ]] || { echo "ERROR: TLS=1 needs kamailio-tls-modules" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kamailio-tls-modules >&2
  fi
  SIPP_TLS="$("$REPO/benches/sipp_tls.sh" build)"
  echo "TLS UAC: $SIPP_TLS" >&2
  TLSDIR="$WORK/tls"
  mkdir -p "$TLSDIR"
  if [[ ! -s "$TLSDIR/proxy.crt" ]]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=127.0.0.1 \
      -addext "subjectAltName=IP:127.0.0.1" \
      -keyout "$TLSDIR/proxy.key" -out "$TLSDIR/proxy.crt" >/dev/null 2>&1
  fi
  cat > "$TLSDIR/kamailio-tls.cfg" <<TLSCFG
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
private_key = $TLSDIR/proxy.key
certificate = $TLSDIR/proxy.crt

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
TLSCFG
  CFG_TLS="${CFG%.toml}-tls.toml"
  sed "/^listen = \"127.0.0.1:5060\"/a tls_listen = \"127.0.0.1:5061\"\ntls_cert = \"$TLSDIR/proxy.crt\"\ntls_key = \"$TLSDIR/proxy.key\"" \
    "$CFG" > "$CFG_TLS"
  grep -q '^tls_listen' "$CFG_TLS" || { echo "ERROR: no [sip] listen line in $CFG to add TLS to" >&2; exit 1; }
  "$BIN" validate --config "$CFG_TLS" >&2
  CFG="$CFG_TLS"
  export TLS_PORT=5061
  export PCAP=0
  export EXTRA_ARGS="$EXTRA_ARGS --sipp $REPO/benches/sipp_tls.sh"
  SG_EXTRA_ARGS="$EXTRA_ARGS"
  [[ "$SG_RUN" != "$WORK/scamguard-$stamp" ]] || SG_RUN="$WORK/scamguard-tls-$stamp"
  [[ "$KAM_RUN" != "$WORK/kamailio-$stamp" ]] || KAM_RUN="$WORK/kamailio-tls-$stamp"
  SG_NAME=scamguard-tls
  KAM_SHM_MB="${KAM_SHM_MB:-4096}"
  KAM_PKG_MB="${KAM_PKG_MB:-512}"
  KAM_WORKERS="${KAM_WORKERS:-4}"
  KAM_TLS_CMD="kamailio -f $REPO/benches/kamailio-tls.cfg -DD -E -m $KAM_SHM_MB -M $KAM_PKG_MB \
-A 'DBURL=\"sqlite:///{data}/kamailio.sqlite\"' -A 'CTL_SOCK=\"unix:$WORK/kamailio_ctl\"' -A WORKERS=$KAM_WORKERS \
-A 'TLS_CFG=\"$TLSDIR/kamailio-tls.cfg\"'"
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
  RUN="$SG_RUN" PROXY_NAME="$SG_NAME" EXTRA_ARGS="$SG_EXTRA_ARGS" \
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
  python3 "$REPO/benches/redis_snapshot.py" "$REDIS_PORT" > "$FLEET_RUN.redis-before.json"
  RUN="$FLEET_RUN" PROXY_NAME=scamguard-fleet EXTRA_ARGS="$SG_EXTRA_ARGS" \
    PROXY_CMD="sh -c '$BIN run --config $CFG_FLEET; echo scamguard exited with status \$? >&2'" \
    "$PEER_DIR/run-peer.sh" || echo "scamguard fleet run failed (see $FLEET_RUN)" >&2
  wait_gone "$CFG_FLEET"
  python3 "$REPO/benches/redis_snapshot.py" "$REDIS_PORT" --keys > "$FLEET_RUN.redis-after.json"
  echo
  python3 "$REPO/benches/fleet_compare.py" "$SG_RUN" "$FLEET_RUN" "$FLEET_RUN.redis-before.json" \
    "$FLEET_RUN.redis-after.json" "$DECISIONS" || true
fi
if [[ "${KAMAILIO:-1}" == 1 ]]; then
  wait_gone "$CFG"
  echo "== kamailio (run folder $KAM_RUN)" >&2
  if [[ "${TLS:-0}" == 1 ]]; then
    RUN="$KAM_RUN" PROXY_NAME=kamailio-tls PROXY_CMD="$KAM_TLS_CMD" "$PEER_DIR/run-peer.sh" \
      || echo "kamailio run failed (see $KAM_RUN)" >&2
  else
    RUN="$KAM_RUN" PROXY_NAME=kamailio "$PEER_DIR/run-peer.sh" \
      || echo "kamailio run failed (see $KAM_RUN)" >&2
  fi
fi
if [[ "$CEILING" == 1 ]]; then
  wait_gone "$CFG"
  # The harness refuses to start while 5060 is held, and a proxy it stopped may take a moment.
  for _ in $(seq 60); do
    ss -Huln "sport = :5060" 2>/dev/null | grep -q . || break
    sleep 0.5
  done
  # No proxy is started (PROXY=0); the command only satisfies the harness's arguments, and not
  # naming kamailio keeps run-peer.sh from installing it for this run.
  echo "== no-proxy ceiling (run folder $CEIL_RUN)" >&2
  RUN="$CEIL_RUN" PROXY=0 DIRECT=1 PROXY_NAME=ceiling PROXY_CMD=none "$PEER_DIR/run-peer.sh" \
    || echo "ceiling run failed (see $CEIL_RUN)" >&2
fi

# ---------------------------------------------------------------- results
echo
for r in "$SG_RUN" "$KAM_RUN" "$CEIL_RUN"; do
  if [[ -s "$r/result.txt" ]]; then cat "$r/result.txt"; fi
done
ceil_args=()
[[ -s "$CEIL_RUN/summary.json" ]] && ceil_args=(--ceiling "$CEIL_RUN")
if [[ -s "$SG_RUN/summary.json" && -s "$KAM_RUN/summary.json" ]]; then
  echo
  python3 "$REPO/benches/peer_compare.py" "${ceil_args[@]}" "$SG_RUN" "$KAM_RUN" scamguard kamailio
elif [[ -s "$SG_RUN/summary.json" && ${#ceil_args[@]} -gt 0 ]]; then
  echo
  python3 "$REPO/benches/peer_compare.py" "${ceil_args[@]}" "$SG_RUN"
fi
echo
echo "machine: $(nproc) CPUs, $(uname -sr), $(lscpu | sed -n 's/^Model name: *//p')"
