"""Interactive calls beside a sweep (issue 10): `/api/attention` latency while a single-head job runs.

    python -m bench.interactive_bench --out bench/results/interactive.json

A real server (the API alone, the prepared default model, a fresh result store) runs a `single-head`
job on the first `--limit` dev sentences; meanwhile one client sends `/api/attention` for one head with
a fresh short text each call (so nothing is memoised), one call after another. Only calls that started
and ended while the job was running count. Target: p95 <= 1.5 s on a 2-core CPU machine. The machine's
load average is recorded beside the figures, since other work on the machine slows both.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import httpx
from headscope.engine.default_model import load_builtin_task
from headscope.settings import Settings

from bench.benchmark import benchmark_cache_dir, free_port, running_server, wait_until_ready
from bench.engine_bench import percentiles_ms, verdict, write_report

TARGET_P95_S = 1.5


def short_texts(cache_dir: Path, count: int) -> list[str]:
    """Fresh inputs: distinct test sentences (never seen by the server before), cut to 12 words."""
    sentences = [e.text for e in load_builtin_task("rt-snippets", cache_dir).split("test")]
    return [" ".join(s.split()[:12]) for s in sentences[:count]]


def run(args: argparse.Namespace) -> dict:
    source = Path(args.cache_dir or Settings().cache_dir)
    texts = short_texts(source, args.requests * 4)
    with tempfile.TemporaryDirectory() as tmp:
        cache = benchmark_cache_dir(source, Path(tmp) / "cache")
        port = free_port()
        with running_server("api", cache, port, Path(tmp) / "server.log") as (process, started), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
            wait_until_ready(client, process, started, Path(tmp) / "server.log")
            client.post("/api/attention", json={"text": "warm up", "heads": [[0, 0]]}).raise_for_status()
            job = client.post("/api/jobs", json={"kind": "single-head", "mode": "zero", "limit": args.limit}).json()
            while client.get(f"/api/jobs/{job['id']}").json()["progress"] <= 0:  # its split prepared, sweeping
                time.sleep(0.2)
            seconds, used = [], iter(texts)
            load_before = os.getloadavg()
            while len(seconds) < args.requests:
                text = next(used)
                began = time.perf_counter()
                client.post("/api/attention", json={"text": text, "heads": [[0, 0]]}).raise_for_status()
                took = time.perf_counter() - began
                state = client.get(f"/api/jobs/{job['id']}").json()
                if state["state"] != "running":
                    raise RuntimeError(f"the job ended ({state['state']}) after {len(seconds)} calls: "
                                       "raise --limit so it outlasts the measurement")
                seconds.append(took)
            load_after = os.getloadavg()
            client.delete(f"/api/jobs/{job['id']}")
    figures = percentiles_ms(seconds)
    return {"what": "/api/attention (one head, fresh 12-word text) while a single-head job runs",
            "job": {"kind": "single-head", "mode": "zero", "limit": args.limit}, "requests": len(seconds),
            "attention_ms": figures, "target_p95_ms": TARGET_P95_S * 1000,
            "passes": figures["p95_ms"] <= TARGET_P95_S * 1000,
            "load_average_1_5_15": {"before": load_before, "after": load_after}, "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/interactive.json"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=300, help="dev sentences the single-head job sweeps")
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args(argv)
    result = run(args)
    a = result["attention_ms"]
    summary = (f"/api/attention during a single-head sweep: p50 {a['p50_ms']:.0f} ms, p95 {a['p95_ms']:.0f} ms "
               + verdict(result, f"p95 <= {TARGET_P95_S * 1000:.0f} ms"))
    write_report(result, args.out, summary)


if __name__ == "__main__":
    main()
