"""Eager vs fused attention (torch's scaled_dot_product_attention) in evaluation passes, on this device.

    python -m bench.fused_bench --out bench/results/fused_cpu.json          # CPU, 1 thread
    python -m bench.fused_bench --device cuda --out "$OUT/fused_cuda.json"  # a GPU

For a BERT-base-shaped classifier with random weights (12 x 12, hidden 768; `save_pretrained`, loaded by
the production loader) and a few sequence lengths, times one evaluation pass of about 1,024 tokens (masks x
examples rows, every mask a different head off, half the rows padded to 3/4 of the length) with each
implementation, alternating them so both see the same machine load, and checks that the logits agree.
`uniform` (the mode with the most extra work on the fused path) at every length, `zero` and `mean` at 128
tokens. `speedup` = eager seconds / fused seconds (medians): above 1, fused is faster.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from headscope.engine.interventions import Intervention, intervene
from headscope.engine.model import LoadedModel, load_model

from bench.scale_bench import build_model

BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
            max_position_embeddings=512)
TOKENS_PER_PASS = 1024


def one_pass(model: LoadedModel, ids: torch.Tensor, attention: torch.Tensor, disabled: torch.Tensor, mode: str,
             means: torch.Tensor, fused: bool) -> torch.Tensor:
    with torch.inference_mode(), intervene(Intervention(disabled=disabled, mode=mode, means=means, fused=fused)):
        hidden = model.embed(ids, torch.zeros_like(ids))
        logits = model.classify(model.run_layers(hidden, attention), attention).float()
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
    return logits


def measure(model: LoadedModel, tokens: int, rounds: int, mode: str) -> dict:
    examples = max(2, min(8, TOKENS_PER_PASS // tokens))
    masks = max(1, TOKENS_PER_PASS // (tokens * examples))
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, model.config.vocab_size, (examples, tokens), generator=generator)
    attention = torch.ones_like(ids)
    attention[1::2, tokens * 3 // 4:] = 0  # padding in half the rows, as a length-sorted batch has
    ids, attention = ids.repeat(masks, 1).to(model.device), attention.repeat(masks, 1).to(model.device)
    disabled = torch.zeros(masks * examples, model.num_layers, model.num_heads, dtype=torch.bool)
    for m in range(masks):
        disabled[m * examples:(m + 1) * examples, m % model.num_layers, (3 * m) % model.num_heads] = True
    disabled = disabled.to(model.device)
    means = torch.randn(model.num_layers, model.num_heads, model.head_dim, generator=generator).to(model.device)
    eager_logits = one_pass(model, ids, attention, disabled, mode, means, False)  # also the warm-up
    fused_logits = one_pass(model, ids, attention, disabled, mode, means, True)
    timings: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(rounds):
        for fused in (False, True):
            started = time.perf_counter()
            one_pass(model, ids, attention, disabled, mode, means, fused)
            timings[fused].append(time.perf_counter() - started)
    eager, fused = float(np.median(timings[False])), float(np.median(timings[True]))
    return {"tokens": tokens, "rows": masks * examples, "mode": mode, "eager_s": eager, "fused_s": fused,
            "speedup": eager / fused, "max_abs_logit_diff": float((eager_logits - fused_logits).abs().max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/fused_cpu.json"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--tokens", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    directory = build_model(Path(tempfile.gettempdir()) / "headscope-bert-base-random", BASE)
    model = load_model(directory, device=args.device, dtype=args.dtype, max_tokens=512)
    rows = [measure(model, tokens, args.rounds, "uniform") for tokens in args.tokens]
    rows += [measure(model, 128, args.rounds, mode) for mode in ("zero", "mean")]
    result = {"device": str(model.device), "dtype": args.dtype, "threads": args.threads, "torch": torch.__version__,
              "rows": rows, "load_average_before": list(load_before), "load_average_after": list(os.getloadavg())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for row in rows:
        print(f"{row['tokens']:4} tokens {row['mode']:8} eager {row['eager_s']:.3f} s  fused {row['fused_s']:.3f} s  "
              f"x{row['speedup']:.2f}  max |logit diff| {row['max_abs_logit_diff']:.1e}")
    print(f"load average before {load_before}, after {result['load_average_after']}")


if __name__ == "__main__":
    main()
