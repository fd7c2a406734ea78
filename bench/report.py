#!/usr/bin/env python3
"""bench/report.py RESULTS_DIR: turns bench/run's raw/ outputs into
results.json, summary.md (each figure beside its same-run baseline, the ratio,
the issue's target and PASS/MISS) and PNG plots. Tooling only (run from the
venv bench/run sets up; matplotlib is optional: no plots without it)."""
import csv
import json
import os
import re
import sys

out = sys.argv[1]
raw = os.path.join(out, "raw")


def load_json(name):
    path = os.path.join(raw, name)
    if not os.path.exists(path):
        return None
    text = open(path).read().strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        # Several JSON documents (one per line): keep the last object.
        for line in reversed(text.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
    return None


LAT_RE = re.compile(r"^(.*?)\s+n=(\d+) p50=([\d.]+)ms p90=([\d.]+)ms p99=([\d.]+)ms max=([\d.]+)ms")


def load_net(case):
    """net_bench's output: JSON if it prints JSON, else its summary lines."""
    for ext in ("out", "log"):
        path = os.path.join(raw, f"net_{case}.{ext}")
        if not os.path.exists(path):
            continue
        text = open(path).read()
        j = None
        try:
            j = json.loads(text)
        except ValueError:
            pass
        if isinstance(j, dict):
            return j
        res = {}
        for line in text.splitlines():
            m = LAT_RE.match(line.strip())
            if m:
                res[m.group(1).strip()] = {"n": int(m.group(2)), "p50": float(m.group(3)),
                                           "p90": float(m.group(4)), "p99": float(m.group(5)),
                                           "max": float(m.group(6))}
            m = re.search(r"peak RSS:\s*(\d+)\s*kB", line)
            if m:
                res["peak_rss_kib"] = int(m.group(1))
            m = re.search(r"posted (\d+) \(acked (\d+), errors (\d+)", line)
            if m:
                res["posted"], res["acked"], res["errors"] = map(int, m.groups())
        if res:
            res["raw_text"] = text.strip().splitlines()[-12:]
            return res
    return None


def find_latency(d, *needles):
    """The first latency dict in `d` whose key (or nested key) matches."""
    if not isinstance(d, dict):
        return None
    for k, v in d.items():
        if isinstance(v, dict) and all(n.lower() in k.lower() for n in needles) and "p99" in "".join(v.keys()):
            return v
    for k, v in d.items():
        if isinstance(v, dict):
            r = find_latency(v, *needles)
            if r:
                return r
    return None


def pick(d, key_re):
    """A float field of a flat dict by regular expression."""
    if not isinstance(d, dict):
        return None
    for k, v in d.items():
        if re.fullmatch(key_re, k) and isinstance(v, (int, float)):
            return float(v)
    return None


def pct(v, name):
    for k in (name, name + "_ms"):
        if k in v:
            return float(v[k])
    return None


results = {
    "machine": load_json("machine.json"),
    "run": load_json("run.json"),
    "outbox": load_json("outbox.json"),
    "flusher": load_json("flusher.json"),
    "net": {c: load_net(c) for c in ("get-plan", "ws", "fanout", "cluster")},
    "cluster_post": {},
    "compare": {},
    "drain": [],
    "figures": [],
}
for side in ("agentd", "baseline"):
    posts = {}
    for f in sorted(os.listdir(raw)):
        m = re.fullmatch(side + r"_post_p(\d+)\.json", f)
        if m:
            posts[int(m.group(1))] = load_json(f)
    rss = load_json(f"{side}_rss.json") or {}
    results["compare"][side] = {"post": posts, "get_plan": load_json(f"{side}_get_plan.json"),
                                "peak_rss_kib": next(iter(rss.values()), None)}
for f in sorted(os.listdir(raw)):
    m = re.fullmatch(r"cluster_post_n(\d+)_i(\d+)\.json", f)
    if m:
        results["cluster_post"].setdefault(m.group(1), {})[m.group(2)] = load_json(f)
drain_path = os.path.join(raw, "drain.csv")
if os.path.exists(drain_path):
    with open(drain_path) as f:
        for row in csv.DictReader(f):
            try:
                results["drain"].append([float(row["t_s"]), float(row["pending"] or "nan"), row["event"]])
            except (ValueError, KeyError):
                pass

figs = results["figures"]


def figure(group, name, value, unit, base_name=None, base_value=None, target=None, better="lower", ratio=None):
    """One summary row. ratio = value / base_value unless given; target is
    (op, number) on the ratio (or on the value when there is no baseline)."""
    if value is None:
        return
    if ratio is None and base_value:
        ratio = value / base_value
    status = ""
    if target:
        op, num = target
        x = ratio if ratio is not None and base_value is not None else value
        ok = x <= num if op == "<=" else x >= num
        status = "PASS" if ok else "MISS"
    figs.append({"group": group, "name": name, "value": value, "unit": unit, "baseline": base_name,
                 "baseline_value": base_value, "ratio": ratio,
                 "target": f"{target[0]} {target[1]}{'x' if base_value is not None else ' ' + unit}" if target else "",
                 "status": status, "better": better})


# ---- outbox (issue 4) ----
# outbox_bench's own paired ratios (medians of interleaved rounds) win over
# value / baseline when it prints them.
ob = results["outbox"]
if ob:
    for sz in ("256", "1024"):
        f = pick(ob, rf"raw_fdatasync_p50_ms_{sz}")
        figure("outbox", f"append p50, 1 producer, {sz} B", pick(ob, rf"append_p50_ms_{sz}"), "ms",
               f"raw write+fdatasync p50 ({sz} B)", f, ("<=", 2.5), ratio=pick(ob, rf"append_p50_over_fdatasync_{sz}"))
        figure("outbox", f"append p99, 1 producer, {sz} B", pick(ob, rf"append_p99_ms_{sz}"), "ms",
               f"raw write+fdatasync p50 ({sz} B)", f)
        bare = {b: pick(ob, rf"bare_lmdb_B{b}_msg_s_{sz}") for b in (1, 64, 1024)}
        # Producers as threads blocking on append_sync, and as asynchronous
        # producers on one Asio thread (how agentd's sessions append); the
        # issue's target applies to both.
        for name, key, b, target in (("1 producer", "1_producers?", 1, None), ("8 producers", "8_producers", 64, None),
                                     ("64 producer threads", "64_producers", 64, (">=", 0.8)),
                                     ("8 async producers", "8_async_producers", 64, None),
                                     ("64 async producers", "64_async_producers", 64, (">=", 0.8)),
                                     ("1024 in flight", "1024_in_flight", 1024, (">=", 0.8))):
            figure("outbox", f"throughput {name}, {sz} B", pick(ob, rf"outbox_{key}_msg_s_{sz}"), "msg/s",
                   f"bare LMDB B={b}", bare[b], target, better="higher",
                   ratio=pick(ob, rf"outbox_{key}_over_bare_B{b}_{sz}"))
        # Where the cost lies: the same loop writing the outbox's layout
        # (message key + message_id index in two named databases) with no
        # queue, thread or callback. Reported, no target.
        for name, key, b in (("64 async producers", "64_async_producers", 64), ("1024 in flight", "1024_in_flight", 1024)):
            figure("outbox", f"throughput {name}, {sz} B, vs its layout", pick(ob, rf"outbox_{key}_msg_s_{sz}"),
                   "msg/s", f"bare LMDB, outbox layout, B={b}", pick(ob, rf"bare_layout_B{b}_msg_s_{sz}"),
                   better="higher")
    figure("outbox", f"peak RssAnon, {int(pick(ob, 'pending_messages') or 0)} pending", pick(ob, "peak_rss_anon_mib"),
           "MiB", target=("<=", 64))

# ---- flusher (issue 5) ----
fl = results["flusher"]
if fl:
    e2e = pick(fl, "flusher_e2e_msg_s")
    figure("flusher", "flush throughput (append -> MongoDB ack)", e2e, "msg/s", "raw bulk $setOnInsert upserts",
           pick(fl, "raw_bulk_upsert_msg_s"), (">=", 0.8), better="higher")
    figure("flusher", "flush throughput vs raw bulk inserts", e2e, "msg/s", "raw bulk inserts",
           pick(fl, "raw_bulk_insert_msg_s"), better="higher")
    figure("flusher", "flush throughput vs naive fix", e2e, "msg/s", "naive insert_one per message (request path)",
           pick(fl, "naive_insert_one_msg_s"), (">=", 10), better="higher")
    lat_keys = sorted({k[: -len("p99_ms")] for k in fl if k.startswith("latency_at_") and k.endswith("p99_ms")},
                      key=lambda k: int(re.search(r"\d+", k).group()))
    for i, k in enumerate(lat_keys):
        rate = re.search(r"\d+", k).group()
        figure("flusher", f"append-ack -> MongoDB-ack p99 at {rate} msg/s", fl.get(k + "p99_ms"), "ms",
               target=("<=", 50) if i == 0 else None)
    figure("flusher", f"backlog drain ({int(pick(fl, 'backlog_messages') or 0)} msgs after an outage)",
           pick(fl, "backlog_drain_msg_s"), "msg/s", better="higher")

# ---- net (issue 6) ----
net = results["net"]
g = find_latency(net.get("get-plan") or {}, "plan")
if g:
    figure("net", "GET /api/v3/plan p50 (net_bench big plan)", pct(g, "p50"), "ms")
    figure("net", "GET /api/v3/plan p99 (net_bench big plan)", pct(g, "p99"), "ms")
# The target is on "append acknowledged -> frame received". agentd
# fans a frame out at commit, before the HTTP answer is written, so frames
# beat the ack and ack->frame is 0 (reported, never graded: it cannot fail).
# The target is graded on post->frame instead, an upper bound of it that also
# counts the HTTP request and the durable commit.
for case, target in (("ws", 10), ("fanout", 50)):
    w = find_latency(net.get(case) or {}, "ack")
    if w:
        figure("net", f"WebSocket ack->frame p99, 0 = frame before the ack ({case})", pct(w, "p99"), "ms")
    w = find_latency(net.get(case) or {}, "post")
    if w:
        figure("net", f"WebSocket post->frame p50, incl. the durable commit ({case})", pct(w, "p50"), "ms")
        figure("net", f"WebSocket post->frame p99, incl. the durable commit ({case})", pct(w, "p99"), "ms",
               target=("<=", target))
    if net.get(case) and net[case].get("peak_rss_kib"):
        figure("net", f"agentd peak RSS ({case})", net[case]["peak_rss_kib"] / 1024, "MiB")

# ---- several instances on one MongoDB (issue 16) ----
# Posts to the owner A; the socket on A ("local", one instance's path) or on
# B ("cross", frames relayed from A's socket), same run, same rate.
cl = net.get("cluster") or {}
lo, cr = find_latency(cl, "local", "post"), find_latency(cl, "cross", "post")
if cr:
    figure("cluster", "cross-instance post->frame p50 (POST to A, socket on B)", pct(cr, "p50"), "ms",
           "socket on A (same instance)", lo and pct(lo, "p50"))
    figure("cluster", "cross-instance post->frame p99 (POST to A, socket on B)", pct(cr, "p99"), "ms",
           "socket on A (same instance)", lo and pct(lo, "p99"), ("<=", 2))
totals = {}
for n, per in results["cluster_post"].items():
    if per and all(per.values()) and len(per) == int(n):
        totals[int(n)] = sum(j["throughput"] for j in per.values())
for n in sorted(totals):
    figure("cluster", f"total POST agent_message throughput, {n} instance{'s' if n > 1 else ''}", totals[n], "req/s",
           "1 instance" if n > 1 else None, totals.get(1) if n > 1 else None, better="higher")

# ---- agentd vs the original stack (issue 8) ----
a, b = results["compare"].get("agentd", {}), results["compare"].get("baseline", {})
for p in sorted(set(a.get("post", {})) | set(b.get("post", {}))):
    ap, bp = (a.get("post") or {}).get(p), (b.get("post") or {}).get(p)
    if not ap:
        continue
    figure("vs original", f"POST agent_message throughput, {p} producers", ap["throughput"], "req/s",
           "FastAPI+Motor insert per message", bp and bp["throughput"], better="higher")
    for q in ("p50", "p99"):
        figure("vs original", f"POST agent_message {q}, {p} producers", ap["latency_ms"][q], "ms",
               "FastAPI+Motor insert per message", bp and bp["latency_ms"][q])
ag, bg = a.get("get_plan"), b.get("get_plan")
if ag:
    for q in ("p50", "p99"):
        figure("vs original", f"GET /api/v3/plan {q}", ag["latency_ms"][q], "ms", "FastAPI+Motor find+sort",
               bg and bg["latency_ms"][q])
if a.get("peak_rss_kib"):
    figure("vs original", "server peak RSS", a["peak_rss_kib"] / 1024, "MiB", "uvicorn peak RSS",
           b.get("peak_rss_kib") and b["peak_rss_kib"] / 1024)

with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=1)


# ---- summary.md ----
def fmt(x):
    if x is None:
        return "—"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.3g}"


m = results["machine"] or {}
r = results["run"] or {}
lines = [f"# agentd benchmarks — {m.get('stamp', '?')} ({m.get('mode', '?')} mode)", "",
         f"Commit `{m.get('commit', '?')}`{' (dirty tree)' if m.get('dirty') else ''}; {m.get('nproc')} cores "
         f"({m.get('cpu', '?')}), kernel {m.get('kernel', '?')}, disk `{m.get('disk', '?')}`.",
         f"Load average before {m.get('loadavg_before', '?')}, after {r.get('loadavg_after', '?')}; "
         f"run took {r.get('duration_s', '?')} s.", f"Pinning: {m.get('pinning', '?')}.", ""]
if r.get("failed"):
    lines += ["**Failed stages:** " + ", ".join(r["failed"]), ""]
lines += ["Ratio = figure / baseline (for latencies lower is better, for throughputs higher is better). "
          "Targets are the issues' (4: outbox, 5: flusher, 6: net, 16: cluster); rows without one are reported only.", ""]
group = None
for fg in figs:
    if fg["group"] != group:
        group = fg["group"]
        lines += ["", f"## {group}", "", "| figure | value | same-run baseline | baseline value | ratio | target | |",
                  "|---|---:|---|---:|---:|---|---|"]
    lines.append(f"| {fg['name']} | {fmt(fg['value'])} {fg['unit']} | {fg['baseline'] or '—'} | "
                 f"{fmt(fg['baseline_value'])}{' ' + fg['unit'] if fg['baseline_value'] is not None else ''} | "
                 f"{fmt(fg['ratio']) + 'x' if fg['ratio'] is not None else '—'} | {fg['target'] or '—'} | "
                 f"{fg['status']} |")
if not results["drain"] and a.get("post"):
    lines += ["", "No end-to-end outage drain curve: agentd exposed no `agentd_outbox_pending_messages` "
              "(flusher not wired into the binary at this commit); flusher_bench's backlog drain rate stands in."]
if a.get("post"):
    lines += ["", "Reading *vs original*: agentd answers a POST once the message is fdatasync'ed in its outbox "
              "(MongoDB gets it from the flusher); the baseline answers once FerretDB acknowledged an insert with "
              "the default write concern, which does not wait for a disk sync. With one producer the baseline is "
              "therefore not doing the same work; with more producers agentd's group commit shares the sync."]
if results["cluster_post"]:
    lines += ["", "Reading *cluster*: every instance is pinned to the same server core (and each loadgen to the "
              "client core), so the throughput rows say what one core and one disk give n instances — each with "
              "its own outbox and its own fdatasync — not what n machines would."]
lines += ["", "Plots: " + ", ".join(f"`{p}`" for p in ("latency.png", "throughput.png", "drain.png")), ""]
with open(os.path.join(out, "summary.md"), "w") as f:
    f.write("\n".join(lines))
print("\n".join(lines))

# ---- plots ----
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit(0)

# Latency distributions (CCDF from the load generator's histograms).
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, kind in zip(axes, ("post", "get")):
    for side, style in (("agentd", "-"), ("baseline", "--")):
        c = results["compare"].get(side, {})
        series = [(f"{side} POST, {p} producers", d) for p, d in sorted((c.get("post") or {}).items())] \
            if kind == "post" else [(f"{side} GET /plan", c.get("get_plan"))]
        for i, (label, d) in enumerate(series):
            if not d or not d.get("hist"):
                continue
            total = sum(n for _, n in d["hist"])
            xs, ys, seen = [d["hist"][0][0] / 10 ** (1 / 8)], [1.0], 0
            for edge, n in d["hist"]:
                seen += n
                xs.append(edge)
                ys.append(max(1 - seen / total, 1e-5))
            ax.step(xs, ys, style, where="post", label=label, color=f"C{i}")  # same color = same load
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of requests slower")
    ax.set_title("POST /api/v3/agent_message" if kind == "post" else "GET /api/v3/plan")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle("Latency distributions: agentd vs the original stack (same loadgen, same FerretDB)")
fig.tight_layout()
fig.savefig(os.path.join(out, "latency.png"), dpi=110)
plt.close(fig)

# Throughput against producers.
fig, ax = plt.subplots(figsize=(7, 4.5))
for side, label in (("agentd", "agentd (outbox, POST acked when durable)"),
                    ("baseline", "FastAPI + Motor (insert per message)")):
    posts = (results["compare"].get(side) or {}).get("post") or {}
    ps = sorted(posts)
    if ps:
        ax.plot(ps, [posts[p]["throughput"] for p in ps], "o-", label=label)
if ob:
    ps = [1, 8, 64]
    ys = [pick(ob, rf"outbox_{p}_producers?_msg_s_256") for p in ps]
    if all(y is not None for y in ys):
        ax.plot(ps, ys, "s:", label="outbox alone, 256 B (outbox_bench)")
if fl and pick(fl, "naive_insert_one_msg_s"):
    ax.axhline(pick(fl, "naive_insert_one_msg_s"), color="gray", ls="--",
               label=f"naive insert_one, {int(pick(fl, 'producers') or 0)} producers (flusher_bench)")
ax.set_xscale("log", base=2)
ax.set_yscale("log")
ax.set_xlabel("concurrent producers (each waits for its answer)")
ax.set_ylabel("messages/s")
ax.set_title("Throughput against producers")
ax.grid(True, which="both", alpha=0.3)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(out, "throughput.png"), dpi=110)
plt.close(fig)

# Backlog drain during an outage.
fig, ax = plt.subplots(figsize=(7, 4.5))
if results["drain"]:
    d = results["drain"]
    ax.plot([x[0] for x in d], [x[1] for x in d], "-", label="agentd_outbox_pending_messages")
    down = [x[0] for x in d if x[2] == "down"]
    restart = [x[0] for x in d if x[2] == "restart"]
    if down and restart:
        ax.axvspan(0, restart[0], color="red", alpha=0.1, label="FerretDB down")
    ax.set_xlabel("seconds since FerretDB was stopped")
    ax.set_ylabel("pending messages")
    ax.set_title("Backlog drain during an outage (agentd end to end)")
elif fl and pick(fl, "backlog_drain_msg_s"):
    n = pick(fl, "backlog_messages")
    fill = pick(fl, "backlog_fill_s") or 0
    rate = pick(fl, "backlog_drain_msg_s")
    ax.plot([0, fill, fill + n / rate], [0, n, 0], "-o", label="flusher_bench: fill during outage, then drain")
    ax.axvspan(0, fill, color="red", alpha=0.1, label="no flusher (outage)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("pending messages")
    ax.set_title(f"Backlog drain: {fmt(rate)} msg/s (flusher_bench; linear between measured points)")
else:
    ax.text(0.5, 0.5, "no drain measurement in this run", ha="center", va="center", transform=ax.transAxes)
ax.grid(True, alpha=0.3)
if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(os.path.join(out, "drain.png"), dpi=110)
plt.close(fig)
