#!/usr/bin/env python3
"""scamguard with [fleet] on against off (issue 14), from two peer-harness runs and Redis's
INFO commandstats taken after the fleet run (the stats were reset before it).

Usage: fleet_compare.py OFF_RUN_DIR ON_RUN_DIR COMMANDSTATS CALLS [MEMORY_FILE KEYS_FILE]

  CALLS: calls the fleet run screened (its decision log's lines).

Prints a markdown table: max cps both ways, CPU per call at max and at each ramp rate both runs
passed, each as on / off (target <= 1.15); then Redis commands per call, in all and per
command (commands run inside the fleet's scripts are counted by Redis too, and shown apart),
and what Redis held at the end.
"""
import json
import os
import re
import sys


def load(run):
    try:
        with open(os.path.join(run, "summary.json")) as f:
            return json.load(f)
    except OSError:
        return {}


def ratio(a, b):
    try:
        return "%.2f" % (float(a) / float(b))
    except (TypeError, ValueError, ZeroDivisionError):
        return "-"


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def steps(s):
    """CPU us per call of each passing proxy ramp step, by rate."""
    out = {}
    for st in s.get("steps", []):
        if st.get("tag") == "proxy" and st.get("pass") and st.get("proxy_cpu_us_per_call"):
            out.setdefault(st["target"], st["proxy_cpu_us_per_call"])
    return out


# Commands a client sends; everything else in commandstats ran inside a script.
CLIENT = {"evalsha", "eval", "script", "zadd", "zremrangebyscore", "pexpire", "zcard",
          "zrangebyscore", "set", "xread", "hset", "hgetall", "hget", "zscore", "multi",
          "exec", "get", "exists", "xinfo", "xrevrange", "smembers", "hscan", "hdel",
          "ping", "hello", "client", "info", "config", "select"}


def commandstats(path):
    out = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"cmdstat_([a-z|_-]+):calls=(\d+)", line.strip())
            if m:
                out[m.group(1)] = int(m.group(2))
    return out


def main():
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    off, on = load(sys.argv[1]), load(sys.argv[2])
    stats = commandstats(sys.argv[3])
    calls = int(sys.argv[4])
    po, pn = off.get("proxy") or {}, on.get("proxy") or {}
    co, cn = po.get("confirm") or {}, pn.get("confirm") or {}
    print("| metric | fleet off | fleet on | on / off | target |")
    print("|---|---:|---:|---:|---|")
    print("| max sustained cps | %s | %s | %s | |" % (
        fmt(po.get("max_cps")), fmt(pn.get("max_cps")), ratio(pn.get("max_cps"), po.get("max_cps"))))
    print("| CPU us per call at max | %s | %s | %s | <= 1.15 |" % (
        fmt(co.get("proxy_cpu_us_per_call")), fmt(cn.get("proxy_cpu_us_per_call")),
        ratio(cn.get("proxy_cpu_us_per_call"), co.get("proxy_cpu_us_per_call"))))
    so, sn = steps(off), steps(on)
    for rate in sorted(set(so) & set(sn)):
        print("| CPU us per call @%d cps | %s | %s | %s | <= 1.15 |" % (
            rate, fmt(so[rate]), fmt(sn[rate]), ratio(sn[rate], so[rate])))
    print()
    if calls <= 0:
        print("no calls screened in the fleet run: no Redis commands per call")
        return
    # Subcommands are named "script|load", "config|resetstat": judged by their command.
    sent = {k: v for k, v in stats.items() if k.split("|")[0] in CLIENT}
    inner = {k: v for k, v in stats.items() if k.split("|")[0] not in CLIENT}
    print("Redis commands per call, over %d calls screened with [fleet] on:" % calls)
    print()
    print("| commands | total | per call |")
    print("|---|---:|---:|")
    print("| sent by the agent | %d | %.3f |" % (sum(sent.values()), sum(sent.values()) / calls))
    for k, v in sorted(sent.items(), key=lambda kv: -kv[1]):
        print("| &nbsp; %s | %d | %.3f |" % (k.upper(), v, v / calls))
    print("| run inside its scripts | %d | %.3f |" % (sum(inner.values()), sum(inner.values()) / calls))
    for k, v in sorted(inner.items(), key=lambda kv: -kv[1]):
        print("| &nbsp; %s | %d | %.3f |" % (k.upper(), v, v / calls))
    if len(sys.argv) > 6:
        for label, path in (("Redis memory at the end", sys.argv[5]), ("keys at the end", sys.argv[6])):
            try:
                with open(path) as f:
                    print("\n%s: %s" % (label, " ".join(f.read().split())))
            except OSError:
                pass


if __name__ == "__main__":
    main()
