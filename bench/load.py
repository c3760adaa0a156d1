"""A bounded load test of the API on a loopback port: requests per second, p50/p95 latency and errors
for a mix of attention and evaluate calls, as a dashboard produces them.

    HEADSCOPE_CACHE_DIR=/work/cache python bench/load.py --requests 300 --clients 8 \
        --out bench/results/load.json

Without --url it starts the API in this process (settings from HEADSCOPE_* variables) on 127.0.0.1 at
a free port. It only ever talks to a loopback address, sends at most --requests requests from at most
64 clients, and stops sending after --max-seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import queue
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import httpx

MAX_CLIENTS = 64
MAX_REQUESTS = 10_000


@dataclass(frozen=True)
class Call:
    kind: str  # "attention" or "evaluate"
    body: dict


@dataclass(frozen=True)
class Outcome:
    kind: str
    status: int  # 0 = no HTTP answer (connection error or timeout)
    seconds: float
    cached: bool = False


def require_loopback(url: str) -> None:
    host = urlparse(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        sys.exit(f"refusing to load {url}: only loopback addresses (127.0.0.1, ::1, localhost) are allowed")


@contextmanager
def local_server() -> Iterator[str]:
    """The API from HEADSCOPE_* settings, served by uvicorn in a thread on 127.0.0.1 at a free port."""
    from headscope.api.app import create_app
    from headscope.server import serve_in_thread
    from headscope.settings import Settings

    with serve_in_thread(lambda _url: create_app(Settings(host="127.0.0.1")), start_timeout_s=1800) as url:
        yield url


def plan_calls(model: dict, texts: list[str], count: int, attention_share: float, modes: list[str],
               seed: int) -> list[Call]:
    """A dashboard-like mix: attention for a few texts under small masks, mostly one head at a time (the
    heatmap), sometimes every head; evaluations of single-head masks from a small pool, so that some repeat."""
    rng = random.Random(seed)
    layers, heads = model["num_layers"], model["num_heads"]

    def random_head() -> list[int]:
        return [rng.randrange(layers), rng.randrange(heads)]

    mask_pool = [[random_head()] for _ in range(max(4, count // 20))]
    calls = []
    for _ in range(count):
        if rng.random() < attention_share:
            body = {"text": rng.choice(texts), "ablate": [random_head() for _ in range(rng.randint(0, 3))],
                    "mode": rng.choice(modes), "format": rng.choice(["json", "f16"])}
            if rng.random() < 0.8:
                body["heads"] = [random_head()]
            calls.append(Call("attention", body))
        else:
            calls.append(Call("evaluate", {"ablate": rng.choice(mask_pool), "mode": rng.choice(modes)}))
    return calls


def run_calls(url: str, calls: list[Call], clients: int, timeout_s: float, max_seconds: float) -> tuple[
        list[Outcome], float]:
    pending: queue.SimpleQueue[Call] = queue.SimpleQueue()
    for call in calls:
        pending.put(call)
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    deadline = time.monotonic() + max_seconds

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=timeout_s) as client:
            while time.monotonic() < deadline:
                try:
                    call = pending.get_nowait()
                except queue.Empty:
                    return
                started = time.perf_counter()
                try:
                    response = client.post(f"/api/{call.kind}", json=call.body)
                    status = response.status_code
                    cached = call.kind == "evaluate" and status == 200 and response.json()["cached"]
                except httpx.HTTPError:
                    status, cached = 0, False
                with lock:
                    outcomes.append(Outcome(call.kind, status, time.perf_counter() - started, cached))

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes, time.perf_counter() - started


def latency_summary(outcomes: list[Outcome]) -> dict:
    if not outcomes:
        return {"count": 0}
    millis = sorted(o.seconds * 1000 for o in outcomes)
    cuts = statistics.quantiles(millis, n=100, method="inclusive") if len(millis) > 1 else millis * 99
    return {"count": len(millis), "p50_ms": round(cuts[49], 1), "p95_ms": round(cuts[94], 1),
            "max_ms": round(millis[-1], 1), "errors": sum(not 200 <= o.status < 300 for o in outcomes)}


def measure(url: str, args: argparse.Namespace) -> dict:
    with httpx.Client(base_url=url, timeout=args.timeout) as client:
        model = client.get("/api/model").json()
        modes = args.modes or list(model["ablation_modes"])  # the server's modes unless some were named
        warm_started = time.perf_counter()
        texts = [item["text"] for item in client.get("/api/examples", params={"limit": 40}).json()["items"]]
        for mode in modes:  # baseline, layer cache and (for mean) the stored head means, outside the timing
            client.post("/api/evaluate", json={"ablate": [[0, 0]], "mode": mode, "limit": 1}).raise_for_status()
        client.post("/api/evaluate", json={}).raise_for_status()
        warm_up_s = time.perf_counter() - warm_started
    calls = plan_calls(model, texts, args.requests, args.attention_share, modes, args.seed)
    outcomes, elapsed = run_calls(url, calls, args.clients, args.timeout, args.max_seconds)
    evaluations = [o for o in outcomes if o.kind == "evaluate"]
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model["name"], "task": model["task"], "device": model["device"], "dtype": model["dtype"],
        "num_layers": model["num_layers"], "num_heads": model["num_heads"],
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {"requests": args.requests, "clients": args.clients, "attention_share": args.attention_share,
                     "modes": modes, "seed": args.seed, "queue_size": model["limits"]["queue_size"]},
        "warm_up_s": round(warm_up_s, 1),
        "sent": len(outcomes), "duration_s": round(elapsed, 2),
        "requests_per_s": round(len(outcomes) / elapsed, 2) if elapsed else None,
        "overall": latency_summary(outcomes),
        "attention": latency_summary([o for o in outcomes if o.kind == "attention"]),
        "evaluate": {**latency_summary(evaluations), "cached": sum(o.cached for o in evaluations)},
        "statuses": {str(k): v for k, v in sorted(Counter(o.status for o in outcomes).items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running API on a loopback address; default: start one here")
    parser.add_argument("--requests", type=int, default=300, help=f"total calls (at most {MAX_REQUESTS})")
    parser.add_argument("--clients", type=int, default=8, help=f"simultaneous clients (at most {MAX_CLIENTS})")
    parser.add_argument("--attention-share", type=float, default=0.8, help="fraction of calls that are attention")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=None,
                        help="comma-separated ablation modes (default: every mode /api/model lists)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop sending after this long")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    if not 1 <= args.requests <= MAX_REQUESTS or not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--requests must be 1..{MAX_REQUESTS} and --clients 1..{MAX_CLIENTS}")
    if args.url:
        require_loopback(args.url)
        report = measure(args.url.rstrip("/"), args)
    else:
        with local_server() as url:
            report = measure(url, args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
