#!/usr/bin/env bash
# Reload under load (issues 3 and 7): SIPp calls at a fixed rate through scamguard while its
# 1,000,000-entry list file is replaced several times (atomic rename of a changed version, picked
# up by the directory watcher), and reloads are also triggered by SIGHUP and POST /v1/reload.
# Every call must succeed and every reload must happen; the script exits non-zero otherwise.
#
#   benches/reload_load.sh                       # 1M exact + 10k prefixes, 1000 cps for 60 s
#   N=10000000 benches/reload_load.sh            # the full 10M reload under load
#   N=100000 RATE=200 DURATION=30 nice -n 19 benches/reload_load.sh     # a quick proof
#
# Data and call mix are the shared peer harness's (../shared/bench/peer: gen_data.py, sipp/uac.xml,
# sipp/uas.xml), converted by benches/peer_lists.py exactly as benches/load.sh does; a wrong
# verdict fails the call in uac.xml, so "0 failed" also means every verdict stayed right across
# the reloads.
#
# Each changed version is the original exact list plus EXTRA (1000) entries in the +882999...
# range, which no call of the data set uses, different in every version: the entry count in
# /metrics then shows that the new version, and not the old one, is in force.
#
# Knobs (defaults in brackets):
#   N [1000000] exact entries   N_PREFIXES [10000]   N_CALLS [100000] rows of calls.csv
#   RATE [1000] calls/s   DURATION [60] s   RENAMES [3] file replacements (plus one SIGHUP and
#   one POST /v1/reload, spread evenly over the run)   EXTRA [1000]   SETTLE_S [120] longest wait
#   for one reload to show before it counts as missing
#   WORK [/tmp/reload-load]   PEER_DIR [../shared/bench/peer beside the repo]   SKIP_BUILD [0]
#   SIGNALS_OFF []: signals switched off, space-separated (not brands: peer_lists.py already
#   writes that section). All are on by default, as in load.sh; peer_lists.py runs plausibility
#   log-only, because the harness's random numbers fall in ranges it scores as unallocated.
#   SIP_PORT [5260] UAS_PORT [5270] UAC_PORT [5280] API_PORT [8280]: not load.sh's ports, so both
#   can run on one machine (not at once if the figures matter)
#
# Prints: calls total/ok/failed, retransmissions, reloads seen (scamguard_list_reloads_total and
# versions published), each trigger's time to take effect, reload durations (the agent's
# `took_ms`, from reading the files to publishing the rules), start-up load time, peak RSS.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PEER_DIR:-}" ]]; then
  for d in "$REPO/../shared/bench/peer" "$REPO/../../shared/bench/peer"; do
    [[ -x "$d/run-peer.sh" ]] && PEER_DIR="$d" && break
  done
fi
[[ -n "${PEER_DIR:-}" && -f "$PEER_DIR/gen_data.py" ]] || {
  echo "ERROR: peer harness not found; set PEER_DIR to the folder holding gen_data.py" >&2
  exit 1
}
PEER_DIR="$(cd "$PEER_DIR" && pwd)"

N="${N:-1000000}"
N_PREFIXES="${N_PREFIXES:-10000}"
N_CALLS="${N_CALLS:-100000}"
RATE="${RATE:-1000}"
DURATION="${DURATION:-60}"
RENAMES="${RENAMES:-3}"
EXTRA="${EXTRA:-1000}"
SETTLE_S="${SETTLE_S:-120}"
WORK="${WORK:-/tmp/reload-load}"
SIP_PORT="${SIP_PORT:-5260}"
UAS_PORT="${UAS_PORT:-5270}"
UAC_PORT="${UAC_PORT:-5280}"
API_PORT="${API_PORT:-8280}"
DATA="$WORK/data-$N"
SG="$WORK/sg-$N"
RUN="$WORK/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$WORK" "$RUN/lists" "$RUN/staging" "$RUN/store"
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -f "$RUN"/staging/*.csv
}
trap cleanup EXIT

# ---------------------------------------------------------------- build and data
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
  (cd "$REPO" && cargo build --release --bin scamguard)
fi
BIN="$REPO/target/release/scamguard"
[[ -x "$BIN" ]] || { echo "ERROR: $BIN missing" >&2; exit 1; }

if [[ ! -s "$DATA/stats.txt" ]]; then
  log "generating $N exact numbers, $N_PREFIXES prefixes, $N_CALLS calls in $DATA"
  python3 "$PEER_DIR/gen_data.py" --out "$DATA" --exact "$N" --prefixes "$N_PREFIXES" \
    --calls "$N_CALLS"
fi
CFG0="$(python3 "$REPO/benches/peer_lists.py" "$DATA" "$SG" "$RUN/decisions.jsonl")"
EXACT="$SG/lists/bench-exact.csv"

# This run's own lists directory: hard links to the converted files, so replacing a file here
# leaves the converted originals (and the next run) untouched.
ln -f "$EXACT" "$SG/lists/bench-prefixes.csv" "$RUN/lists/" 2>/dev/null \
  || cp "$EXACT" "$SG/lists/bench-prefixes.csv" "$RUN/lists/"
TOKEN="reload-load-$(date +%s%N)"
echo "bench admin $TOKEN" > "$RUN/tokens"
chmod 600 "$RUN/tokens"
CFG="$RUN/scamguard.toml"
{
  cat "$CFG0"
  printf '\n[api]\nlisten = "127.0.0.1:%s"\ntokens_file = "%s"\n' "$API_PORT" "$RUN/tokens"
  for s in ${SIGNALS_OFF:-}; do printf '\n[signals.%s]\nenabled = false\n' "$s"; done
} > "$CFG"

base_entries=$(( $(grep -c '^+' "$EXACT") + $(grep -c '^+' "$SG/lists/bench-prefixes.csv") ))
# The changed versions, written before the run so that writing hundreds of MB does not compete
# with the calls; version i holds EXTRA entries of its own.
for i in $(seq 1 "$RENAMES"); do
  {
    cat "$EXACT"
    python3 - "$i" "$EXTRA" <<'EOF'
import sys
i, extra = int(sys.argv[1]), int(sys.argv[2])
for j in range(extra):
    print("+882999%02d%05d,block,scam,reload round %d" % (i % 100, j, i))
EOF
  } > "$RUN/staging/v$i.csv"
done
log "run folder $RUN; $base_entries entries; $RENAMES changed versions staged"

# ---------------------------------------------------------------- scamguard
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
t_start=$(date +%s.%N)
RUST_LOG="warn,scamguard::lists=info" "$BIN" run --config "$CFG" --lists "$RUN/lists" \
  --data "$RUN/store" --listen "127.0.0.1:$SIP_PORT" --next-hop "127.0.0.1:$UAS_PORT" \
  --api "127.0.0.1:$API_PORT" 2> "$RUN/scamguard.log" &
SG_PID=$!
PIDS+=("$SG_PID")
API="http://127.0.0.1:$API_PORT"
until curl -sf "$API/ready" > /dev/null 2>&1; do
  kill -0 "$SG_PID" 2>/dev/null || { log "scamguard exited; see $RUN/scamguard.log"; exit 1; }
  sleep 0.1
done
t_ready=$(date +%s.%N)
metric() { curl -sf "$API/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
log "scamguard ready in $(python3 -c "print(round($t_ready - $t_start, 2))") s (pid $SG_PID)"

# ---------------------------------------------------------------- SIPp
UAS="$(command -v sipp)"
"$UAS" -sf "$PEER_DIR/sipp/uas.xml" -i 127.0.0.1 -p "$UAS_PORT" -nostdin \
  -trace_stat -stf "$RUN/uas_stat.csv" -fd 1 -recv_timeout 20000 -max_socket 1000 -l 15000 \
  -buff_size 4194304 -trace_err -error_file "$RUN/uas_errors.log" > "$RUN/uas.out" 2>&1 &
PIDS+=("$!")
sleep 0.7
CALLS=$(( RATE * DURATION ))
reloads0="$(metric scamguard_list_reloads_total)"
version0="$(metric scamguard_list_version)"
log "UAC: $CALLS calls at $RATE cps"
(cd "$RUN" && exec sipp "127.0.0.1:$SIP_PORT" -sf "$PEER_DIR/sipp/uac.xml" \
  -inf "$DATA/calls.csv" -i 127.0.0.1 -p "$UAC_PORT" -s bench -r "$RATE" -m "$CALLS" -d 0 \
  -l 15000 -max_socket 1000 -buff_size 4194304 -recv_timeout 10000 \
  -timeout $(( DURATION * 2 + 30 )) -timeout_error -nostdin -trace_stat -stf "$RUN/uac_stat.csv" \
  -fd 1 -trace_err -error_file "$RUN/uac_errors.log") > "$RUN/uac.out" 2>&1 &
UAC_PID=$!
PIDS+=("$UAC_PID")
t_calls=$(date +%s.%N)

# ---------------------------------------------------------------- reload triggers
# Renames first and last; the signal and the API in between.
TRIGGERS=()
for i in $(seq 1 "$RENAMES"); do
  TRIGGERS+=("rename:$i")
  if (( i == 1 )); then TRIGGERS+=("sighup"); fi
  if (( i == 2 )); then TRIGGERS+=("api"); fi
done
if (( RENAMES < 2 )); then TRIGGERS+=("api"); fi
if (( RENAMES < 1 )); then TRIGGERS+=("sighup"); fi
spacing=$(python3 -c "print($DURATION / (${#TRIGGERS[@]} + 1))")
missing=0
expect_entries="$base_entries"
: > "$RUN/triggers.txt"
for k in "${!TRIGGERS[@]}"; do
  trig="${TRIGGERS[$k]}"
  at=$(python3 -c "print($t_calls + ($k + 1) * $spacing)")
  now=$(date +%s.%N)
  sleep "$(python3 -c "print(max(0.0, $at - $now))")"
  v_before="$(metric scamguard_list_version)"
  t0=$(date +%s.%N)
  case "$trig" in
    rename:*)
      i="${trig#rename:}"
      mv "$RUN/staging/v$i.csv" "$RUN/lists/bench-exact.csv"   # rename(2): atomic
      expect_entries=$(( base_entries + EXTRA ))
      ;;
    sighup) kill -HUP "$SG_PID" ;;
    api)
      code=$(curl -s -o "$RUN/api_reload.json" -w '%{http_code}' -X POST \
        -H "Authorization: Bearer $TOKEN" "$API/v1/reload")
      [[ "$code" == 200 ]] || { log "POST /v1/reload answered $code"; missing=$((missing + 1)); }
      ;;
  esac
  # Seen when a newer version than the one before the trigger is published, holding the
  # expected entry count (after a rename: the original entries plus EXTRA). Which round's
  # entries are in force is checked once at the end, through /v1/check.
  seen=""
  while :; do
    v="$(metric scamguard_list_version || echo 0)"
    e="$(metric scamguard_list_entries || echo 0)"
    if [[ -n "$v" && "$v" -gt "$v_before" && "$e" == "$expect_entries" ]]; then
      seen=$(python3 -c "print(round($(date +%s.%N) - $t0, 3))")
      break
    fi
    if python3 -c "import sys; sys.exit(0 if $(date +%s.%N) - $t0 > $SETTLE_S else 1)"; then
      break
    fi
    sleep 0.05
  done
  if [[ -n "$seen" ]]; then
    log "$trig: new version in force after ${seen} s (version $v, $e entries)"
    echo "$trig $seen" >> "$RUN/triggers.txt"
  else
    log "$trig: NO new version within ${SETTLE_S} s"
    echo "$trig missing" >> "$RUN/triggers.txt"
    missing=$((missing + 1))
  fi
done

# For a rename, check that the version in force is the renamed one: its round's entries match.
last_round="$RENAMES"
probe="+882999$(printf '%02d' $((last_round % 100)))00000"
hit=$(curl -sf -H "Authorization: Bearer $TOKEN" \
  "$API/v1/check?caller=$(python3 -c "import urllib.parse,sys; print(urllib.parse.quote(sys.argv[1]))" "$probe")" || true)
if [[ "$RENAMES" -gt 0 ]] && ! grep -q "reload round $last_round" <<< "$hit"; then
  log "the last renamed version is not the one in force: $probe -> $hit"
  missing=$((missing + 1))
fi

uac_rc=0
wait "$UAC_PID" || uac_rc=$?
sleep 1
reloads1="$(metric scamguard_list_reloads_total)"
version1="$(metric scamguard_list_version)"
peak_rss_kb=$(awk '/^VmHWM/ { print $2 }' "/proc/$SG_PID/status")
rss_kb=$(awk '/^VmRSS/ { print $2 }' "/proc/$SG_PID/status")

# ---------------------------------------------------------------- report
python3 - "$RUN" "$CALLS" "$uac_rc" "$reloads0" "$reloads1" "$version0" "$version1" \
  "$peak_rss_kb" "$rss_kb" "${#TRIGGERS[@]}" "$missing" "$N" "$RATE" "$DURATION" \
  "$(python3 -c "print(round($t_ready - $t_start, 2))")" <<'EOF'
import os, re, statistics, sys
(run, calls, uac_rc, r0, r1, v0, v1, hwm, rss, ntrig, missing, n, rate, dur, ready) = sys.argv[1:]
calls, ntrig, missing = int(calls), int(ntrig), int(missing)

def stat(path):
    try:
        rows = [l.rstrip("\n").split(";") for l in open(path) if l.strip()]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    return dict(zip(rows[0], rows[-1]))

st = stat(os.path.join(run, "uac_stat.csv"))
ok = int(st["SuccessfulCall(C)"]) if st else 0
failed = int(st["FailedCall(C)"]) if st else calls
retrans = int(st["Retransmissions(C)"]) if st else 0
unfinished = max(calls - ok - failed, 0)
log_text = re.sub(r"\x1b\[[0-9;]*m", "", open(os.path.join(run, "scamguard.log")).read())
took = [int(x) for x in re.findall(r"took_ms=(\d+)", log_text)]
startup, reloads = (took[0], took[1:]) if took else (None, [])
trig = [l.split() for l in open(os.path.join(run, "triggers.txt"))]
print()
print("reload under load: %s exact entries, %s cps for %s s (run folder %s)" % (n, rate, dur, run))
print("  calls: %d total, %d ok, %d failed, %d unfinished, %d retransmissions (SIPp rc %s)"
      % (calls, ok, failed, unfinished, retrans, uac_rc))
print("  reloads: %d triggered, %d counted (scamguard_list_reloads_total %s -> %s), "
      "%d versions published" % (ntrig, int(r1) - int(r0), r0, r1, int(v1) - int(v0)))
for t in trig:
    print("    %-9s %s" % (t[0], "in force after %s s" % t[1] if t[1] != "missing" else "MISSING"))
if reloads:
    print("  reload durations (took_ms, read + parse + build + publish): n=%d min %d median %d max %d ms"
          % (len(reloads), min(reloads), statistics.median(reloads), max(reloads)))
print("  start-up: ready after %s s (list load took_ms %s)" % (ready, startup))
print("  memory: peak RSS %.1f MB, RSS at end %.1f MB" % (int(hwm) / 1024, int(rss) / 1024))
bad = []
if failed or unfinished or int(uac_rc) != 0:
    bad.append("calls failed")
if missing or int(r1) - int(r0) < ntrig:
    bad.append("a reload did not happen")
print("  RESULT: %s" % ("PASS" if not bad else "FAIL (" + ", ".join(bad) + ")"))
sys.exit(1 if bad else 0)
EOF
