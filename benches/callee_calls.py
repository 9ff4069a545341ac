#!/usr/bin/env python3
"""The peer harness's calls with a callee number each, for a job where velocity, wangiri and
concurrency count (they count only calls to a number; the harness dials the service "bench").

Usage: callee_calls.py DATA_DIR OUT_CSV

Reads DATA_DIR/calls.csv (SIPp injection file, ';'-separated: From user, PAI header line,
expected 0/1, verdict word, normalised caller) and writes OUT_CSV with the same rows in the
same order and one field more, [field5]: the callee, a Berlin number (+4930 and 8 digits)
drawn from a hash of the normalised caller, so each caller always rings the same callee (as a
subscriber's regular callers do) and a replay of the file repeats its (caller, callee) pairs.
No callee is a caller's neighbour (all digits equal but the last four): that would add the
neighbour-spoofing signal to calls the harness expects to pass. Rewritten only when the source
changed (OUT_CSV.src names the source and its time), so repeated runs are cheap.
"""
import hashlib
import os
import sys


def callee_for(caller, salt, taken):
    """+4930 and 8 digits from the caller's hash; a different salt while it is a neighbour."""
    while True:
        h = hashlib.sha1(("%d:%s" % (salt, caller)).encode()).digest()
        digits = "4930%08d" % (int.from_bytes(h[:8], "big") % 100000000)
        if digits[:-4] not in taken:
            return "+" + digits
        salt += 1


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src = os.path.abspath(os.path.join(sys.argv[1], "calls.csv"))
    dst = sys.argv[2]
    stamp = "%s %d %d\n" % (src, os.stat(src).st_mtime_ns, os.stat(src).st_size)
    try:
        with open(dst + ".src") as f:
            if f.read() == stamp and os.path.exists(dst):
                return
    except OSError:
        pass
    with open(src) as f:
        lines = f.read().splitlines()
    if not lines or lines[0] not in ("SEQUENTIAL", "RANDOM", "USER"):
        raise SystemExit("%s: line 1: expected a SIPp order line (SEQUENTIAL), got %r"
                         % (src, lines[0] if lines else ""))
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split(";")
        if len(fields) != 5 or not fields[4].isdigit():
            raise SystemExit("%s: line %d: expected 5 ';'-separated fields ending in the "
                             "normalised caller's digits, got %r" % (src, n, line))
        rows.append(fields)
    # Twelve-digit callers of the callee's range whose first eight digits a callee must avoid.
    taken = {f[4][:-4] for f in rows if len(f[4]) == 12 and f[4].startswith("4930")}
    with open(dst + ".tmp", "w") as o:
        o.write(lines[0] + "\n")
        for f in rows:
            o.write(";".join(f + [callee_for(f[4], 0, taken)]) + "\n")
    os.replace(dst + ".tmp", dst)
    with open(dst + ".src", "w") as f:
        f.write(stamp)
    sys.stderr.write("callee_calls: %d calls with a callee number -> %s\n" % (len(rows), dst))


if __name__ == "__main__":
    main()
