#!/usr/bin/env bash
# SIPp for the peer harness (bench.py --sipp), with the load UAC dialling numbers: runs the
# real sipp with the same arguments, except that the harness's load scenario (…/sipp/uac.xml)
# becomes benches/sipp/callee/uac.xml and its injection file (-inf) becomes $SG_CALLEE_CSV
# (benches/callee_calls.py: the harness's calls with a callee number each). The UAS, the CANCEL
# check and everything else run as the harness starts them. exec keeps the PID, by which the
# harness measures and stops SIPp.
#
#   SG_CALLEE_CSV=/tmp/peer-bench/calls-callee.csv EXTRA_ARGS="--sipp benches/sipp_callee.sh" \
#     ../shared/bench/peer/run-peer.sh        # benches/load.sh FLEET=1 does this for both runs
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SCENARIO="$HERE/sipp/callee/uac.xml"
[[ -s "${SG_CALLEE_CSV:-}" ]] || {
  echo "sipp_callee.sh: SG_CALLEE_CSV must name the calls with callees (benches/callee_calls.py)" >&2
  exit 2
}
args=()
load=0
prev=""
for a in "$@"; do
  if [[ "$prev" == -sf && "$(basename "$a")" == uac.xml && "$a" != "$SCENARIO" ]]; then
    a="$SCENARIO"
    load=1
  fi
  args+=("$a")
  prev="$a"
done
# Only the load UAC reads an injection file; it is swapped only with the scenario that reads
# its sixth field.
if [[ "$load" == 1 ]]; then
  for i in "${!args[@]}"; do
    [[ "${args[$i]}" == -inf ]] && args[i+1]="$SG_CALLEE_CSV"
  done
fi
exec "${SG_SIPP:-sipp}" "${args[@]}"
