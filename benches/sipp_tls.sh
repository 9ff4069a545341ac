#!/usr/bin/env bash
# SIPp with TLS for the TLS load test (benches/load.sh TLS=1). Debian's sip-tester is built
# without TLS, so this builds SIPp from source once (cmake -DUSE_SSL=1) and caches it under
# $WORK/sipp-tls-<version>/; the build dependencies come from apt.
#
#   benches/sipp_tls.sh build        # prints the path of the TLS-capable sipp (builds it if need be)
#   benches/sipp_tls.sh [sipp args]  # the harness's --sipp: see below
#
# As the harness's `--sipp` it stands in for every SIPp the harness starts: a UAC (its scenario
# is uac*.xml) is run by the TLS build over one TLS connection (-t l1, like a trunk) to
# 127.0.0.1:$TLS_PORT instead of the proxy's UDP port; everything else (the UAS, the probe) is
# the Debian sipp, unchanged, so the proxy's far side is the same UDP as in the plain run.
#
# Source: $SIPP_SRC when set (a SIPp git repository: its tag v$SIPP_VERSION is built, or a source
# folder), else the release tarball from GitHub.
#
# Knobs: WORK [/tmp/peer-bench]  SIPP_VERSION [3.7.7]  SIPP_SRC []  TLS_PORT [5061]
#        TLS_TRANSPORT [l1; ln opens one TLS connection per call, a handshake each]
# Not Debian's 3.6.1: built with TLS against OpenSSL 3, its client never finishes a handshake
# ("Problem EAGAIN on socket"); 3.7.7's does. The UAS (UDP) stays Debian's.
set -euo pipefail

WORK="${WORK:-/tmp/peer-bench}"
SIPP_VERSION="${SIPP_VERSION:-3.7.7}"
DIR="$WORK/sipp-tls-$SIPP_VERSION"
BIN="$DIR/build/sipp"

# Whether $BIN is a SIPp with TLS (its version line says so; `sipp -v` exits non-zero).
has_tls() {
  [[ -x "$BIN" ]] && [[ "$("$BIN" -v 2>&1 || true)" == *TLS* ]]
}

# The certificate SIPp shows (it wants one even as a client; the proxies do not ask for it).
client_cert() {
  [[ -s "$DIR/client.crt" ]] || openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=sipp-uac \
    -days 3650 -keyout "$DIR/client.key" -out "$DIR/client.crt" >/dev/null 2>&1
}

build() {
  if has_tls; then
    client_cert
    echo "$BIN"
    return
  fi
  local need=()
  command -v cmake >/dev/null 2>&1 || need+=(cmake)
  command -v g++ >/dev/null 2>&1 || need+=(g++)
  dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev)
  dpkg -s libncurses-dev >/dev/null 2>&1 || need+=(libncurses-dev)
  if [[ ${#need[@]} -gt 0 ]]; then
    [[ "$(id -u)" == 0 ]] || { echo "ERROR: SIPp's build needs ${need[*]} (apt-get install)" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR/src"
  if [[ -n "${SIPP_SRC:-}" && -d "$SIPP_SRC" ]] \
      && git --git-dir="$SIPP_SRC" rev-parse --verify -q "v$SIPP_VERSION" >/dev/null 2>&1; then
    git --git-dir="$SIPP_SRC" archive "v$SIPP_VERSION" | tar -x -C "$DIR/src"
  elif [[ -n "${SIPP_SRC:-}" && -d "$SIPP_SRC/.git" ]]; then
    git -C "$SIPP_SRC" archive "v$SIPP_VERSION" | tar -x -C "$DIR/src"
  elif [[ -n "${SIPP_SRC:-}" && -f "$SIPP_SRC/CMakeLists.txt" ]]; then
    cp -a "$SIPP_SRC/." "$DIR/src"
  else
    curl -fsSL "https://github.com/SIPp/sipp/releases/download/v$SIPP_VERSION/sipp-$SIPP_VERSION.tar.gz" \
      | tar -xz -C "$DIR/src" --strip-components=1 || {
        echo "ERROR: cannot download SIPp $SIPP_VERSION; set SIPP_SRC to a SIPp git repository or source folder" >&2
        exit 1
      }
  fi
  # A source without git history has no version to describe (3.7's include/version.h is a stub
  # that refuses to build): the build folder, first on the include path, gets the one we built.
  mkdir -p "$DIR/build"
  [[ -n "${SIPP_SRC:-}" ]] \
    && printf '#define SIPP_VERSION "v%s"\n#define VERSION SIPP_VERSION\n' "$SIPP_VERSION" \
      > "$DIR/build/version.h"
  mkdir -p "$DIR/build"
  (cd "$DIR/build" && cmake -DUSE_SSL=1 -DUSE_GSL=0 -DUSE_PCAP=0 -DUSE_SCTP=0 \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo ../src >"$DIR/cmake.log" 2>&1 \
    && nice make -j"$(nproc)" sipp >"$DIR/make.log" 2>&1) || {
      echo "ERROR: SIPp build failed; see $DIR/cmake.log and $DIR/make.log" >&2
      exit 1
    }
  has_tls || { echo "ERROR: $BIN has no TLS" >&2; exit 1; }
  client_cert
  echo "$BIN"
}

if [[ "${1:-}" == build ]]; then
  build
  exit 0
fi

# ---------------------------------------------------------------- the harness's --sipp
args=("$@")
uac=0
for a in "${args[@]}"; do
  [[ "$a" == */uac*.xml ]] && uac=1
done
if [[ $uac == 0 ]]; then
  exec sipp "${args[@]}"
fi
[[ -x "$BIN" ]] || { echo "ERROR: no TLS SIPp at $BIN: run benches/sipp_tls.sh build" >&2; exit 1; }
# The remote is the first argument (host:port of the proxy's UDP side): TLS goes to TLS_PORT.
if [[ "${args[0]}" == 127.0.0.1:* ]]; then
  args[0]="127.0.0.1:${TLS_PORT:-5061}"
fi
exec "$BIN" "${args[@]}" -t "${TLS_TRANSPORT:-l1}" \
  -tls_cert "$DIR/client.crt" -tls_key "$DIR/client.key"
