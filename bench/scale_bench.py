"""The scale benchmark (issue 15): a BERT-large-shaped classifier at 512 tokens, served as a user would.

    python -m bench.scale_bench --out bench/results/scale.json [--browser]

Builds (once, under --workdir) a classifier with BERT-large's shape (24 layers x 16 heads, hidden 1024,
feed-forward 4096, 512 positions) from a config with random weights (`save_pretrained`, no download) and a
task file of 64 dev examples of 512 tokens; starts `headscope serve` on it with HEADSCOPE_MAX_TOKENS=512
and measures, against the targets of the issue:

- server start until /api/health and /api/model answer (<= 30 s);
- the grid's request: all 384 heads as 32 x 32 thumbnails (`format: "thumb"`), bytes (<= 2.5 MB) and time;
- one head's full map (`format: "f16"`, one head) after the first call, p50 over 20 heads (<= 250 ms);
- with --browser, Chromium opening a dashboard link: seconds until the grid and the focused heatmap are
  drawn (<= 20 s).

The numbers depend on how busy the machine is: the load average before and after is recorded with them.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.benchmark import free_port

WORDS = [f"w{i}" for i in range(2000)]
LABELS = ["negative", "positive"]
LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
             max_position_embeddings=512)
EXAMPLES, TOKENS = 64, 512
TARGETS = {"ready_s": 30.0, "thumbs_bytes": 2.5e6, "one_head_p50_ms": 250.0, "browser_s": 20.0}
START_TIMEOUT_S = 300


def build_model(directory: Path, shape: dict[str, int]) -> Path:
    """A randomly initialised BERT classifier of `shape` with a word-level vocabulary, saved as safetensors."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    if (directory / "model.safetensors").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]))
    tokenizer = BertTokenizerFast(str(directory / "vocab.txt"))
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), id2label=dict(enumerate(LABELS)),
                        label2id={n: i for i, n in enumerate(LABELS)}, **shape)
    BertForSequenceClassification(config).eval().save_pretrained(directory, safe_serialization=True)
    return directory


def build_task(path: Path, examples: int = EXAMPLES, tokens: int = TOKENS) -> Path:
    """`examples` rows of `tokens - 2` one-token words (so each encodes to exactly `tokens` with [CLS], [SEP])."""
    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(examples):
            writer.writerow([" ".join(rng.choices(WORDS, k=tokens - 2)), LABELS[i % 2]])
    return path


def start_server(model: Path, task: Path, cache: Path, port: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HEADSCOPE_CACHE_DIR": str(cache), "HEADSCOPE_MAX_TOKENS": str(TOKENS),
           "HEADSCOPE_HOST": "127.0.0.1", "HEADSCOPE_PORT": str(port)}
    command = [sys.executable, "-m", "headscope.cli", "serve", "--model", str(model), "--task", str(task)]
    return subprocess.Popen(command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(client: httpx.Client, process: subprocess.Popen, started: float, log: Path) -> float:
    while time.perf_counter() - started < START_TIMEOUT_S:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited:\n{log.read_text()[-3000:]}")
        try:
            if client.get("/api/health").status_code == 200 and client.get("/api/model").status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.1)  # polling a subprocess's port: nothing to wait on
    raise RuntimeError(f"not ready within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


def measure_api(client: httpx.Client, text: str, layers: int, heads: int) -> dict[str, Any]:
    started = time.perf_counter()
    thumbs = client.post("/api/attention", json={"text": text, "format": "thumb", "size": 32})
    thumbs.raise_for_status()
    first_s = time.perf_counter() - started
    body = thumbs.json()
    assert len(body["heads"]) == layers * heads and len(body["tokens"]) == TOKENS, "thumbs: wrong answer"
    rng = random.Random(1)
    chosen = [(rng.randrange(layers), rng.randrange(heads)) for _ in range(20)]
    seconds = []
    for layer, head in chosen:
        started = time.perf_counter()
        full = client.post("/api/attention", json={"text": text, "format": "f16", "heads": [[layer, head]]})
        seconds.append(time.perf_counter() - started)
        full.raise_for_status()
    return {"thumbs_bytes": len(thumbs.content), "thumbs_first_call_s": first_s,
            "one_head_p50_ms": float(np.percentile(seconds, 50) * 1000),
            "one_head_p95_ms": float(np.percentile(seconds, 95) * 1000),
            "one_head_full_bytes": len(full.content)}


def measure_browser(url: str) -> dict[str, Any]:
    """Seconds from opening the link until the grid (every head's cell drawn) and the focused heatmap show."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        started = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#head-grid[data-drawn='true']", timeout=120_000)
        grid_s = time.perf_counter() - started
        page.wait_for_selector("#focus-heatmap[data-drawn='true']", timeout=120_000)
        heatmap_s = time.perf_counter() - started
        browser.close()
    return {"browser_grid_s": grid_s, "browser_s": heatmap_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "headscope-scale")
    parser.add_argument("--browser", action="store_true", help="also time Chromium opening a dashboard link")
    args = parser.parse_args()
    load_before = os.getloadavg()
    model = build_model(args.workdir / "bert-large-random", LARGE)
    task = build_task(args.workdir / "task-512.csv")
    port = free_port()
    log = args.workdir / "server.log"
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        process = start_server(model, task, Path(cache), port, log)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                results: dict[str, Any] = {"ready_s": wait_ready(client, process, started, log)}
                described = client.get("/api/model").json()
                text = client.get("/api/examples", params={"limit": 1}).json()["items"][0]["text"]
                results.update(measure_api(client, text, described["num_layers"], described["num_heads"]))
                if args.browser:
                    results.update(measure_browser(f"http://127.0.0.1:{port}/?ex=0&layer=11&head=7"))
        finally:
            process.terminate()
            process.wait(timeout=60)
    results["load_average_before"] = list(load_before)
    results["load_average_after"] = list(os.getloadavg())
    results["cpu_count"] = os.cpu_count()
    results["checks"] = {name: results[name] <= target for name, target in TARGETS.items() if name in results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    for name, value in results.items():
        print(f"{name:24} {value}")
    if not all(results["checks"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
