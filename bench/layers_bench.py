"""Speed of the Layers analyses (issue 14) on the prepared default model, one run, figures in JSON.

    python -m bench.layers_bench            # HEADSCOPE_CACHE_DIR or ~/.cache/headscope; or --cache-dir DIR

Figures (targets from the issue, on a 2-core CPU), each printed with its ratio to the target:
- the `layers` job on the whole dev split through the job manager, on a fresh result store and a fresh
  engine, so the dev split and the probe's 2,000 train examples are prepared inside the timing (<= 120 s);
- the same job under a mask (all of the last layer in zero mode), the splits already prepared;
- one `POST /api/representations` on the unablated model through the app in process (request
  validation, the model gate, the states, the PCA and the JSON included), on a fresh engine whose dev
  split is prepared and nothing else (so no readout is kept yet) (<= 10 s); then a second request for
  another state, answered from the readout the first one kept. The dev split's preparation on that
  engine (the baseline pass over 1,000 sentences) is timed too: it is what the job's passes cost.
Each figure is wall-clock time; beside it the process's CPU time (all its threads) and the machine's
load average before and after: on a shared machine they say how busy the CPU was and how much of the
wait was this work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.default_model import METADATA_FILE, default_model_dir
from headscope.engine.workspace import build_engine
from headscope.settings import Settings

from bench.benchmark import benchmark_cache_dir
from bench.engine_bench import environment

JOB_TARGET_S = 120.0
REPRESENTATIONS_TARGET_S = 10.0


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def timed_job(jobs: JobManager, **request: Any) -> dict[str, Any]:
    """One `layers` job, waited on."""
    before = load()
    started, cpu = time.perf_counter(), time.process_time()
    job = jobs.submit("layers", **request)
    done = jobs.wait(job.id, timeout=3600)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    if done.state != "done":
        raise SystemExit(f"layers job {request} ended {done.state}: {done.error}")
    return {"request": request, "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "load_before": before,
            "load_after": load(), "result": done.result}


def timed_post(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    before = load()
    started, cpu = time.perf_counter(), time.process_time()
    response = client.post("/api/representations", json=body)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    if response.status_code != 200:
        raise SystemExit(f"representations: {response.status_code} {response.text}")
    answer = response.json()
    return {"request": body, "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "load_before": before,
            "load_after": load(), "n": answer["n"], "explained": answer["explained"]}


def check(figure: str, measured: dict[str, Any], target_s: float) -> dict[str, Any]:
    return {"figure": figure, "seconds": measured["seconds"], "cpu_seconds": measured["cpu_seconds"],
            "target_s": target_s, "ratio": round(measured["seconds"] / target_s, 3),
            "pass": measured["seconds"] <= target_s, "load": [measured["load_before"][0], measured["load_after"][0]]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = Settings().cache_dir if args.cache_dir is None else args.cache_dir
    if not (default_model_dir(source) / METADATA_FILE).is_file():
        raise SystemExit(f"no prepared default model under {source}; run `headscope prepare` first")
    with tempfile.TemporaryDirectory(prefix="headscope-layers-bench-") as scratch:
        settings = Settings(cache_dir=benchmark_cache_dir(source, Path(scratch) / "cache"), model=None,
                            task="rt-snippets")
        engine = build_engine(settings)
        jobs = JobManager(engine)
        try:
            cold = timed_job(jobs, mode="zero", split=args.split, limit=args.limit)
            last_layer = [[engine.model.num_layers - 1, h] for h in range(engine.model.num_heads)]
            masked = timed_job(jobs, mode="zero", split=args.split, limit=args.limit, ablate=last_layer)
        finally:
            jobs.close()
        # representations: a fresh engine on the same store, its dev split prepared and nothing else
        fresh = build_engine(settings)
        started = time.perf_counter()
        fresh.prepared(args.split, args.limit)
        prepare_s = time.perf_counter() - started
        body = {"layer": args.layer, "split": args.split, "limit": args.limit, "pooling": "first"}
        with TestClient(create_app(settings, engine=fresh)) as client:
            representations = timed_post(client, body)
            again = timed_post(client, {**body, "layer": (args.layer + 1) % (fresh.model.num_layers + 1)})
    checks = [
        check("layers job, dev, fresh engine and store (preparation included)", cold, JOB_TARGET_S),
        check("layers job, dev, all of the last layer off (zero), splits prepared", masked, JOB_TARGET_S),
        check(f"POST /api/representations, state {args.layer}, unablated, split prepared", representations,
              REPRESENTATIONS_TARGET_S),
        check("POST /api/representations, another state, same mask (the kept readout)", again,
              REPRESENTATIONS_TARGET_S),
    ]
    return {"command": "python -m bench.layers_bench " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(engine),
            "checks": checks, "layers_job": cold, "layers_job_masked": masked,
            "prepare_dev_before_representations_s": round(prepare_s, 2), "representations": representations,
            "representations_again": again}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/layers.json"))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the prepared default model is (default: HEADSCOPE_CACHE_DIR or ~/.cache/headscope)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--layer", type=int, default=3, help="the state the representations request projects")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for check in result["checks"]:
        verdict = "PASS" if check["pass"] else "FAIL"
        print(f"{check['figure']}: {check['seconds']:.1f} s wall = {check['ratio']:.2f} x the "
              f"{check['target_s']:.0f} s target, {verdict} ({check['cpu_seconds']:.1f} s CPU; load average "
              f"{check['load'][0]} -> {check['load'][1]})")
    print(f"torch threads {result['environment']['torch_threads']}; wrote {args.out}")


if __name__ == "__main__":
    main()
