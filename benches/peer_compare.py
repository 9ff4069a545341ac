#!/usr/bin/env python3
"""Side-by-side table of two peer-harness runs (summary.json of each), with ratios.

Usage: peer_compare.py [--ceiling CEILING_RUN_DIR] OURS_RUN_DIR [THEIRS_RUN_DIR [OURS_NAME THEIRS_NAME]]

Prints a markdown table: max cps, CPU per call at max and at the fixed ramp rates, memory,
load time, and the latency runs (pcap in-proxy and SIPp RTDs) at the rates both ran. Each
ratio is ours / theirs; the target column restates the goal of issue 18 where there is one.

With --ceiling, a run of the harness's no-proxy ceiling (PROXY=0: SIPp UAC straight to a SIPp
UAS) from the same session: the table gains each proxy's max cps as a share of it (issue 18:
ours at least 50%). Without THEIRS_RUN_DIR only that share is printed, for ours.
"""
import json
import os
import sys


def load(run):
    with open(os.path.join(run, "summary.json")) as f:
        return json.load(f)


def fmt(v, nd=1):
    if v is None:
        return "-"
    if isinstance(v, float):
        return ("%." + str(nd) + "f") % v
    return str(v)


def ratio(a, b):
    try:
        return "%.2f" % (float(a) / float(b))
    except (TypeError, ValueError, ZeroDivisionError):
        return "-"


def step_at(s, rate, key):
    """The first passing proxy ramp step at exactly `rate`."""
    for st in s.get("steps", []):
        if st.get("tag") == "proxy" and st.get("target") == rate and st.get("pass"):
            return st.get(key)
    return None


def max_over_steps(s, key):
    vals = [st.get(key) for st in s.get("steps", []) if st.get(key) is not None]
    return max(vals) if vals else None


def latency(s):
    out = {}
    for lr in (s.get("proxy") or {}).get("latency_runs", []):
        lat = lr.get("pcap_latency") or {}
        rtt = lr.get("sipp_rtt_ms") or {}
        out[lr["target"]] = {
            "pass": lr.get("pass"),
            "reject_p50": (lat.get("reject_ms") or {}).get("p50"),
            "reject_p99": (lat.get("reject_ms") or {}).get("p99"),
            "forward_p50": (lat.get("forward_ms") or {}).get("p50"),
            "forward_p99": (lat.get("forward_ms") or {}).get("p99"),
            "rtt_reject_p99": (rtt.get("reject") or {}).get("p99"),
            "rtt_answer_p99": (rtt.get("answer") or {}).get("p99"),
            "cpu_us": lr.get("proxy_cpu_us_per_call"),
        }
    return out


def ceiling_cps(c):
    """The ceiling run's confirmed max, or its highest passing step if it stopped early."""
    d = c.get("direct") or {}
    if d.get("max_cps"):
        return d["max_cps"], ""
    passed = [st["target"] for st in c.get("steps", [])
              if st.get("tag") in ("direct", "direct-confirm") and st.get("pass")]
    return (max(passed), " (highest passing step; no confirmation)") if passed else (None, "")


def share(cps, ceil):
    """cps as a percentage of the ceiling; '-' when either is unknown."""
    try:
        return "%.0f%%" % (100.0 * float(str(cps).split()[0]) / float(ceil))
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return "-"


def main():
    args = sys.argv[1:]
    ceiling = None
    if len(args) >= 2 and args[0] == "--ceiling":
        ceiling, args = load(args[1]), args[2:]
    if len(args) not in (1, 2, 4) or (len(args) == 1 and ceiling is None):
        raise SystemExit(__doc__)
    a = load(args[0])
    if len(args) == 1:
        p = a.get("proxy") or {}
        cps = p.get("max_cps")
        ceil, note = ceiling_cps(ceiling)
        name = a["params"].get("proxy_name", "ours")
        print("| metric | %s | no-proxy ceiling | share | target |" % name)
        print("|---|---:|---:|---:|---|")
        print("| max sustained cps (confirmation run) | %s | %s%s | %s | >= 50%% |" % (
            fmt(cps), fmt(ceil), note, share(cps, ceil)))
        return
    b = load(args[1])
    na = args[2] if len(args) > 2 else a["params"].get("proxy_name", "ours")
    nb = args[3] if len(args) > 3 else b["params"].get("proxy_name", "theirs")
    # A run stopped before its end has its steps but no "proxy" summary: fall back to them.
    pa, pb = a.get("proxy") or {}, b.get("proxy") or {}
    for s, p in ((a, pa), (b, pb)):
        if "max_cps" not in p:
            passed = [st["target"] for st in s.get("steps", [])
                      if st.get("tag") in ("proxy", "proxy-confirm") and st.get("pass")]
            p["max_cps"] = ("%s (highest passing step; run stopped early)" % max(passed)
                            if passed else None)
    ca, cb = pa.get("confirm") or {}, pb.get("confirm") or {}
    rows = []

    def row(name, va, vb, target="", nd=1):
        rows.append((name, fmt(va, nd), fmt(vb, nd), ratio(va, vb), target))

    row("max sustained cps (confirmation run)", pa.get("max_cps"), pb.get("max_cps"), ">= 2.5")
    if ceiling is not None:
        ceil, note = ceiling_cps(ceiling)
        rows.append(("max cps as a share of the no-proxy ceiling, %s cps%s (same session)"
                     % (fmt(ceil), note), share(pa.get("max_cps"), ceil),
                     share(pb.get("max_cps"), ceil), "-", "ours >= 50%"))
    row("proxy CPU at max, % of one core", ca.get("proxy_cpu_pct"), cb.get("proxy_cpu_pct"))
    row("proxy CPU us per call at max", ca.get("proxy_cpu_us_per_call"),
        cb.get("proxy_cpu_us_per_call"), "<= 0.33")
    for r in (500, 1000, 2000, 4000):
        row("proxy CPU us per call @%d cps" % r, step_at(a, r, "proxy_cpu_us_per_call"),
            step_at(b, r, "proxy_cpu_us_per_call"), "<= 0.33")
    row("memory idle after load, PSS MB", pa.get("idle_pss_mb"), pb.get("idle_pss_mb"))
    row("memory at rate, PSS MB (max over steps)", max_over_steps(a, "proxy_pss_mb"),
        max_over_steps(b, "proxy_pss_mb"), "<= 0.1")
    row("memory at rate, summed RSS MB (max over steps)", max_over_steps(a, "proxy_rss_mb"),
        max_over_steps(b, "proxy_rss_mb"))
    rows.append(("ours RSS at rate / theirs PSS at rate", "", "",
                 ratio(max_over_steps(a, "proxy_rss_mb"), max_over_steps(b, "proxy_pss_mb")),
                 "<= 0.1"))
    row("start to ready (exec -> first SIP answer), s", pa.get("load_s"), pb.get("load_s"),
        "<= 0.1", nd=2)
    la, lb = latency(a), latency(b)
    for rate in sorted(set(la) & set(lb)):
        x, y = la[rate], lb[rate]
        tag = "@%d cps" % rate
        if not (x["pass"] and y["pass"]):
            tag += " (a step FAILED: ours %s, theirs %s)" % (x["pass"], y["pass"])
        row("in-proxy reject p50 ms (pcap) " + tag, x["reject_p50"], y["reject_p50"], nd=3)
        row("in-proxy reject p99 ms (pcap) " + tag, x["reject_p99"], y["reject_p99"], "<= 1", nd=3)
        row("in-proxy forward p50 ms (pcap) " + tag, x["forward_p50"], y["forward_p50"], nd=3)
        row("in-proxy forward p99 ms (pcap) " + tag, x["forward_p99"], y["forward_p99"], "<= 1", nd=3)
        row("SIPp INVITE->6xx p99 ms (4 ms clock) " + tag, x["rtt_reject_p99"], y["rtt_reject_p99"])
        row("SIPp INVITE->200 p99 ms (4 ms clock) " + tag, x["rtt_answer_p99"], y["rtt_answer_p99"])
    w0 = max(len(r[0]) for r in rows)
    print("| metric | %s | %s | ratio | target |" % (na, nb))
    print("|---|---:|---:|---:|---|")
    for r in rows:
        print("| %s | %s | %s | %s | %s |" % r)
    _ = w0


if __name__ == "__main__":
    main()
