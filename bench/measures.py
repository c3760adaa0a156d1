"""What the norm measure costs (issue 12): every head in `f16` with `measure=norm` against the same request
with `weights`, on fresh 128-token texts (nothing memoised), through a real server.

    python -m bench.measures --out bench/results/measures.json

`bench.benchmark` runs the same measurement inside its HTTP part; this entry point runs it alone (about a
minute on the default model). Requests alternate weights / norm, each on a text the server has not seen,
so both pay for the forward pass and drift on a shared machine hits both alike; the figure is the ratio
of the medians. The engine computes the value-vector norms in every forward (docs/api.md, "Attention
measures"), so this ratio is what choosing `norm` adds on top of a forward that already has them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from headscope.engine.builtin_tasks import load_builtin_task
from headscope.engine.default_model import METADATA_FILE, default_model_dir
from headscope.settings import Settings
from transformers import AutoTokenizer

from bench.engine_bench import Check, format_table, percentiles_ms

NORM_COST_LIMIT = 1.5  # issue 12: norm costs at most 1.5x weights
TOKENS = 128


def fresh_texts(tokenizer: Any, sentences: list[str], count: int, tokens: int = TOKENS) -> list[str]:
    """`count` different inputs of exactly `tokens` tokens each, from disjoint stretches of the split."""
    from bench.benchmark import text_of_tokens

    stride = max(1, len(sentences) // count)
    texts = [text_of_tokens(tokenizer, sentences[i * stride:], tokens) for i in range(count)]
    if len(set(texts)) != count:
        raise RuntimeError("the split is too short for distinct inputs")
    return texts


def measure_norm_cost(client: httpx.Client, texts: list[str], log: Callable[[str], None] = print) -> dict[str, Any]:
    """Alternate all-heads f16 requests with weights and with norm, each on an unseen text."""
    seconds: dict[str, list[float]] = {"weights": [], "norm": []}
    sizes: dict[str, int] = {}
    for index, text in enumerate(texts):
        measure = "weights" if index % 4 in (0, 3) else "norm"  # w n n w w n n w ...: drift hits both alike
        payload = {"text": text, "heads": None, "format": "f16", "measure": measure}
        started = time.perf_counter()
        response = client.post("/api/attention", json=payload).raise_for_status()
        seconds[measure].append(time.perf_counter() - started)
        sizes[measure] = len(response.content)
        if response.json()["measure"] != measure:
            raise AssertionError("the server did not answer the measure asked")
    result = {name: {**percentiles_ms(values), "bytes": sizes[name]} for name, values in seconds.items()}
    result["ratio_p50"] = float(np.median(seconds["norm"]) / np.median(seconds["weights"]))
    result["texts"] = len(texts)
    log(f"all heads f16, fresh {TOKENS}-token texts: weights p50 {result['weights']['p50_ms']:.0f} ms, "
        f"norm p50 {result['norm']['p50_ms']:.0f} ms, ratio {result['ratio_p50']:.2f}")
    return result


def norm_cost_check(result: dict[str, Any]) -> Check:
    return Check(f"/api/attention all heads f16, fresh {TOKENS} tokens, norm / weights (p50)",
                 result["ratio_p50"], "x", NORM_COST_LIMIT)


def main(argv: list[str] | None = None) -> None:
    from bench.benchmark import benchmark_cache_dir, free_port, running_server, wait_until_ready

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/measures.json"))
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="default: HEADSCOPE_CACHE_DIR or ~/.cache/headscope")
    parser.add_argument("--texts", type=int, default=40, help="fresh texts, half per measure (default 40)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads in the server")
    args = parser.parse_args(argv)
    source = Settings().cache_dir if args.cache_dir is None else args.cache_dir
    if not (default_model_dir(source) / METADATA_FILE).is_file():
        raise SystemExit(f"no prepared default model under {source}; run `headscope prepare` first")
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir(source))
    with tempfile.TemporaryDirectory(prefix="headscope-measures-") as scratch:
        cache = benchmark_cache_dir(source, Path(scratch) / "server")
        sentences = [e.text for e in load_builtin_task("rt-snippets", cache).split("dev")]
        texts = fresh_texts(tokenizer, sentences, args.texts)
        port = free_port()
        log_path = Path(scratch) / "server.log"
        with running_server("api", cache, port, log_path, args.threads) as (process, started), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            wait_until_ready(client, process, started, log_path)
            client.post("/api/attention", json={"text": "warm up", "format": "f16"}).raise_for_status()
            result = measure_norm_cost(client, texts)
    check = norm_cost_check(result)
    table = format_table([check])
    print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python -m bench.measures " + " ".join(sys.argv[1:]),
                                    "result": result, "checks": [check.to_dict()], "table": table,
                                    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=1) + "\n")


if __name__ == "__main__":
    main()
