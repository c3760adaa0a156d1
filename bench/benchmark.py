"""The speed benchmark (issue 6): one command, one run, a table on stdout and the figures in JSON.

    python -m bench.benchmark --out bench/results/benchmark.json

It uses the prepared default model (from HEADSCOPE_CACHE_DIR, or ~/.cache/headscope) and its dev split.
HTTP figures come from a real server started as a subprocess on loopback (`headscope serve`, or the
API alone with `--server api`) over a fresh result store; engine figures are measured in this process
on another fresh store, after the server has stopped, so the two never compete for the CPU.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import torch
from headscope.engine.builtin_tasks import load_builtin_task
from headscope.engine.default_model import METADATA_FILE, default_model_dir
from headscope.engine.interventions import ABLATION_MODES
from headscope.engine.workspace import build_engine
from headscope.settings import Settings
from transformers import AutoTokenizer

from bench.engine_bench import (
    Check,
    engine_checks,
    environment,
    format_table,
    measure_attention,
    measure_engine,
    measure_work,
    percentiles_ms,
    write_report,
)
from bench.measures import fresh_texts, measure_norm_cost, norm_cost_check

ATTENTION_TOKENS = 128
START_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 600  # a first full-dev evaluation on a busy 2-core CPU
NORM_TEXTS = 40  # fresh texts for the norm-vs-weights cost, half per measure


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def benchmark_cache_dir(source: Path, cache: Path) -> Path:
    """A cache dir that shares the prepared model and data with `source` but starts with no stored
    results, so 'fresh' means fresh and the benchmark leaves the user's result store alone."""
    cache.mkdir(parents=True)
    for name in ("models", "data", "base"):
        if (source / name).exists():
            (cache / name).symlink_to((source / name).resolve(), target_is_directory=True)
    return cache


def text_of_tokens(tokenizer: Any, sentences: list[str], count: int) -> str:
    """A real-language input of exactly `count` tokens (special tokens included), from the split's text."""
    words = " ".join(sentences).split()
    for offset in range(min(200, len(words))):
        low, high = 1, min(len(words) - offset, 2 * count)  # a word is at least one token
        while low < high:  # the longest prefix from `offset` that fits
            middle = (low + high + 1) // 2
            if len(tokenizer(" ".join(words[offset:offset + middle]))["input_ids"]) <= count:
                low = middle
            else:
                high = middle - 1
        text = " ".join(words[offset:offset + low])
        if len(tokenizer(text)["input_ids"]) == count:
            return text
    raise RuntimeError(f"could not build an input of exactly {count} tokens")


@contextmanager
def running_server(kind: str, cache_dir: Path, port: int, log_path: Path, threads: int | None = None):
    """Start a server subprocess; yields (process, started_at). Stopped (and waited for) on exit."""
    env = {**os.environ, "HEADSCOPE_CACHE_DIR": str(cache_dir), "HEADSCOPE_HOST": "127.0.0.1",
           "HEADSCOPE_PORT": str(port)}
    env.pop("HEADSCOPE_MODEL", None)  # the prepared default model, on its own task
    env["HEADSCOPE_TASK"] = "rt-snippets"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)  # torch's intra-op threads in the server
    if kind == "full":
        command = [sys.executable, "-m", "headscope.cli", "serve", "--port", str(port)]
    else:
        command = [sys.executable, "-c",
                   "from headscope.api.app import serve_api; from headscope.settings import Settings; "
                   "serve_api(Settings())"]
    with log_path.open("wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield process, started
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_ready(client: httpx.Client, process: subprocess.Popen, started: float, log_path: Path,
                     timeout_s: float = START_TIMEOUT_S) -> float:
    """Seconds from launch until both /api/health and /api/model of a server in another process answer 200
    (every bench that starts `headscope serve` waits through this)."""
    while time.perf_counter() - started < timeout_s:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
        try:
            if client.get("/api/health").status_code == 200 and client.get("/api/model").status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a subprocess's port: nothing to wait on
    raise RuntimeError(f"the server did not answer within {timeout_s} s:\n{log_path.read_text()[-3000:]}")


def timed_requests(send: Callable[[], httpx.Response], count: int) -> tuple[list[float], httpx.Response]:
    seconds, response = [], None
    for _ in range(count):
        started = time.perf_counter()
        response = send()
        seconds.append(time.perf_counter() - started)
        response.raise_for_status()
    return seconds, response


def measure_http(client: httpx.Client, text: str, requests: int, log: Callable[[str], None],
                 norm_texts: list[str]) -> dict[str, Any]:
    """Stored-result latency of /api/evaluate, /api/attention latency and size for one head and all, and
    what the norm measure costs against the weights on fresh texts (bench/measures.py)."""
    described = client.get("/api/model").json()
    layers, heads = described["num_layers"], described["num_heads"]
    results: dict[str, Any] = {"model": described}

    mask = {"ablate": [[layers // 2, 1]], "mode": "zero", "split": "dev", "limit": None}
    started = time.perf_counter()
    first = client.post("/api/evaluate", json=mask).raise_for_status().json()
    results["evaluate_first"] = {"ms": (time.perf_counter() - started) * 1000, "cached": first["cached"],
                                 "n": first["n"], "server_elapsed_ms": first["elapsed_ms"]}
    log(f"first /api/evaluate (prepares dev): {results['evaluate_first']['ms']:.0f} ms")
    seconds, last = timed_requests(lambda: client.post("/api/evaluate", json=mask), requests)
    if not last.json()["cached"] or last.json()["score"] != first["score"]:
        raise AssertionError("a repeated mask was not answered from the store with the same score")
    results["evaluate_repeated"] = percentiles_ms(seconds)

    one = {"text": text, "ablate": [], "mode": "zero", "heads": [[layers - 1, 0]], "format": "json"}
    every_json = {**one, "heads": None}
    every_f16 = {**one, "heads": None, "format": "f16"}
    started = time.perf_counter()
    body = client.post("/api/attention", json=one).raise_for_status().json()
    results["attention_first_ms"] = (time.perf_counter() - started) * 1000
    tokens = len(body["tokens"])
    values = layers * heads * tokens * tokens
    for name, payload in (("one_head_json", one), ("all_heads_json", every_json), ("all_heads_f16", every_f16)):
        seconds, response = timed_requests(lambda payload=payload: client.post("/api/attention", json=payload),
                                           requests)
        count = tokens * tokens if payload["heads"] else values
        results[f"attention_{name}"] = {**percentiles_ms(seconds), "bytes": len(response.content),
                                        "bytes_per_value": len(response.content) / count}
    results["attention_tokens"] = tokens
    fresh = []  # a new mask each time: the forward itself, not the memo
    for i in range(min(10, requests)):
        payload = {**one, "ablate": [[i % layers, (i // layers) % heads]]}
        started = time.perf_counter()
        client.post("/api/attention", json=payload).raise_for_status()
        fresh.append(time.perf_counter() - started)
    results["attention_fresh_one_head"] = percentiles_ms(fresh)
    results["attention_norm_cost"] = measure_norm_cost(client, norm_texts, log)
    return results


def http_checks(http: dict[str, Any], start_s: float) -> list[Check]:
    return [
        Check("server start, model prepared (health + model answer)", start_s, "s", 10),
        Check("repeated mask via HTTP (stored result), p50", http["evaluate_repeated"]["p50_ms"], "ms", 20),
        Check("repeated mask via HTTP (stored result), p95", http["evaluate_repeated"]["p95_ms"], "ms"),
        Check(f"/api/attention one head, {http['attention_tokens']} tokens, memoised, p50",
              http["attention_one_head_json"]["p50_ms"], "ms", 50),
        Check("/api/attention one head, memoised, p95", http["attention_one_head_json"]["p95_ms"], "ms"),
        Check("/api/attention all heads json, memoised, p50", http["attention_all_heads_json"]["p50_ms"], "ms"),
        Check("/api/attention all heads json, memoised, p95", http["attention_all_heads_json"]["p95_ms"], "ms"),
        Check("/api/attention all heads f16, memoised, p50", http["attention_all_heads_f16"]["p50_ms"], "ms"),
        Check("/api/attention all heads f16, memoised, p95", http["attention_all_heads_f16"]["p95_ms"], "ms"),
        Check("bytes per attention value, f16, all heads", http["attention_all_heads_f16"]["bytes_per_value"],
              "B", 2.7),
        Check("bytes per attention value, json, all heads", http["attention_all_heads_json"]["bytes_per_value"],
              "B"),
        Check("/api/attention one head, fresh forward, p50", http["attention_fresh_one_head"]["p50_ms"], "ms"),
        norm_cost_check(http["attention_norm_cost"]),
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    source = Settings().cache_dir if args.cache_dir is None else args.cache_dir
    if not (default_model_dir(source) / METADATA_FILE).is_file():
        raise SystemExit(f"no prepared default model under {source}; run `headscope prepare` first "
                         "(or set HEADSCOPE_CACHE_DIR)")
    print(f"benchmark on the default model in {default_model_dir(source)}, split {args.split}", flush=True)
    with tempfile.TemporaryDirectory(prefix="headscope-bench-") as scratch:
        scratch_path = Path(scratch)
        settings = Settings(cache_dir=benchmark_cache_dir(source, scratch_path / "server"), model=None,
                            task="rt-snippets")
        tokenizer = AutoTokenizer.from_pretrained(default_model_dir(source))
        sentences = [e.text for e in load_builtin_task("rt-snippets", settings.cache_dir).split(args.split)]
        text = text_of_tokens(tokenizer, sentences, ATTENTION_TOKENS)

        http: dict[str, Any] = {}
        start_s = float("nan")
        if not args.skip_http:
            port = free_port()
            log_path = scratch_path / "server.log"
            with running_server(args.server, settings.cache_dir, port, log_path, args.threads) as (process, started), \
                    httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT_S) as client:
                start_s = wait_until_ready(client, process, started, log_path)
                print(f"server ({args.server}) answered /api/health and /api/model after {start_s:.2f} s",
                      flush=True)
                http = measure_http(client, text, args.requests, print,
                                    fresh_texts(tokenizer, sentences[1:], NORM_TEXTS))

        engine = build_engine(settings.model_copy(update={  # its own fresh store, not the server's
            "cache_dir": benchmark_cache_dir(source, scratch_path / "engine"), "device": args.device}))
        measured = measure_engine(engine, args.split, args.limit, args.mode, args.repeats)
        measured["attention"] = measure_attention(engine, text)
        if args.work_limit:
            measured["work"] = measure_work(engine, args.split, args.work_limit, args.mode)
    checks = engine_checks(measured, cpu_clock=engine.model.device.type == "cpu")
    checks += http_checks(http, start_s) if http else []
    return {"command": "python -m bench.benchmark " + " ".join(sys.argv[1:]), "server": args.server,
            "environment": environment(engine), "engine": measured, "http": http, "server_start_s": start_s,
            "checks": [c.to_dict() for c in checks], "table": format_table(checks),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/results/benchmark.json"), help="JSON to write")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where the prepared default model is (default: HEADSCOPE_CACHE_DIR or ~/.cache/headscope)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--limit", type=int, default=None, help="first N examples only (default: the whole split)")
    parser.add_argument("--mode", default="zero", choices=list(ABLATION_MODES))
    parser.add_argument("--repeats", type=int, default=3,
                        help="timings of each engine measurement; the fastest is kept (default 3)")
    parser.add_argument("--work-limit", type=int, default=200,
                        help="examples for the FLOP-count figures (0 = skip them)")
    parser.add_argument("--requests", type=int, default=50, help="HTTP requests per latency figure")
    parser.add_argument("--server", choices=["full", "api"], default="full",
                        help="full = `headscope serve` (dashboard and API); api = the API alone")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads, here and in the server (default: torch's own choice); on a "
                        "shared machine 1 thread gives steadier timings")
    parser.add_argument("--device", default=None, help="torch device for the engine part (default: auto)")
    parser.add_argument("--skip-http", action="store_true", help="engine figures only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    write_report(run(args), args.out)


if __name__ == "__main__":
    main()
