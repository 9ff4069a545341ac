#!/usr/bin/env python3
"""scamguard with [fleet] on against off (issue 14), from two peer-harness runs of the job that
dials numbers, Redis's state before and after the fleet run, and the fleet run's decision log.

Usage: fleet_compare.py OFF_RUN_DIR ON_RUN_DIR REDIS_BEFORE REDIS_AFTER DECISIONS

  REDIS_BEFORE, REDIS_AFTER: benches/redis_snapshot.py's JSON, taken after CONFIG RESETSTAT
  before the fleet run, and after it (with --keys); DECISIONS: the fleet run's decision log.

Prints markdown: max cps both ways and CPU per call (the agent's process tree, as the harness
measures it) at max and at each ramp rate both runs passed, each as on / off (target <= 1.15);
Redis's own CPU per call; Redis commands per call over the calls the decision log shows
screened (the count scripts the agent sends, and every command Redis ran, those inside the
scripts included, by command); then the sizing row: Redis commands, CPU and memory per 1,000
calls a second.

Memory per 1,000 cps is the worst case of docs/fleet.md, every call from a caller of its own:
for each key family (vc caller, vp prefix, wn wangiri number, wr range ...), the bytes of a key
(MEMORY USAGE, sampled) x the family's keys per distinct caller seen within the keys' lifetime
before the run's end (the longest PTTL left, which the agent set at the key's last write) x
1,000 x that lifetime. The harness replays 99,480 callers, so what Redis held at the end
saturates above about 330 cps and is not itself a figure per rate.
"""
import datetime
import json
import os
import re
import sys

# The same cells as the side-by-side table (this folder is on the path when run as a script).
from peer_compare import fmt, ratio

# Commands of this script's own tooling (benches/load.sh, redis_snapshot.py), not the agent's.
TOOLING = {"info", "dbsize", "config|resetstat", "scan", "memory|usage", "pttl", "ping"}
SCRIPTS = {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"}


def load(run):
    try:
        with open(os.path.join(run, "summary.json")) as f:
            return json.load(f)
    except OSError:
        return {}


def steps(s):
    """CPU us per call of each passing proxy ramp step, by rate."""
    out = {}
    for st in s.get("steps", []):
        if st.get("tag") == "proxy" and st.get("pass") and st.get("proxy_cpu_us_per_call"):
            out.setdefault(st["target"], st["proxy_cpu_us_per_call"])
    return out


def max_cps(s):
    p = s.get("proxy") or {}
    if "max_cps" in p:
        return p["max_cps"]
    passed = [st["target"] for st in s.get("steps", [])
              if st.get("tag") in ("proxy", "proxy-confirm") and st.get("pass")]
    return ("%s (highest passing step; run stopped early)" % max(passed)) if passed else None


TIME = re.compile(r'"time":"([^"]+)"')
CALLER = re.compile(r'"caller":"([^"]*)"')


def iso(t):
    return datetime.datetime.strptime(t[:19], "%Y-%m-%dT%H:%M:%S").replace(
        tzinfo=datetime.timezone.utc).timestamp() + float("0" + t[19:].rstrip("Z") or 0)


# Key families by what makes a new one: a caller (velocity caller, source and prefix, wangiri
# number and range; docs/fleet.md) or a call (a PASSporT claim). The rest (agents, lists,
# certificates, reports) do not grow with the call rate.
PER_CALLER = {"vc", "vs", "vp", "wn", "wr"}
PER_CALL = {"pp"}


def decisions(path):
    """(calls screened, the last time, {caller: its last call's time}, {second: calls}) from a
    decision log."""
    calls, last, callers, seconds = 0, None, {}, {}
    with open(path, errors="replace") as f:
        for line in f:
            if '"call_id"' not in line:
                continue
            calls += 1
            t = TIME.search(line)
            if not t:
                continue
            t = t.group(1)
            last = t if last is None or t > last else last
            seconds[t[:19]] = seconds.get(t[:19], 0) + 1
            c = CALLER.search(line)
            if c and c.group(1):
                callers[c.group(1)] = t
    return calls, last, callers, seconds


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    off, on = load(sys.argv[1]), load(sys.argv[2])
    with open(sys.argv[3]) as f:
        before = json.load(f)
    with open(sys.argv[4]) as f:
        after = json.load(f)
    calls, last, callers, seconds = decisions(sys.argv[5])
    po, pn = off.get("proxy") or {}, on.get("proxy") or {}
    co, cn = po.get("confirm") or {}, pn.get("confirm") or {}
    redis_us = None
    if calls:
        redis_us = (after.get("cpu_s", 0.0) - before.get("cpu_s", 0.0)) * 1e6 / calls
    print("| metric | fleet off | fleet on | on / off | target |")
    print("|---|---:|---:|---:|---|")
    mo, mn = max_cps(off), max_cps(on)
    print("| max sustained cps | %s | %s | %s | |" % (fmt(mo), fmt(mn), ratio(mn, mo)))
    print("| CPU us per call at max (agent) | %s | %s | %s | <= 1.15 |" % (
        fmt(co.get("proxy_cpu_us_per_call")), fmt(cn.get("proxy_cpu_us_per_call")),
        ratio(cn.get("proxy_cpu_us_per_call"), co.get("proxy_cpu_us_per_call"))))
    so, sn = steps(off), steps(on)
    for rate in sorted(set(so) & set(sn)):
        print("| CPU us per call @%d cps (agent) | %s | %s | %s | <= 1.15 |" % (
            rate, fmt(so[rate]), fmt(sn[rate]), ratio(sn[rate], so[rate])))
    print("| Redis CPU us per call, over the whole run | | %s | | |" % fmt(redis_us))
    print()
    if calls <= 0:
        print("no calls screened in the fleet run: no Redis commands per call")
        return
    b, a = before.get("commandstats", {}), after.get("commandstats", {})
    stats = {k: v - b.get(k, 0) for k, v in a.items() if k not in TOOLING and v - b.get(k, 0) > 0}
    scripts = sum(v for k, v in stats.items() if k in SCRIPTS)
    total = sum(stats.values())
    print("Redis commands per call, over %d calls screened with [fleet] on (the decision log's "
          "lines; the agent's fixed costs, heartbeat and edit stream, are spread over them):" % calls)
    print()
    print("| commands | total | per call |")
    print("|---|---:|---:|")
    print("| count scripts sent (EVALSHA) | %d | %.3f |" % (scripts, scripts / calls))
    print("| every command Redis ran, scripts' own included | %d | %.3f |" % (total, total / calls))
    for k, v in sorted(stats.items(), key=lambda kv: -kv[1]):
        print("| &nbsp; %s | %d | %.3f |" % (k.upper(), v, v / calls))
    print()

    fams = after.get("families") or {}
    mem_rows, mem_total = [], 0.0
    end = iso(last) if last else None
    last_calls = [iso(t) for t in callers.values()] if fams else []
    call_secs = [(iso(t + "Z"), n) for t, n in seconds.items()] if fams else []
    fixed = []
    for fam, f in sorted(fams.items()):
        life_ms, per_key = f.get("max_pttl_ms"), f.get("bytes_per_key")
        if fam not in PER_CALLER | PER_CALL:
            fixed.append("%s %d" % (fam, f["keys"]))
            continue
        if not (life_ms and per_key and end):
            continue
        life = life_ms / 1000.0
        if fam in PER_CALL:
            seen = sum(n for t, n in call_secs if t >= end - life - 1)
        else:
            seen = sum(1 for t in last_calls if t >= end - life)
        if not seen:
            continue
        per_new = f["keys"] / float(seen)
        mb = per_key * per_new * 1000 * life / 1e6
        mem_total += mb
        mem_rows.append((fam, "call" if fam in PER_CALL else "caller", f["keys"], seen, per_new,
                         per_key, life, mb))
    used = (after.get("used_memory", 0.0) - before.get("used_memory", 0.0)) / 1e6
    print("Redis at the end: used_memory %.1f MB (%.1f MB more than before the run), %s keys" % (
        after.get("used_memory", 0.0) / 1e6, used, after.get("keys")))
    if fixed:
        print("Keys that do not grow with the call rate, by family: %s" % ", ".join(fixed))
    if mem_rows:
        print()
        print("| key family | a new one per | Redis keys at the end | callers (calls) within "
              "its lifetime | keys per caller (call) | bytes per key | lifetime s "
              "| MB per 1,000 cps |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for fam, per, keys, seen, per_new, per_key, life, mb in mem_rows:
            print("| %s | %s | %d | %d | %.2f | %.0f | %.0f | %.1f |" % (
                fam, per, keys, seen, per_new, per_key, life, mb))
    print()
    print("Sizing, per 1,000 cps (one agent; every call from a caller of its own for memory):")
    print()
    print("| count scripts/s | commands Redis runs/s | Redis CPU, % of a core | Redis memory |")
    print("|---:|---:|---:|---:|")
    print("| %.0f | %.0f | %s | %s |" % (
        1000.0 * scripts / calls, 1000.0 * total / calls,
        fmt(redis_us / 10.0 if redis_us is not None else None),
        ("%.0f MB" % mem_total) if mem_rows else "-"))


if __name__ == "__main__":
    main()
