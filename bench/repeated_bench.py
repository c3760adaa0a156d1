"""A repeated mask through HTTP (issue 10): `/api/evaluate` answered from the store, significance included.

    python -m bench.repeated_bench --out bench/results/repeated.json

A real server (the API alone, the prepared default model, a fresh result store) scores one single-head
mask on all of dev once (this prepares the split and stores the answer with its significance), then the
same request `--requests` more times, one after another. Each repeat must come back `cached: true` with
the very same score and significance (interval and p-value: seeded, stored with the score). Target: p50
<= 20 ms. The machine's load average is recorded beside the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import httpx
from headscope.settings import Settings

from bench.benchmark import benchmark_cache_dir, free_port, running_server, timed_requests, wait_until_ready
from bench.engine_bench import percentiles_ms, verdict, write_report

TARGET_P50_MS = 20.0


def run(args: argparse.Namespace) -> dict:
    source = Path(args.cache_dir or Settings().cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        cache = benchmark_cache_dir(source, Path(tmp) / "cache")
        port = free_port()
        with running_server("api", cache, port, Path(tmp) / "server.log", args.threads) as (process, started), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            wait_until_ready(client, process, started, Path(tmp) / "server.log")
            layers = client.get("/api/model").json()["num_layers"]
            mask = {"ablate": [[layers // 2, 1]], "mode": args.mode}
            first = client.post("/api/evaluate", json=mask).raise_for_status().json()
            load_before = os.getloadavg()
            seconds, last = timed_requests(lambda: client.post("/api/evaluate", json=mask), args.requests)
            load_after = os.getloadavg()
    repeated = last.json()
    same = {k: repeated[k] for k in ("score", "delta", "significance")} == \
        {k: first[k] for k in ("score", "delta", "significance")}
    if first["cached"] or not repeated["cached"] or not same or not repeated["significance"]:
        raise AssertionError("a repeated mask must come from the store with the first answer's score and significance")
    figures = percentiles_ms(seconds)
    return {"what": "/api/evaluate, the same single-head mask on all of dev again, from the store (significance "
                    "included)", "mask": mask, "n": first["n"], "requests": len(seconds),
            "first_ms": first["elapsed_ms"], "significance": repeated["significance"], "evaluate_ms": figures,
            "target_p50_ms": TARGET_P50_MS, "passes": figures["p50_ms"] <= TARGET_P50_MS,
            "load_average_1_5_15": {"before": load_before, "after": load_after}, "cpus": os.cpu_count()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/repeated.json"))
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--mode", default="zero")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in the server")
    args = parser.parse_args(argv)
    result = run(args)
    e = result["evaluate_ms"]
    summary = (f"repeated mask via /api/evaluate (stored, with significance): p50 {e['p50_ms']:.1f} ms, p95 "
               f"{e['p95_ms']:.1f} ms " + verdict(result, f"p50 <= {TARGET_P50_MS:.0f} ms"))
    write_report(result, args.out, summary)


if __name__ == "__main__":
    main()
