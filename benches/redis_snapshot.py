#!/usr/bin/env python3
"""What one Redis did and holds, as JSON, for benches/fleet_compare.py (FLEET=1 benches/load.sh).

Usage: redis_snapshot.py PORT [--keys]

Prints INFO's commandstats (calls per command, the commands scripts run included), its CPU
(used_cpu_user + used_cpu_sys, seconds), used_memory and the key count. With --keys, also the
fleet's keys by family: every key is scanned, the family read from its hash tag
(`<prefix>{<family>:<key>}...`, docs/fleet.md), and up to SAMPLE keys of each family are
measured with MEMORY USAGE and PTTL (bytes, and the expiry the agent set at its last write).
Speaks RESP itself over loopback, so it needs nothing but Python.
"""
import json
import re
import socket
import sys

SAMPLE = 400


class Redis:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.f = self.s.makefile("rb")

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.s.sendall(b"".join(out))

    def read(self):
        line = self.f.readline()
        if not line:
            raise SystemExit("redis_snapshot: the connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise SystemExit("redis_snapshot: Redis answered %s" % rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise SystemExit("redis_snapshot: unexpected reply %r" % line)

    def call(self, *args):
        self.send(*args)
        return self.read()


def info(r):
    out = {"commandstats": {}}
    for line in r.call("INFO", "everything").splitlines():
        m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
        if m:
            out["commandstats"][m.group(1)] = int(m.group(2))
            continue
        k, _, v = line.partition(":")
        if k in ("used_memory", "used_memory_dataset", "used_cpu_sys", "used_cpu_user",
                 "total_commands_processed"):
            out[k] = float(v)
    out["cpu_s"] = out.pop("used_cpu_sys", 0.0) + out.pop("used_cpu_user", 0.0)
    out["keys"] = r.call("DBSIZE")
    return out


def families(r):
    fams = {}
    cursor = "0"
    while True:
        cursor, keys = r.call("SCAN", cursor, "COUNT", 1000)
        for k in keys:
            m = re.search(r"\{([^:}]+)", k)
            fam = m.group(1) if m else "(no hash tag)"
            f = fams.setdefault(fam, {"keys": 0, "sample": []})
            f["keys"] += 1
            if len(f["sample"]) < SAMPLE:
                f["sample"].append(k)
        if cursor == "0":
            break
    out = {}
    for fam, f in sorted(fams.items()):
        for k in f["sample"]:  # pipelined: two commands per key, answers read in order
            r.send("MEMORY", "USAGE", k, "SAMPLES", 0)
            r.send("PTTL", k)
        sizes, ttls = [], []
        for _ in f["sample"]:
            size, ttl = r.read(), r.read()
            if size is not None:
                sizes.append(size)
            if isinstance(ttl, int) and ttl > 0:
                ttls.append(ttl)
        out[fam] = {"keys": f["keys"], "sampled": len(sizes),
                    "bytes_per_key": (sum(sizes) / len(sizes)) if sizes else None,
                    "max_pttl_ms": max(ttls) if ttls else None}
    return out


def main():
    if len(sys.argv) not in (2, 3) or (len(sys.argv) == 3 and sys.argv[2] != "--keys"):
        raise SystemExit(__doc__)
    r = Redis(int(sys.argv[1]))
    out = info(r)
    if len(sys.argv) == 3:
        out["families"] = families(r)
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
