"""`headscope sweep`: run one atlas analysis from the command line with a progress bar, and save it."""

from __future__ import annotations

import time
from pathlib import Path

from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.runner import normalise_params, run_job, significance_summary, write_result
from headscope.engine.atlas.similarity import default_base_model
from headscope.engine.engine import Engine
from headscope.engine.workspace import build_engine
from headscope.settings import Settings
from tqdm import tqdm


def sweep(kind: str, mode: str, split: str | None, limit: int | None, out: str | Path, settings: Settings,
          *, max_heads: int | None = None, word_level: bool = False, measure: str | None = None,
          ablate: list | tuple = (), heads: list | None = None) -> dict:
    """Build the engine the settings describe, run `kind` and write the result to `out` (.json or .csv).

    The same code and parameters as `POST /api/jobs`, so the file holds exactly what the API serves; the
    result is also stored as that job's result, so a server on the same cache shows it at once.
    """
    if Path(out).suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"--out must end in .json or .csv; got {Path(out).name}")
    engine = build_engine(settings)
    try:
        return _sweep(engine, kind, mode, split, limit, out, settings, max_heads=max_heads, word_level=word_level,
                      measure=measure, ablate=ablate, heads=heads)
    finally:
        if engine.mask_pool is not None:
            engine.mask_pool.close()


def _sweep(engine: Engine, kind: str, mode: str, split: str | None, limit: int | None, out: str | Path,
           settings: Settings, *, max_heads: int | None, word_level: bool, measure: str | None,
           ablate: list | tuple, heads: list | None) -> dict:
    params = normalise_params(engine, kind, mode, split, limit, max_heads=max_heads, word_level=word_level,
                              measure=measure, ablate=ablate, heads=heads)
    base = default_base_model(settings.model, settings.base_model, settings.cache_dir)
    started = time.monotonic()
    with tqdm(total=1000, desc=kind, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        def progress(share: float) -> None:
            bar.update(max(0, round(share * 1000) - bar.n))

        result = run_job(engine, kind, params, progress, base_model=base)
    write_result(result, out)
    if (summary := significance_summary(result)) is not None:
        tqdm.write(summary)
    JobManager(engine, base_model=base).record(params, result, elapsed_s=time.monotonic() - started)
    return result
