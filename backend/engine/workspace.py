"""Turning settings into a ready engine: which model, which task, which store."""

from __future__ import annotations

import logging
from pathlib import Path

from headscope.engine.engine import Engine
from headscope.engine.errors import TaskError
from headscope.engine.model import LoadedModel, load_model
from headscope.engine.store import ResultStore
from headscope.engine.tasks import Task, load_glue_task, load_task_file
from headscope.settings import Settings

log = logging.getLogger(__name__)


def resolve_task(spec: str, labels: list[str], cache_dir: Path, metric: str | None = None) -> Task:
    """A built-in task name, `glue/<name>`, or a path to a .csv/.tsv/.jsonl file."""
    from headscope.engine.builtin_tasks import BUILTIN_TASKS, load_builtin_task

    if spec in BUILTIN_TASKS:
        return load_builtin_task(spec, cache_dir)
    if spec.startswith("glue/"):
        return load_glue_task(spec, labels)
    path = Path(spec).expanduser()
    if path.suffix.lower() in (".csv", ".tsv", ".jsonl"):
        return load_task_file(path, labels, metric or "accuracy")
    raise TaskError(
        f"unknown task {spec!r}: give a built-in task ({', '.join(BUILTIN_TASKS)}), glue/<name>, "
        "or a .csv/.tsv/.jsonl file"
    )


def load_configured_model(settings: Settings) -> LoadedModel:
    """The model the settings name, or the embedded default (prepared on first use)."""
    if settings.model:
        return load_model(settings.model, device=settings.device, dtype=settings.dtype,
                          max_tokens=settings.max_tokens, fingerprints=settings.fingerprints_file)
    from headscope.engine.default_model import load_metadata, prepare_default_model

    directory = prepare_default_model(settings.cache_dir)
    meta = load_metadata(directory)
    log.info("default model %s: dev accuracy %.3f, test accuracy %.3f (%d fine-tuning steps)", directory,
             meta["dev_accuracy"], meta["test_accuracy"], meta["steps"])
    return load_model(directory, device=settings.device, dtype=settings.dtype, max_tokens=settings.max_tokens,
                      name="headscope/minilm-l6-rt-snippets", fingerprints=settings.fingerprints_file)


def build_engine(settings: Settings) -> Engine:
    """Load the model and task once; results persist in the settings' SQLite file."""
    model = load_configured_model(settings)
    task = resolve_task(settings.task, model.labels, settings.cache_dir, settings.metric)
    if len(task.labels) != len(model.labels):
        raise TaskError(f"task {task.name!r} has {len(task.labels)} labels but the model has {len(model.labels)}")
    log.info("loaded %s on %s (%s), task %s %s", model.name, model.device, model.dtype, task.name, task.sizes())
    engine = Engine(model, task, ResultStore(settings.results_db), batch_size=settings.batch_size,
                    layer_cache_bytes=settings.layer_cache_bytes,
                    attention_cache_bytes=settings.attention_cache_bytes)
    if settings.ray_address:  # sweeps' chunks go to Ray workers
        from headscope.engine.atlas.ray_workers import MaskPool

        engine.mask_pool = MaskPool(engine, settings.ray_address, workers=settings.ray_workers,
                                    dtype=settings.dtype)
    return engine
