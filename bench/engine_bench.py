"""Engine-level speed measurements, shared by `bench.benchmark` (CPU, default model) and `bench.gpu_bench`.

Only `headscope.engine` is imported here (no web stack), so the GPU machine can run it. Every time is taken
around a call that returns host data (CUDA is synchronised before and after), every ratio compares two
measurements taken in the same run, and `measure_work` counts the same comparisons in FLOPs, which no
other process on a shared machine can disturb.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from headscope.engine.engine import Engine, EvaluationResult
from headscope.engine.evaluation import rows_per_pass_for


@dataclass(frozen=True)
class Check:
    """One measured figure against its target (`limit` with `better` = "lower" or "higher")."""

    name: str
    value: float
    unit: str
    limit: float | None = None
    better: str = "lower"

    @property
    def passed(self) -> bool | None:
        if self.limit is None:
            return None
        return self.value <= self.limit if self.better == "lower" else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit, "target": self.target_text,
                "passed": self.passed}

    @property
    def target_text(self) -> str:
        if self.limit is None:
            return ""
        return f"{'<=' if self.better == 'lower' else '>='} {self.limit:g} {self.unit}".rstrip()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds, and this process's CPU seconds (all threads) over the same call. With one torch
    thread the second counts only the work done while scheduled; with more, on a busy machine, it also
    counts threads spinning while they wait for each other, so it is a cross-check, not a cure."""

    wall: float
    cpu: float


def timed(device: torch.device, call: Callable[[], Any]) -> tuple[Timing, Any]:
    """How long `call` took, with the device idle before and finished after."""
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    synchronize(device)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu), result


def percentiles_ms(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)),
            "count": len(values)}


def cpu_name() -> str:
    """The CPU's model name (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(engine: Engine) -> dict[str, Any]:
    """What the numbers were measured on."""
    device = engine.model.device
    info: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "model": engine.model.name,
        "layers": engine.model.num_layers,
        "heads": engine.model.num_heads,
        "hidden": engine.model.config.hidden_size,
        "dtype": str(engine.model.dtype).removeprefix("torch."),
        "batch_size": engine.batch_size,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is always there with the engine
        pass
    return info


def plain_forward(engine: Engine, split: str, limit: int | None) -> None:
    """The unablated model over the prepared split, every layer whole: the yardstick of one forward."""
    model = engine.model
    prepared = engine.prepared(split, limit)
    outputs = []
    with torch.inference_mode():
        for batch in prepared.batches:
            hidden = model.run_layers(model.embed(batch.input_ids, batch.token_type_ids), batch.attention_mask)
            outputs.append(model.classify(hidden, batch.attention_mask))
    torch.cat(outputs).float().cpu()


def naive_evaluation(engine: Engine, ablate: list[list[int]], mode: str, split: str,
                     limit: int | None) -> EvaluationResult:
    """The same evaluation with nothing reused: no stored result, every layer recomputed."""
    return engine.evaluate(ablate, mode, split, limit, use_store=False, use_layer_cache=False)


def split_shape(engine: Engine, split: str, limit: int | None) -> dict[str, Any]:
    prepared = engine.prepared(split, limit)
    real = sum(int(b.attention_mask.sum()) for b in prepared.batches)
    padded = sum(b.input_ids.numel() for b in prepared.batches)
    return {"split": split, "examples": len(prepared.examples), "tokens": real,
            "mean_tokens": real / max(1, len(prepared.examples)), "padded_tokens": padded,
            "max_tokens": max((b.input_ids.shape[1] for b in prepared.batches), default=0),
            "kept_layers": list(prepared.kept_layers), "kept_bytes": prepared.kept_bytes,
            "rows_per_pass": rows_per_pass_for(engine.model, prepared)}


def _ms(samples: list[Timing], clock: str, pick: Callable[[list[float]], float] = min) -> float:
    return float(pick([getattr(t, clock) for t in samples])) * 1000


def measure_engine(engine: Engine, split: str = "dev", limit: int | None = None, mode: str = "zero",
                   repeats: int = 1, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plain forward, fresh single-head masks at every layer against a naive full re-run, and the full
    single-head sweep, all on one split. `repeats` > 1 keeps the fastest of each (noise only adds time).
    Every figure is taken on both clocks (wall and process CPU time); see `Timing`."""
    device = engine.model.device
    layers, heads = engine.model.num_layers, engine.model.num_heads

    prepare, _ = timed(device, lambda: engine.prepared(split, limit))
    shape = split_shape(engine, split, limit)
    log(f"prepared {shape['examples']} examples ({shape['mean_tokens']:.1f} tokens on average) "
        f"in {prepare.wall:.2f} s; kept layers {shape['kept_layers']}")
    # warm-up: first kernels, allocator, the store's tables
    engine.evaluate([[layers - 1, 0]], mode, split, limit, use_store=False)

    plain = [timed(device, lambda: plain_forward(engine, split, limit))[0] for _ in range(repeats)]
    log(f"plain forward over the split: {_ms(plain, 'wall'):.1f} ms")

    per_layer, naive_samples = [], []
    for layer in range(layers):
        head = layer % heads
        fresh_runs, naive_runs = [], []
        for _ in range(repeats):  # alternated, so drifting load hits both alike
            timing, fresh = timed(device, lambda layer=layer, head=head: engine.evaluate(
                [[layer, head]], mode, split, limit, use_store=False, use_layer_cache=True))
            fresh_runs.append(timing)
            timing, naive = timed(device, lambda layer=layer, head=head: naive_evaluation(
                engine, [[layer, head]], mode, split, limit))
            naive_runs.append(timing)
            if fresh.flipped != naive.flipped:
                raise AssertionError(f"L{layer}H{head}: the layer cache changed the answer")
        naive_samples += naive_runs
        row = {"layer": layer, "head": head}
        for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
            row[f"fresh{suffix}_ms"] = _ms(fresh_runs, clock)
            row[f"naive{suffix}_ms"] = _ms(naive_runs, clock)
            row[f"speedup{suffix}"] = row[f"naive{suffix}_ms"] / row[f"fresh{suffix}_ms"]
        per_layer.append(row)
        log(f"  L{layer}H{head}: fresh {row['fresh_ms']:.1f} ms, naive {row['naive_ms']:.1f} ms, "
            f"x{row['speedup']:.2f} (CPU time x{row['speedup_cpu']:.2f})")

    # The sweep is one long call; the plain evaluations it is compared with are sampled across the
    # same stretch of time (per-layer runs above, one just before and one just after), and averaged.
    middle = [[layers // 2, 0]]
    naive_samples.append(timed(device, lambda: naive_evaluation(engine, middle, mode, split, limit))[0])
    masks = [[[layer, head]] for layer in range(layers) for head in range(heads)]
    sweep, predictions = timed(device, lambda: engine.evaluate_many(masks, mode, split, limit))
    naive_samples.append(timed(device, lambda: naive_evaluation(engine, middle, mode, split, limit))[0])
    prepared = engine.prepared(split, limit)
    scores = [engine.score(p, prepared.gold) for p in predictions]

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    results: dict[str, Any] = {
        "split": shape, "mode": mode, "repeats": repeats, "prepare_ms": prepare.wall * 1000,
        "plain_forward_ms": _ms(plain, "wall"), "plain_forward_cpu_ms": _ms(plain, "cpu"),
        "fresh_vs_naive": {"per_layer": per_layer},
        "plain_evaluation": {"samples_ms": [t.wall * 1000 for t in naive_samples],
                             "samples_cpu_ms": [t.cpu * 1000 for t in naive_samples]},
        "sweep": {"masks": len(masks), "seconds": sweep.wall, "cpu_seconds": sweep.cpu,
                  "lowest_score": float(min(scores)), "highest_score": float(max(scores))},
    }
    for clock, suffix in (("wall", ""), ("cpu", "_cpu")):
        summary = results["fresh_vs_naive"]
        summary[f"mean_speedup{suffix}"] = mean([r[f"speedup{suffix}"] for r in per_layer])
        summary[f"naive_evaluation{suffix}_ms"] = mean([r[f"naive{suffix}_ms"] for r in per_layer])
        summary[f"fresh_evaluation{suffix}_ms"] = mean([r[f"fresh{suffix}_ms"] for r in per_layer])
        summary[f"pooled_speedup{suffix}"] = summary[f"naive_evaluation{suffix}_ms"] / \
            summary[f"fresh_evaluation{suffix}_ms"]
        plain_ms = _ms(naive_samples, clock, mean)
        results["plain_evaluation"][f"mean{suffix}_ms"] = plain_ms
        results["plain_evaluation"][f"fastest{suffix}_ms"] = _ms(naive_samples, clock)
        results["sweep"][f"ratio_to_plain_evaluations{suffix}"] = getattr(sweep, clock) * 1000 / (len(masks) * plain_ms)
    results["sweep"]["ratio_to_fastest_plain_evaluation"] = sweep.wall * 1000 / (
        len(masks) * results["plain_evaluation"]["fastest_ms"])
    log(f"single-head sweep of {len(masks)} masks: {sweep.wall:.2f} s = "
        f"{results['sweep']['ratio_to_plain_evaluations']:.3f} x {len(masks)} plain evaluations of "
        f"{results['plain_evaluation']['mean_ms']:.1f} ms (CPU time: "
        f"{results['sweep']['ratio_to_plain_evaluations_cpu']:.3f})")
    return results


def measure_attention(engine: Engine, text: str, count: int = 20) -> dict[str, Any]:
    """`Engine.attention` on one input: a fresh forward per new mask, then the memoised answer."""
    device = engine.model.device
    tokens = len(engine.model.encode_one(text)["input_ids"])
    fresh = [timed(device, lambda i=i: engine.attention(text, None, [[i % engine.model.num_layers, 0]]))[0].wall
             for i in range(min(count, engine.model.num_layers))]
    memo = [timed(device, lambda: engine.attention(text, None, [[0, 0]]))[0].wall for _ in range(count)]
    return {"tokens": tokens, "fresh": percentiles_ms(fresh), "memoised": percentiles_ms(memo)}


def measure_work(engine: Engine, split: str = "dev", limit: int | None = 200, mode: str = "zero") -> dict[str, Any]:
    """The same comparisons counted in floating-point operations (torch's FlopCounterMode: every matmul),
    which no other process can disturb: what the reuse saves by construction, on the first `limit` examples."""
    from torch.utils.flop_counter import FlopCounterMode

    layers, heads = engine.model.num_layers, engine.model.num_heads

    def flops(call: Callable[[], Any]) -> int:
        counter = FlopCounterMode(display=False)
        with counter:
            call()
        return counter.get_total_flops()

    engine.prepared(split, limit)
    naive = flops(lambda: naive_evaluation(engine, [[0, 0]], mode, split, limit))
    fresh = [flops(lambda layer=layer: engine.evaluate([[layer, layer % heads]], mode, split, limit,
                                                       use_store=False)) for layer in range(layers)]
    masks = [[[layer, head]] for layer in range(layers) for head in range(heads)]
    sweep = flops(lambda: engine.evaluate_many(masks, mode, split, limit))
    return {"examples": len(engine.prepared(split, limit).examples), "naive_evaluation_flops": naive,
            "fresh_evaluation_flops": fresh, "sweep_flops": sweep,
            "mean_speedup": float(np.mean([naive / f for f in fresh])),
            "sweep_ratio": sweep / (len(masks) * naive)}


def engine_checks(results: dict[str, Any], cpu_clock: bool = True) -> list[Check]:
    """The engine-level figures, with the targets that hold on any machine (ratios); `cpu_clock` adds
    the same ratios on process CPU time (meaningful on a CPU device only)."""
    summary, plain, sweep = results["fresh_vs_naive"], results["plain_evaluation"], results["sweep"]
    checks = [
        Check("plain forward over the split", results["plain_forward_ms"], "ms"),
        Check("plain evaluation (naive full re-run), mean of all samples", plain["mean_ms"], "ms"),
        Check("plain evaluation (naive full re-run), fastest", plain["fastest_ms"], "ms"),
        Check("fresh single-head mask evaluation (mean over layers)", summary["fresh_evaluation_ms"], "ms"),
        Check("fresh-mask speedup over naive re-run, mean of per-layer ratios", summary["mean_speedup"], "x",
              1.5, "higher"),
        Check("fresh-mask speedup over naive re-run, total time ratio", summary["pooled_speedup"], "x"),
        Check("single-head sweep / (layers x heads x plain evaluation)", sweep["ratio_to_plain_evaluations"],
              "", 0.6),
        Check("single-head sweep / (layers x heads x fastest plain evaluation)",
              sweep["ratio_to_fastest_plain_evaluation"], ""),
        Check("single-head sweep", sweep["seconds"], "s"),
    ]
    if "work" in results:
        work = results["work"]
        checks += [
            Check(f"FLOPs ({work['examples']} examples): fresh-mask speedup, mean of per-layer ratios",
                  work["mean_speedup"], "x", 1.5, "higher"),
            Check(f"FLOPs ({work['examples']} examples): sweep / (layers x heads x naive evaluation)",
                  work["sweep_ratio"], "", 0.6),
        ]
    if cpu_clock:
        checks += [
            Check("CPU time: fresh-mask speedup, mean of per-layer ratios", summary["mean_speedup_cpu"], "x",
                  1.5, "higher"),
            Check("CPU time: fresh-mask speedup, total time ratio", summary["pooled_speedup_cpu"], "x"),
            Check("CPU time: sweep / (layers x heads x plain evaluation)", sweep["ratio_to_plain_evaluations_cpu"],
                  "", 0.6),
        ]
    return checks


def format_table(checks: list[Check]) -> str:
    """A plain-text table: figure, value, target, pass/fail."""
    rows = [("figure", "value", "target", "result")]
    for check in checks:
        value = f"{check.value:.3f}" if abs(check.value) < 10 else f"{check.value:.1f}"
        verdict = {True: "PASS", False: "FAIL", None: ""}[check.passed]
        rows.append((check.name, f"{value} {check.unit}".rstrip(), check.target_text, verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(result: dict[str, Any], target: str) -> str:
    """How a latency bench's summary line ends: its target, met or not, and the load it was measured at
    (`result` holds `passes`, `load_average_1_5_15` and `cpus`)."""
    return (f"(target {target}: {'PASS' if result['passes'] else 'FAIL'}); "
            f"load average {result['load_average_1_5_15']['before'][0]:.1f} on {result['cpus']} CPUs")


def write_report(report: dict[str, Any], out: Path, summary: str | None = None) -> None:
    """Print `summary` (by default the report's table) and write the whole report to `out` as JSON
    (bench/results/): every bench saves its figures through this."""
    print()
    print(report["table"] if summary is None else summary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out}")
