"""One entry point for every atlas analysis, shared by the job manager (API) and `headscope sweep` (CLI).

:data:`KINDS` (defined in :mod:`headscope.engine.atlas.kinds`, light, so the CLI's help reads it without
loading torch) is the one list of job kinds: what each is called, whether an ablation mode applies, and
which extra parameters it takes (described in :data:`PARAMS`); `GET /api/jobs/kinds` serves it and the
atlas page builds its controls from it. A new kind is one entry there, one branch in :func:`run_job`
(and its request field in ``headscope.api.schemas.JobRequest`` if it takes a new parameter).
:func:`normalise_params` validates a request's parameters and puts them in one canonical form (so equal
requests get equal job ids); :func:`write_result` saves a result as JSON (docs/api.md's format) or CSV
(one row per head, layer or step).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from headscope.engine import significance
from headscope.engine.atlas.common import (
    Cancelled,
    Progress,
    check_cancelled,
    never_cancelled,
    no_progress,
    split_maps,
)
from headscope.engine.atlas.importance import head_importance, pruning_curve
from headscope.engine.atlas.kinds import KINDS, MASKED_KINDS
from headscope.engine.atlas.layers import layer_readouts
from headscope.engine.atlas.pairs import checked_heads, pair_sweep
from headscope.engine.atlas.patterns import PATTERN_TYPES, PatternCounter
from headscope.engine.atlas.similarity import attention_similarity
from headscope.engine.atlas.stats import STAT_NAMES, StatsAccumulator
from headscope.engine.atlas.sweeps import greedy_search, layer_sweep, single_head_sweep
from headscope.engine.atlas.syntax import SyntaxAccumulator
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError
from headscope.engine.measures import HEAD_MEASURES
from headscope.engine.words import require_offsets

DEFAULT_MAX_HEADS = 5
PARSE_SHARE = 0.2  # of a syntax job's progress bar, for parsing (when the parses are not stored yet)
MEANS_SHARE = 0.2  # of a mean-mode job's progress bar, for the per-head means (when they are not stored yet)


@dataclass(frozen=True)
class JobParam:
    """An extra parameter of some job kinds, as clients need it to offer a control for it."""

    type: str  # "integer" | "boolean" | "choice" | "heads" (a list of [layer, head])
    default: object
    description: str
    choices: tuple[str, ...] = ()


PARAMS: dict[str, JobParam] = {
    "max_heads": JobParam("integer", DEFAULT_MAX_HEADS, "most heads to disable (1 to every head)"),
    "word_level": JobParam("boolean", False, "merge wordpieces into spaCy's words (Clark et al.)"),
    "measure": JobParam("choice", "weights", "what a map holds: the weights, or weights x value norms "
                        "(rollout is per layer, not per head)", tuple(HEAD_MEASURES)),
    "ablate": JobParam("heads", [], "heads disabled (by `mode`) while the job runs"),
    "heads": JobParam("heads", None, "the heads to pair up (at least 2; none = every head)"),
}

def catalogue() -> dict:
    """The job kinds and their parameters, plus the names results use (`GET /api/jobs/kinds`)."""
    return {
        "kinds": [{"kind": name, "title": kind.title, "uses_mode": kind.uses_mode,
                   "params": [{"name": p, **asdict(PARAMS[p]), "choices": list(PARAMS[p].choices)}
                              for p in kind.params]}
                  for name, kind in KINDS.items()],
        "pattern_types": list(PATTERN_TYPES),
        "statistics": list(STAT_NAMES),
    }


def normalise_params(engine: Engine, kind: str, mode: str | None = "zero", split: str | None = None,
                     limit: int | None = None, *, max_heads: int | None = None, word_level: bool = False,
                     measure: str | None = None, ablate: list | tuple = (), heads: list | None = None) -> dict:
    """Checked, canonical parameters of a job; an InputError names what is allowed."""
    if kind not in KINDS:
        raise InputError(f"unknown job kind {kind!r}; allowed: {', '.join(KINDS)}")
    if kind == "means":  # always all of the reference split, whatever was sent (as a mode is for stats)
        split, limit = engine.task.reference_split, None
    mode = engine.check_mode(mode or "zero")
    split = engine.task.split_name(split)
    sizes = engine.task.sizes()
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InputError(f"limit must be an integer of at least 1 (or null for the whole split); got {limit!r}")
        if limit >= sizes[split]:
            limit = None  # the whole split: same numbers, same job
    params: dict = {"kind": kind, "mode": mode, "split": split, "limit": limit}
    if not KINDS[kind].uses_mode:
        params["mode"] = None  # attention of the unablated model: the mode changes nothing
    if kind == "stats":
        params["word_level"] = bool(word_level)
        params["measure"] = measure or "weights"
        if params["measure"] not in HEAD_MEASURES:
            raise InputError(f"stats measure {measure!r} is not allowed; allowed: {', '.join(HEAD_MEASURES)} "
                             "(rollout is per layer, not per head)")
    elif measure not in (None, "weights"):
        raise InputError(f"measure applies to the stats job only; {kind} reads the weights")
    if kind in MASKED_KINDS:
        params["ablate"] = engine.mask(ablate).pairs()  # sorted, no repeats
        if not params["ablate"]:
            params["mode"] = None  # nothing disabled: every mode is the same job
    elif ablate:
        raise InputError(f"job kind {kind!r} takes no ablate; kinds that run under a mask: {', '.join(MASKED_KINDS)}")
    if kind == "syntax" or params.get("word_level"):
        require_offsets(engine.model.tokenizer)
    if kind == "greedy":
        total = engine.model.num_layers * engine.model.num_heads
        chosen = DEFAULT_MAX_HEADS if max_heads is None else max_heads
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 1 <= chosen <= total:
            raise InputError(f"max_heads must be an integer from 1 to {total}; got {max_heads!r}")
        params["max_heads"] = chosen
        params["held_out"] = "test" if "test" in sizes and split != "test" else None
    if kind == "pairs":  # null = every head: the same job as listing them all
        chosen = checked_heads(engine, heads)
        every = engine.model.num_layers * engine.model.num_heads
        params["heads"] = None if len(chosen) == every else [list(h) for h in chosen]
    return params


def _aligned_maps(engine: Engine, params: dict, progress: Progress, cancelled: Cancelled, **options):
    """Each chosen example's maps (`split_maps` with `options`), parse and word alignment; the parses are
    stored once per split."""
    split, limit = params["split"], params["limit"]

    def parsing(share: float) -> None:
        check_cancelled(cancelled)
        progress(PARSE_SHARE * share)

    parses = engine.split_parses(split, limit, parsing)
    examples = engine.task.select(split, limit)
    maps = split_maps(engine, split, limit, lambda share: progress(PARSE_SHARE + (1 - PARSE_SHARE) * share),
                      cancelled, **options)
    for example in maps:
        source = examples[example.position]
        parse = parses[example.position]
        yield example, parse, engine.alignment(parse, example.tokens, source.text, source.text_pair, truncate=True)


def _stats(engine: Engine, params: dict, progress: Progress, cancelled: Cancelled) -> dict:
    """Per-head statistics; under ``norm`` each row is first divided by its sum (docs/api.md), so a share
    is the part of what the head moves into a token that comes from [CLS], [SEP], ..."""
    tokenizer = engine.model.tokenizer
    measure = params.get("measure", "weights")
    accumulator = StatsAccumulator(engine.model.num_layers, engine.model.num_heads, tokenizer.sep_token,
                                   word_level=params["word_level"])
    if params["word_level"]:
        examples = _aligned_maps(engine, params, progress, cancelled, measure=measure)
    else:
        examples = ((e, None, None) for e in split_maps(engine, params["split"], params["limit"], progress,
                                                         cancelled, measure=measure))
    for example, _parse, alignment in examples:
        maps = example.maps
        if measure == "norm":
            maps = maps / np.maximum(maps.sum(axis=-1, keepdims=True), np.finfo(np.float32).tiny)
        if alignment is None:
            accumulator.add(maps, example.tokens)
        else:  # rows summing to 1 before the merge still do after it
            accumulator.add(alignment.merge(maps), alignment.entries)
    return {"split": params["split"], "measure": measure, **accumulator.result()}


def _syntax(engine: Engine, params: dict, progress: Progress, cancelled: Cancelled) -> dict:
    accumulator = SyntaxAccumulator(engine.model.num_layers, engine.model.num_heads)
    for example, parse, alignment in _aligned_maps(engine, params, progress, cancelled, ablate=params["ablate"],
                                                   mode=params["mode"] or "zero"):
        accumulator.add(alignment.merge(example.maps), alignment, parse)
    return {"split": params["split"], "mode": params["mode"], "ablate": params["ablate"],
            "parser": engine.parser.name, **accumulator.result()}


def _patterns(engine: Engine, params: dict, progress: Progress, cancelled: Cancelled) -> dict:
    counter = PatternCounter(engine.model.num_layers, engine.model.num_heads)
    for example in split_maps(engine, params["split"], params["limit"], progress, cancelled):
        counter.add(example.maps, example.segments)
    return {"split": params["split"], **counter.result()}


def _means(engine: Engine, params: dict, progress: Progress, cancelled: Cancelled) -> dict:
    """Compute (or find stored) the per-head means; the result says over what, and each mean's length."""
    means = engine.head_means(progress, cancelled)
    return {"split": params["split"], "n": len(engine.task.split(params["split"])),
            "head_dim": int(means.shape[-1]), "norm": means.float().norm(dim=-1).cpu().tolist()}


def run_job(engine: Engine, kind: str, params: dict, progress: Progress = no_progress,
            cancelled: Cancelled = never_cancelled, *, base_model: str | None = None) -> dict:
    """Run one analysis with already normalised `params`; returns its JSON-ready result.

    A mean-mode job on a model whose per-head means are not stored yet computes them first, as the first
    `MEANS_SHARE` of its progress (cancellable like the rest), instead of inside its first masked pass.
    """
    mode, split, limit = params.get("mode") or "zero", params["split"], params["limit"]
    if mode == "mean" and kind != "importance" and not engine.has_head_means():  # importance disables no head
        engine.head_means(lambda share: progress(MEANS_SHARE * share), cancelled)
        progress = _after_means(progress)
    common = {"progress": progress, "cancelled": cancelled}
    if kind == "single-head":
        return single_head_sweep(engine, mode, split, limit, **common)
    if kind == "layer":
        return layer_sweep(engine, mode, split, limit, **common)
    if kind == "importance":
        return head_importance(engine, mode, split, limit, **common)
    if kind == "pruning":
        return pruning_curve(engine, mode, split, limit, **common)
    if kind == "greedy":
        return greedy_search(engine, mode, split, limit, max_heads=params["max_heads"],
                             held_out=params["held_out"], **common)
    if kind == "pairs":
        return pair_sweep(engine, mode, split, limit, params["heads"], **common)
    if kind == "stats":
        return _stats(engine, params, progress, cancelled)
    if kind == "patterns":
        return _patterns(engine, params, progress, cancelled)
    if kind == "similarity":
        return attention_similarity(engine, base_model, split, limit, **common)
    if kind == "layers":
        return layer_readouts(engine, params["ablate"], mode, split, limit, **common)
    if kind == "syntax":
        return _syntax(engine, params, progress, cancelled)
    if kind == "means":
        return _means(engine, params, progress, cancelled)
    raise InputError(f"unknown job kind {kind!r}; allowed: {', '.join(KINDS)}")


def _after_means(progress: Progress) -> Progress:
    """The job's own work as the rest of its progress bar, after the means' share."""
    return lambda share: progress(MEANS_SHARE + (1 - MEANS_SHARE) * share)


def result_rows(result: dict) -> list[dict]:
    """A result flattened to table rows (one per head, layer or step), for CSV."""
    if "interaction" in result:  # pairs: one row per cell i <= j
        heads = result["heads"]
        return [{"first": "L{}H{}".format(*heads[i]), "second": "L{}H{}".format(*heads[j]),
                 **{name: result[name][i][j] for name in ("delta", "interaction", "p_value", "p_holm", "significant",
                                                          "interaction_p_value", "interaction_p_holm",
                                                          "interaction_significant")}}
                for i in range(len(heads)) for j in range(i, len(heads))]
    if "heads" in result and result["heads"] and isinstance(result["heads"][0], dict):  # stats, patterns
        rows = []
        for head in result["heads"]:
            row = {k: v for k, v in head.items() if k not in ("counts", "labels")}
            row.update(head.get("counts", {}))
            if "labels" in head:
                row["labels"] = " ".join(head["labels"])
            rows.append(row)
        return rows
    if "relations" in result:  # syntax: one row per relation and direction (the accuracy grid in JSON only)
        return [{**{k: v for k, v in r.items() if k not in ("accuracy", "best_head")},
                 "best_head": "L{}H{}".format(*r["best_head"])} for r in result["relations"]]
    if "points" in result:  # pruning
        return [{**{k: v for k, v in p.items() if k not in ("heads", "ci95")}, **_interval(p.get("ci95"))}
                for p in result["points"]]
    if "layers" in result:  # layers: one row per state
        return list(result["layers"])
    if "steps" in result:  # greedy
        return [{**{k: v for k, v in s.items() if k not in ("heads", "added")},
                 "added": "L{}H{}".format(*s["added"])} for s in result["steps"]]
    for name in ("delta", "importance", "similarity", "norm"):
        grid = result.get(name)
        if grid is None:
            continue
        columns = [c for c in (name, "p_value", "p_holm", "significant") if c in result]
        if grid and isinstance(grid[0], list):
            return [{"layer": layer, "head": head, **{c: result[c][layer][head] for c in columns}}
                    for layer in range(len(grid)) for head in range(len(grid[layer]))]
        return [{"layer": layer, **{c: result[c][layer] for c in columns}} for layer in range(len(grid))]
    raise ValueError("result has no table to write")


def _interval(ci95: list[float] | None) -> dict:
    return {} if ci95 is None else {"ci95_low": ci95[0], "ci95_high": ci95[1]}


def significance_summary(result: dict) -> str | None:
    """One line on how many effects of a result survive correction, for `headscope sweep` to print (each
    count over its own Holm family: a pairs result's k x k grids hold k(k+1)/2 tested cells i <= j and
    k(k-1)/2 interactions i < j, mirrored)."""
    if "interaction" in result:
        k = len(result["heads"])
        cells = [(i, j) for i in range(k) for j in range(i, k)]
        survived = sum(bool(result["significant"][i][j]) for i, j in cells)
        interacting = sum(bool(result["interaction_significant"][i][j]) for i, j in cells if i < j)
        return (f"{survived} of {len(cells)} cells (heads alone and pairs) and {interacting} of "
                f"{k * (k - 1) // 2} interactions significant after Holm's correction "
                f"(p_holm <= {significance.ALPHA}, {result['metric']}, n={result['n']})")
    if "p_holm" in result:
        flags = np.asarray(result["significant"]).ravel()
        return (f"{int(flags.sum())} of {flags.size} cells significant after Holm's correction "
                f"(p_holm <= {significance.ALPHA}, {result['metric']}, n={result['n']})")
    if result.get("test_significance"):
        test = result["test_significance"]
        return (f"held-out delta {result['held_out_delta']:+.4f}, 95% CI [{test['ci95'][0]:+.4f}, "
                f"{test['ci95'][1]:+.4f}], p = {test['p_value']:.3g} ({test['test']}, n={result['held_out_n']})")
    return None


def write_result(result: dict, path: str | Path) -> Path:
    """Save `result` as .json (exactly the result object) or .csv (one row per head/layer/step)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".csv"):
        raise InputError(f"output file must end in .json or .csv; got {path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".json":
        path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        return path
    rows = result_rows(result)
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
