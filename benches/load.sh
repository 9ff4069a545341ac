#!/usr/bin/env bash
# Side-by-side load test: scamguard against Kamailio 5.6 doing the same job (1M exact numbers,
# 10k prefixes, ~30% blocked, mixed caller formats, P-Asserted-Identity) on the same machine,
# with the shared peer harness (SIPp caller and callee; ../shared/bench/peer/README.md).
#
#   benches/load.sh                 # build, convert the data, run scamguard, then Kamailio
#   DIRECT=0 PCAP=0 STEP_S=10 CONFIRM_S=15 benches/load.sh     # a quick look
#   KAMAILIO=0 benches/load.sh      # scamguard only (compare with KAM_RUN=<an earlier run dir>)
#   FLEET=1 benches/load.sh         # scamguard with [fleet] off, then on (issue 14), no Kamailio
#   TLS=1 benches/load.sh           # the same over TLS: calls/s and CPU per call, both proxies
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
SG_NAME=scamguard
if [[ "${FLEET:-0}" == 1 ]]; then
  KAMAILIO=0
fi

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
  RUN="$SG_RUN" PROXY_NAME="$SG_NAME" \
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
  if [[ "${TLS:-0}" == 1 ]]; then
    RUN="$KAM_RUN" PROXY_NAME=kamailio-tls PROXY_CMD="$KAM_TLS_CMD" "$PEER_DIR/run-peer.sh" \
      || echo "kamailio run failed (see $KAM_RUN)" >&2
  else
    RUN="$KAM_RUN" PROXY_NAME=kamailio "$PEER_DIR/run-peer.sh" \
      || echo "kamailio run failed (see $KAM_RUN)" >&2
  fi
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
