"""Turns the results into the Markdown table for the README, with each target met or missed."""

from __future__ import annotations

from typing import Any


def _f(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _find(rows: list[dict[str, Any]], system: str, label: str, **extra: Any) -> dict[str, Any]:
    for row in rows:
        if row["system"] == system and row["label"] == label and all(
            row.get(k) == v for k, v in extra.items()
        ):
            return row
    raise KeyError(f"{system} {label} {extra}")


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with the figure measured and met/missed."""
    lat, thr = results["latency"], results["throughput"]
    targets: list[dict[str, Any]] = []

    hot_raw = _find(lat, "agent in-process", "get_json (hot, raw bytes)")["p99_us"]
    hot_parsed = _find(lat, "agent in-process", "get (hot, parsed)")["p99_us"]
    targets.append({
        "target": "in-process hot read p99 <= 10 us",
        "figure": f"get_json {_f(hot_raw, 2)} us ({'met' if hot_raw <= 10 else 'missed'}), "
        f"get {_f(hot_parsed, 2)} us ({'met' if hot_parsed <= 10 else 'missed'})",
        "met": max(hot_raw, hot_parsed) <= 10.0,
    })

    sock = _find(lat, "agent socket", "GET")["p50_us"]
    bare = _find(lat, "bare ASGI app (same stack)", "GET (constant 200 B)")["p50_us"]
    red = _find(lat, "redis everysec", "GET")["p50_us"]
    cpu = ""
    with_cpu = [r for r in thr if r.get("clients") == 8 and r.get("server_cpu_us_per_op")]
    try:  # server CPU per GET: the same comparison without the clients' scheduling noise
        agent_cpu = _find(with_cpu, "agent socket", "GET")["server_cpu_us_per_op"]
        bare_cpu = _find(with_cpu, "bare ASGI app (same stack)", "GET (constant 200 B)")
        cpu = (f"; server CPU per GET at 8 clients {_f(agent_cpu)} vs "
               f"{_f(bare_cpu['server_cpu_us_per_op'])} us "
               f"({agent_cpu / bare_cpu['server_cpu_us_per_op']:.2f}x)")
    except KeyError:
        pass
    targets.append({
        "target": "socket GET p50 <= 1.25x a bare ASGI app on the same stack",
        "figure": f"{_f(sock)} us vs bare app {_f(bare)} us ({sock / bare:.2f}x){cpu}; "
        f"Redis GET {_f(red)} us ({sock / red:.1f}x, for reference)",
        "met": sock <= 1.25 * bare,
    })

    parts: list[str] = []
    verdict: dict[str, bool] = {}
    for clients in (1, 8):
        redis_always = _find(thr, "redis always", "SET (fsync)", clients=clients)["ops_s"]
        for system, label in (("agent in-process", "put critical (fdatasync)"),
                              ("agent socket", "PUT critical (fdatasync)")):
            ops = _find(thr, system, label, clients=clients)["ops_s"]
            short = "in-process" if "in-process" in system else "socket"
            parts.append(f"{short} c={clients}: {_f(ops)} vs {_f(redis_always)}")
            verdict[short] = verdict.get(short, True) and ops >= redis_always
    summary = ", ".join(f"{k} {'met' if v else 'missed'}" for k, v in verdict.items())
    targets.append({
        "target": "critical put ops/s >= Redis appendfsync always",
        "figure": "; ".join(parts) + f" ({summary})",
        "met": all(verdict.values()),
    })

    for op, label, bound, what in (
        ("get", "MGET 100 keys", 2.0, "bulk read of 100 records: per record <= 2x Redis MGET"),
        ("put", "pipelined SET 100 keys (fsync)", 1.0,
         "bulk write of 100 critical records: per record <= Redis pipelined SET (always)"),
    ):
        redis_row = _find(lat, "redis always", label)
        agent_rows = [r for r in lat if r["system"] == "agent socket" and r.get("batch", 1) > 1
                      and r["op"] == op]
        redis_per = redis_row["p50_us_per_record"]
        if agent_rows:
            agent_per = agent_rows[0]["p50_us_per_record"]
            targets.append({
                "target": what,
                "figure": f"{_f(agent_per, 2)} vs Redis {_f(redis_per, 2)} us/record",
                "met": agent_per <= bound * redis_per,
            })
        else:
            targets.append({
                "target": what,
                "figure": f"Redis {_f(redis_per, 2)} us/record; the agent has no bulk "
                "endpoint yet (issue 11 §1)",
                "met": None,
            })

    ts = results.get("typescript")
    if ts:
        rows = {(r["system"], r["op"]): r for r in ts["rows"]}
        parts = []
        ok = True
        for op in ("get", "put"):
            raw = rows[("raw undici", op)]["p50_us"]
            client = rows[("TypeScript client", op)]["p50_us"]
            parts.append(f"{op.upper()} {_f(client)} vs {_f(raw)} us ({client / raw - 1:+.1%})")
            ok = ok and client <= 1.10 * raw
        targets.append({
            "target": "TypeScript client p50 <= 1.10x raw undici, same socket",
            "figure": "; ".join(parts),
            "met": ok,
        })

    big = {r["changed"]: r for r in results["backup"]["100k"]["series"]}
    small = {r["changed"]: r for r in results["backup"]["10k"]["series"]}
    at_big, at_small = big[100]["commit_ms"], small[100]["commit_ms"]
    follows = at_big is not None and at_small is not None and at_big <= 2 * at_small + 5
    targets.append({
        "target": "backup of 100 changes among 100k <= 150 ms, cost follows changes",
        "figure": f"{_f(at_big)} ms at 100k vs {_f(at_small)} ms at 10k total",
        "met": at_big is not None and at_big <= 150 and follows,
    })

    restore = results["restore"]["100k"]
    warm, clone = restore["warm_files"]["median_s"], restore["git_clone"]["median_s"]
    local = restore["git_local"]["median_s"]
    targets.append({
        "target": "restore of 100k <= 2 s",
        "figure": ", ".join(
            f"{name} {v:.2f} s ({'met' if v <= 2.0 else 'missed'})"
            for name, v in (("warm files", warm), ("git-local", local), ("clone", clone))
        ),
        "met": max(warm, clone, local) <= 2.0,
    })

    m = results["rss"]
    restored = m["daemon_100k"]["rss_after_gets_mb"]
    put = m.get("daemon_100k_puts", {}).get("rss_mb")
    worst = max(restored, put or 0.0)
    targets.append({
        "target": "RSS <= 100 MB at 100k records (daemon)",
        "figure": f"restored {_f(restored)} MB, after 100k socket puts {_f(put)} MB "
        f"(in-process deltas {_f(m['in_process_restored']['delta_mb'])} / "
        f"{_f(m['in_process_put']['delta_mb'])} MB)",
        "met": worst <= 100,
    })
    return targets


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    out: list[str] = []
    add = out.append
    dirty = env["agent"]["uncommitted"]
    agent = env["agent"]["head"] + (f" + uncommitted {', '.join(dirty)}" if dirty else "")
    add(f"Measured {env['finished_utc']} on {env['cpus']} CPUs, load average "
        f"{env['load_start']} at start and {env['load_end']} at the end; Python {env['python']}, "
        f"redis-server {env['redis']}, SQLite {env['sqlite']}, {env['git']}. "
        f"Agent at {agent}. "
        f"Bench runtime {env['runtime_s']:.0f} s. Medians of {results['repeats']} interleaved "
        "repeats; ~200-byte JSON values; no CPU pinning on either side.")
    add("")
    add("**Get/put, one client** (latency per op; ops/s of that single client)")
    add("")
    add("| system | op | p50 µs | p99 µs | ops/s | p50 µs per record |")
    add("|---|---|---:|---:|---:|---:|")
    for r in results["latency"]:
        batch = r.get("batch", 1)
        per = _f(r["p50_us_per_record"], 2) if batch > 1 else ""
        add(f"| {r['system']} | {r['label']} | {_f(r['p50_us'], 2)} | {_f(r['p99_us'], 2)} "
            f"| {_f(r['ops_s'], 0)} | {per} |")
    add("")
    ts = results.get("typescript")
    if ts:
        add(f"**TypeScript client vs raw undici** (Node {ts['node']}, one process, one "
            "keep-alive connection each, the agent's socket, interleaved; a critical PUT waits "
            "for its fdatasync)")
        add("")
        add("| client | op | p50 µs | p99 µs | ops/s |")
        add("|---|---|---:|---:|---:|")
        for r in ts["rows"]:
            add(f"| {r['system']} | {r['label']} | {_f(r['p50_us'], 2)} | {_f(r['p99_us'], 2)} "
                f"| {_f(r['ops_s'], 0)} |")
        add("")
    add("**Throughput with concurrent clients** (processes for servers, threads in-process; "
        f"{results['throughput_duration_s']:g} s per sample)")
    add("")
    add("Each client opens its own connection, warms up, waits on a barrier, then loops for the "
        "sample time; ops/s is all clients' ops over the span from the first start to the last "
        "finish, p50/p99 are over every op of every client, and server CPU is the server "
        "process's user+sys time per op (psutil).")
    add("")
    add("| system | op | clients | ops/s | p50 µs | p99 µs | server CPU µs/op |")
    add("|---|---|---:|---:|---:|---:|---:|")
    for r in results["throughput"]:
        add(f"| {r['system']} | {r['label']} | {r['clients']} | {_f(r['ops_s'], 0)} "
            f"| {_f(r['p50_us'])} | {_f(r['p99_us'])} | {_f(r.get('server_cpu_us_per_op'))} |")
    add("")
    b = results["backup"]
    big = {r["changed"]: r for r in b["100k"]["series"]}
    small = {r["changed"]: r for r in b["10k"]["series"]}
    add("**Git backup** (commit only, `backup_git(push=False)`; push to a file:// remote apart)")
    add("")
    add("| changed records | commit ms, 100k total | commit ms, 10k total "
        "| push ms, 100k | push ms, 10k |")
    add("|---:|---:|---:|---:|---:|")
    for n in sorted(big):
        s = small.get(n, {})
        add(f"| {n:,} | {_f(big[n]['commit_ms'])} | {_f(s.get('commit_ms'))} "
            f"| {_f(big[n]['push_ms'])} | {_f(s.get('push_ms'))} |")
    comp = b["100k"].get("compaction", {})
    add("")
    add(f"First backup (snapshot) of 100k: {b['100k']['initial_snapshot_s']:.2f} s, first push "
        f"{b['100k']['initial_push_s']:.2f} s. Compaction (fresh snapshot, due after "
        f"{comp.get('segments_before')} segments): {_f(comp.get('snapshot_backup_ms'))} ms, "
        f"push after it {_f(comp.get('push_after_ms'))} ms. Backup repository: "
        f"{b['100k']['repo_bytes'] / 1e6:.1f} MB.")
    add("")
    def steps_text(steps: dict[str, float]) -> str:
        return ", ".join(f"`{k}` {_f(v)} ms" for k, v in steps.items() if v)

    if big[100].get("steps_ms"):
        line = f"Where a 100-change backup at 100k goes: {steps_text(big[100]['steps_ms'])}"
        if comp.get("steps_ms"):
            line += f"; the compaction: {steps_text(comp['steps_ms'])}"
        add(line + " (steps nest).")
        add("")
    rs = results["restore"]
    add("**Restore** (`initialize()`, whole; page cache warm)")
    add("")
    add("| records | warm files s | git-local s | clone of remote s |")
    add("|---:|---:|---:|---:|")
    for size in ("10k", "100k"):
        r = rs[size]
        add(f"| {r['records']:,} | {r['warm_files']['median_s']:.2f} "
            f"| {r['git_local']['median_s']:.2f} | {r['git_clone']['median_s']:.2f} |")
    add("")
    for source, detail in rs["100k"].get("steps_s", {}).items():
        add(f"100k from {source.replace('_', ' ')}: "
            + ", ".join(f"`{k}` {v:.2f} s" for k, v in detail.items() if v >= 0.01) + ".")
    add("")
    m = results["rss"]
    add("**Memory at 100k records**")
    add("")
    add("| process | RSS MB |")
    add("|---|---:|")
    add(f"| spine-agent daemon, empty | {_f(m['daemon_empty_mb'])} |")
    add(f"| spine-agent daemon, 100k restored (+ reads) | {_f(m['daemon_100k']['rss_mb'])} "
        f"({_f(m['daemon_100k']['rss_after_gets_mb'])}) |")
    if m.get("daemon_100k_puts"):
        p = m["daemon_100k_puts"]
        add(f"| spine-agent daemon, after 100k PUTs over the socket ({_f(p['ops_s'], 0)} puts/s, "
            f"8 clients) | {_f(p['rss_mb'])} |")
    add(f"| in-process, 100k restored from files: delta over imports "
        f"| {_f(m['in_process_restored']['delta_mb'])} |")
    add(f"| in-process, 100k put_json: delta over imports "
        f"| {_f(m['in_process_put']['delta_mb'])} |")
    add(f"| redis-server, same 100k records | {_f(m['redis_100k_mb'])} |")
    add("")
    add("**Targets**")
    add("")
    add("| target | measured | |")
    add("|---|---|---|")
    for t in results["targets"]:
        verdict = "pending" if t["met"] is None else "met" if t["met"] else "MISSED"
        add(f"| {t['target']} | {t['figure']} | {verdict} |")
    return "\n".join(out) + "\n"
