"""Ratios against DRUM and the Markdown report.

Every Tandem cell is divided by the DRUM gunicorn cell of the same scenario and the same worker
count from the same run (Tandem's Flask development server is one process, so it is set against
DRUM with 1 worker). Those ratios lead each table; absolute figures follow.
"""

from __future__ import annotations

from typing import Any

# (metric key in a cell, ratio key, higher is better)
RATIOS = (
    ("rps", "rps_x", True),
    ("p99_ms", "p99_x", False),
    ("server_cpu_ms_per_req", "cpu_x", False),
    ("rss_mb", "rss_x", False),
    ("pss_mb", "pss_x", False),
    ("worker_rss_mb", "worker_rss_x", False),
)
_MB = {"rss_x": "rss_mb", "pss_x": "pss_mb", "worker_rss_x": "worker_rss_mb"}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def add_ratios(cells: list[dict[str, Any]], startups: dict[tuple[str, str], float]) -> None:
    """Set each cell's ``*_x`` ratios against DRUM's cell (same scenario, same workers)."""
    drum = {(c["scenario"], c["workers"]): c for c in cells if c["impl"] == "drum"}
    for cell in cells:
        ref = drum.get((cell["scenario"], cell["compare_workers"]))
        cell["drum_ref"] = ref["server"] if ref else None
        for key, rkey, _ in RATIOS:
            cell[rkey] = _ratio(cell.get(key), ref.get(key)) if ref else None
        mine = startups.get((cell["server"], cell["model"]))
        theirs = startups.get((ref["server"], cell["model"])) if ref else None
        cell["startup_s"] = mine
        cell["startup_x"] = _ratio(mine, theirs)


def _x(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}×"


def _num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _find(cells: list[dict[str, Any]], server: str, scenario: str) -> dict[str, Any] | None:
    for c in cells:
        if c["server"] == server and c["scenario"] == scenario:
            return c
    return None


# Headline rows: (label, scenario key, ratio key, target text by stack, raw metric, raw unit)
HEADLINE = (
    (
        "1 row, 8 conns, keep-alive: req/s",
        "regression/1row/c8/keepalive",
        "rps_x",
        {"fastapi": "≥ 5×", "gunicorn": "≥ 3×"},
    ),
    (
        # DRUM closes every connection whatever the client asks, so the target is read on the
        # keep-alive row; this one shows what a client that cannot keep connections gets.
        "1 row, 8 conns, Connection: close: req/s",
        "regression/1row/c8/close",
        "rps_x",
        {},
    ),
    (
        "1 row, 32 conns, keep-alive: p99",
        "regression/1row/c32/keepalive",
        "p99_x",
        {"fastapi": "≤ 0.2×"},
    ),
    (
        "1000 rows, 4 conns, keep-alive: req/s",
        "regression/1000rows/c4/keepalive",
        "rps_x",
        {"fastapi": "≥ 2×"},
    ),
    (
        "server CPU per 1-row request (8 conns, keep-alive)",
        "regression/1row/c8/keepalive",
        "cpu_x",
        {"fastapi": "≤ 1 ms"},
    ),
    (
        "RSS per worker process, after 1-row load",
        "regression/1row/c8/keepalive",
        "worker_rss_x",
        {"fastapi": "≤ 0.75×"},
    ),
    (
        "RSS (all processes), after 1-row load",
        "regression/1row/c8/keepalive",
        "rss_x",
        {},
    ),
    (
        "PSS (all processes), after 1-row load",
        "regression/1row/c8/keepalive",
        "pss_x",
        {},
    ),
)


def _headline_value(cell: dict[str, Any] | None, rkey: str) -> str:
    if cell is None:
        return "–"
    if rkey == "cpu_x":
        return f"{_x(cell.get(rkey))} ({_num(cell.get('server_cpu_ms_per_req'), 2)} ms)"
    if rkey == "p99_x":
        return f"{_x(cell.get(rkey))} ({_num(cell.get('p99_ms'))} ms)"
    if rkey in _MB:
        return f"{_x(cell.get(rkey))} ({_num(cell.get(_MB[rkey]), 0)} MB)"
    return f"{_x(cell.get(rkey))} ({_num(cell.get('rps'), 0)}/s)"


def headline_tables(results: dict[str, Any]) -> list[str]:
    """One table per worker count: Tandem stacks as columns, ratios to DRUM as values."""
    cells = results["cells"]
    servers = results["servers"]
    out: list[str] = []
    for workers in sorted({s["workers"] for s in servers}):
        drum = [s for s in servers if s["impl"] == "drum" and s["workers"] == workers]
        tandem = [s for s in servers if s["impl"] == "tandem" and s["compare_workers"] == workers]
        if not drum or not tandem:
            continue
        d = drum[0]
        out.append(f"#### {workers} worker{'s' if workers > 1 else ''}: vs {d['label']}")
        out.append("")
        head = "| metric (ratio to DRUM; value) | target (fastapi / gunicorn) | DRUM |"
        mismatched = {c["server"] for c in results["identity"] if not c["identical"]}
        head += "".join(
            f" {s['label']}{' ⚠ MISMATCH' if s['name'] in mismatched else ''} |" for s in tandem
        )
        out.append(head)
        out.append("|---|---|---|" + "---|" * len(tandem))
        for label, scenario, rkey, targets in HEADLINE:
            dcell = _find(cells, d["name"], scenario)
            if dcell is None:
                continue
            if rkey == "cpu_x":
                dval = f"{_num(dcell.get('server_cpu_ms_per_req'), 2)} ms"
            elif rkey == "p99_x":
                dval = f"{_num(dcell.get('p99_ms'))} ms"
            elif rkey in _MB:
                dval = f"{_num(dcell.get(_MB[rkey]), 0)} MB"
            else:
                dval = f"{_num(dcell.get('rps'), 0)}/s"
            target = " / ".join(targets.get(k, "–") for k in ("fastapi", "gunicorn"))
            row = f"| {label} | {target} | {dval} |"
            row += "".join(
                f" {_headline_value(_find(cells, s['name'], scenario), rkey)} |" for s in tandem
            )
            out.append(row)

        # noise row: CPU used by everything else while this server's regression cells ran
        def noise(name: str) -> str:
            vals = [
                c["other_load_cores"]
                for c in cells
                if c["server"] == name and c["model"] == "regression"
            ]
            return _num(sum(vals) / len(vals), 2) if vals else "–"

        row = f"| noise: other CPU load during these cells (cores) | – | {noise(d['name'])} |"
        row += "".join(f" {noise(s['name'])} |" for s in tandem)
        out.append(row)
        # start-up row
        dstart = _num(d["startup_s"].get("regression"), 2)
        row = f"| start-up to first 200 (regression) | – | {dstart} s |"
        for s in tandem:
            mine = s["startup_s"].get("regression")
            theirs = d["startup_s"].get("regression")
            row += f" {_x(_ratio(mine, theirs))} ({_num(mine, 2)} s) |"
        out.append(row)
        out.append("")
    return out


def identity_section(results: dict[str, Any]) -> list[str]:
    """The byte-identity check, loud when anything differs."""
    checks = results["identity"]
    bad = [c for c in checks if not c["identical"]]
    when = (
        "every server checked before anything was timed"
        if results["meta"].get("verify_first")
        else "each server checked right before it was timed"
    )
    out = [f"## Byte identity against DRUM ({when})", ""]
    if bad:
        out.append(
            f"> **⚠️ BYTE MISMATCH: {len(bad)} of {len(checks)} answers differ from DRUM's.** "
            "Cells of these servers are marked ⚠ below; their speed is not comparable."
        )
        out.append("")
        for c in bad:
            out.append(f"> - **{c['server']}** {c['model']} {c['payload']}: {c['detail']}")
        out.append("")
    else:
        out.append(
            f"All {len(checks)} answers are identical to DRUM's (status, Content-Type and body "
            "bytes) on every benchmark payload."
        )
        out.append("")
    payload_keys = sorted({(c["model"], c["payload"]) for c in checks})
    out.append("| server | " + " | ".join(f"{m}, {p}" for m, p in payload_keys) + " |")
    out.append("|---|" + "---|" * len(payload_keys))
    for server in dict.fromkeys(c["server"] for c in checks):
        row = f"| {server} |"
        for m, p in payload_keys:
            match = [
                c for c in checks if c["server"] == server and c["model"] == m and c["payload"] == p
            ]
            if not match:
                row += " – |"
            elif match[-1]["reference"]:
                row += " reference |"
            else:
                row += " ✓ |" if all(c["identical"] for c in match) else " **✗ MISMATCH** |"
        out.append(row)
    out.append("")
    return out


def cells_table(results: dict[str, Any]) -> list[str]:
    """Every cell, grouped by scenario and worker count, DRUM first."""
    mismatched = {c["server"] for c in results["identity"] if not c["identical"]}
    out = [
        "## All cells",
        "",
        "Ratios are against DRUM gunicorn with the same worker count in this run. Errors are "
        "non-2xx (wrk counts status ≥ 400) plus socket errors. CPU is the server's own "
        "(all its processes, from /proc/<pid>/stat) per completed request. RSS/PSS are summed "
        "over the server's processes right after the run. 'other load' is the CPU (in cores) "
        "used by everything except the server and wrk during the run: the noise.",
        "",
        "| scenario | server | req/s ×DRUM | p99 ×DRUM | CPU/req ×DRUM | RSS ×DRUM | req/s |"
        " p50 ms | p99 ms | errors | CPU ms/req | RSS MB | PSS MB | start-up s | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {s["name"]: i for i, s in enumerate(results["servers"])}
    cells = sorted(
        results["cells"],
        key=lambda c: (c["scenario_index"], c["compare_workers"], order.get(c["server"], 99)),
    )
    for c in cells:
        flag = " ⚠ MISMATCH" if c["server"] in mismatched else ""
        out.append(
            f"| {c['scenario_label']} | {c['label']}{flag} |"
            f" {_x(c['rps_x'])} | {_x(c['p99_x'])} | {_x(c['cpu_x'])} | {_x(c['rss_x'])} |"
            f" {_num(c['rps'], 0)} | {_num(c['p50_ms'])} | {_num(c['p99_ms'])} |"
            f" {c['errors']} | {_num(c['server_cpu_ms_per_req'], 2)} |"
            f" {_num(c['rss_mb'], 0)} | {_num(c['pss_mb'], 0)} | {_num(c['startup_s'], 2)} |"
            f" {_num(c['other_load_cores'], 2)} |"
        )
    out.append("")
    return out


def router_section(results: dict[str, Any]) -> list[str]:
    """The same 1-row load on Tandem fastapi ×1, directly and through the rollout router."""
    router = results.get("router")
    if not router:
        return []
    out = ["## Through the rollout router", ""]
    if router.get("skipped"):
        out += [f"Not run: {router['skipped']}.", ""]
        return out
    if router.get("error"):
        out += [f"> **⚠️ The rollout-router scenario failed:** {router['error']}", ""]
        return out
    check = router["routed_answer"]
    answer = (
        "The routed answer to the 1-row payload was identical to the direct one through every "
        "engine (status, Content-Type and body)."
        if check["identical"]
        else f"**⚠️ A routed answer differs from the direct one:** {check['detail']}."
    )
    payload = router["payload"].replace(" ", "-")
    targets = router.get("targets") or {}
    out += [
        f"{router['server']} serving the {router['model']} model, right after its own cells: "
        f"the same {payload} load directly and through each traffic engine, whose baseline and "
        f"candidate are both that server (weight {router['weight_bp'] / 100:g} %, mirror rate "
        f"{router['mirror_rate']:g}): `builtin` is the rollout router "
        "(`python -m tandem.rollout.router`), `nginx` is Debian's nginx (one worker) running the "
        "include file `tandem rollout --traffic nginx` writes. One wrk keep-alive run of "
        f"{router['duration_s']:g} s each, direct then routed, after a {router['warmup_s']:g} s "
        "warm-up through the engine. Engine CPU is the engine's own (all its processes) per "
        "routed request, from /proc/<pid>/stat; RSS/PSS right after the routed run. Errors are "
        f"direct / routed. {answer}",
        "",
    ]
    if targets:
        out += [
            "Targets: "
            + "; ".join(
                f"{engine} adds at most {t['cpu_ms_max']:g} ms CPU per request and serves at "
                f"least {t['ratio_min']:g}× direct"
                for engine, t in targets.items()
            )
            + ", judged from 8 connections up (with one connection req/s is 1 / latency, and "
            "any extra hop lowers it whatever the engine costs).",
            "",
        ]
    for engine, why in (router.get("not_run") or {}).items():
        out += [f"> **{engine} not run:** {why}", ""]
    out += [
        "| engine | connections | req/s direct | req/s routed | routed ÷ direct | p50 ms direct |"
        " p50 ms routed | p99 ms direct | p99 ms routed | engine CPU ms/req | RSS MB |"
        " PSS MB | errors | targets |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in router["rows"]:
        met = r.get("meets_targets")
        mark = "–" if met is None else ("met" if met else "**missed**")
        out.append(
            f"| {r.get('engine', 'builtin')} | {r['connections']} | {_num(r['direct_rps'], 0)} |"
            f" {_num(r['routed_rps'], 0)} | {_x(r['routed_over_direct'])} |"
            f" {_num(r['direct_p50_ms'], 2)} | {_num(r['routed_p50_ms'], 2)} |"
            f" {_num(r['direct_p99_ms'], 2)} | {_num(r['routed_p99_ms'], 2)} |"
            f" {_num(r['router_cpu_ms_per_request'], 3)} | {_num(r['router_rss_mb'], 0)} |"
            f" {_num(r['router_pss_mb'], 0)} | {r['direct_errors']} / {r['errors']} | {mark} |"
        )
    out.append("")
    return out


def startup_table(results: dict[str, Any]) -> list[str]:
    """Start-up times and idle memory per server and model."""
    out = [
        "## Start-up and idle memory",
        "",
        "Seconds from launch to the first 200 on `/readyz` (Tandem) or `/` (DRUM, which has no "
        "`/readyz`); memory right after start-up, before any load. Every start of the run is "
        "listed; the tables above use the mean.",
        "",
        "| server | model | start-up s (each start) | RSS MB | PSS MB | processes |",
        "|---|---|---|---|---|---|",
    ]
    for s in results["servers"]:
        for model, samples in s["startup_samples"].items():
            mem = s["idle_memory"].get(model) or {}
            out.append(
                f"| {s['label']} | {model} | {', '.join(f'{x:.2f}' for x in samples)} |"
                f" {_num(mem.get('rss_mb'), 0)} | {_num(mem.get('pss_mb'), 0)} |"
                f" {mem.get('processes', '–')} |"
            )
    out.append("")
    return out


def markdown(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = results["meta"]
    mode = "quick" if meta["quick"] else "full"
    lines = [
        f"# Tandem vs DataRobot DRUM {meta['drum']['datarobot-drum']} — {meta['started']} ({mode})",
        "",
        f"- Machine: {meta['machine']['nproc']} CPUs (`nproc`), {meta['machine']['cpu_model']}, "
        f"{meta['machine']['mem_gib']:.0f} GiB; load average {meta['loadavg_start']} at start, "
        f"{meta['loadavg_end']} at end.",
        f"- Load generator: {meta['wrk']}, ≤ {meta['max_threads']} threads, on the same machine: "
        "**it shares the CPUs with the server** (and with whatever else runs here).",
        f"- Each cell: one wrk run of {meta['duration_s']:g} s, after a {meta['warmup_s']:g} s "
        f"warm-up of each server ({'1-row payload only' if meta['quick'] else 'each payload'}); "
        "all traffic on 127.0.0.1.",
        "- DRUM's gunicorn config sets `keepalive = 0`: it closes every connection, so its "
        "keep-alive and close runs are the same for it.",
        f"- DRUM venv: python {meta['drum']['python']}, scikit-learn "
        f"{meta['drum'].get('scikit-learn')}, pandas {meta['drum'].get('pandas')}, numpy "
        f"{meta['drum'].get('numpy')}. Tandem venv: tandem {meta['tandem'].get('tandem')}, "
        f"python {meta['tandem'].get('python')}, scikit-learn {meta['tandem'].get('scikit-learn')}"
        f", pandas {meta['tandem'].get('pandas')}, numpy {meta['tandem'].get('numpy')}.",
        f"- Tandem code: {meta['tandem_source']}.",
        f"- Models: {meta['models_note']}",
        "- DRUM has no `/readyz`: its start-up is timed to the first 200 on `/`.",
        f"- Wall time of the run: {meta.get('wall_s', 0):.0f} s ("
        + ", ".join(f"{k} {v:.0f} s" for k, v in meta.get("time_breakdown_s", {}).items())
        + ").",
        "",
    ]
    if results.get("failures"):
        lines.append("> **⚠️ FAILURES**")
        for f in results["failures"]:
            lines.append(f"> - {f}")
        lines.append("")
    lines.append("## Headline: Tandem ÷ DRUM gunicorn, same worker count, same run")
    lines.append("")
    lines += headline_tables(results)
    lines += identity_section(results)
    lines += router_section(results)
    lines += cells_table(results)
    lines += startup_table(results)
    return "\n".join(lines)
