"""Steady load on every Tandem stack for a while, watching memory: is RSS flat after warm-up?

    .venv/bin/python bench/soak.py                 # 10 minutes per stack after 1 minute's warm-up
    .venv/bin/python bench/soak.py --minutes 1     # a quick look

Each stack serves examples/regression on 127.0.0.1 (Gunicorn and FastAPI with two workers) and
gets a bounded load of 1-row and 100-row predictions from four client threads. The RSS of every
server process is summed every 5 s; the verdict compares the last minute's mean with the mean of
the minute after warm-up. Pass: within 5 % on every stack, no failed request. Prints a Markdown
table; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import httpx
import psutil
from benchlib.example_server import ROOT, serve_example

STACKS = (("flask", 1), ("gunicorn", 2), ("fastapi", 2))
ROWS = (ROOT / "examples" / "regression" / "data.csv").read_bytes().decode().splitlines()
ONE = "\n".join(ROWS[:2]).encode() + b"\n"
HUNDRED = ("\n".join([ROWS[0], *(ROWS[1:] * 20)[:100]]) + "\n").encode()


def _rss(pid: int) -> int:
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


def soak(stack: str, workers: int, warmup: float, duration: float) -> dict[str, object]:
    """Serve, load and sample one stack."""
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    samples: list[tuple[float, int]] = []
    with serve_example(stack, workers) as (server, url):

        def client(n: int) -> None:
            with httpx.Client(base_url=url, timeout=30) as http:
                i = 0
                while not stop.is_set():
                    body = HUNDRED if (i + n) % 10 == 0 else ONE
                    i += 1
                    try:
                        ok = (
                            http.post(
                                "/predict/", content=body, headers={"Content-Type": "text/csv"}
                            ).status_code
                            == 200
                        )
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        counts["ok" if ok else "failed"] += 1

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < warmup + duration:
            samples.append((elapsed, _rss(server.pid)))
            time.sleep(5)
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    window = min(60.0, duration / 2)
    first = [r for t, r in samples if warmup <= t < warmup + window]
    last = [r for t, r in samples if t >= warmup + duration - window]
    before, after = statistics.mean(first), statistics.mean(last)
    growth = (after - before) / before * 100
    return {
        "stack": f"{stack} ×{workers}",
        "requests": counts["ok"] + counts["failed"],
        "failed": counts["failed"],
        "rss_after_warmup_mib": round(before / 1048576, 1),
        "rss_at_end_mib": round(after / 1048576, 1),
        "growth_pct": round(growth, 2),
        "ok": abs(growth) <= 5.0 and counts["failed"] == 0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds")
    args = parser.parse_args()
    rows = [soak(stack, workers, args.warmup, args.minutes * 60) for stack, workers in STACKS]
    print("| stack | requests | failed | RSS after warm-up (MiB) | RSS at the end (MiB) | change |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['stack']} | {row['requests']} | {row['failed']} | "
            f"{row['rss_after_warmup_mib']} | {row['rss_at_end_mib']} | "
            f"{row['growth_pct']:+.2f} % |"
        )
    return 0 if all(row["ok"] for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
