"""The `headscope` command line: one function per command, each parsing arguments and calling the engine."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer
from headscope.engine.atlas.kinds import KINDS  # light: names only, no torch
from headscope.engine.modes import ABLATION_MODES  # light too
from headscope.settings import Settings

app = typer.Typer(no_args_is_help=True)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"headscope {version('headscope')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the installed version and exit.")] = False,
) -> None:
    """headscope: look inside a BERT classifier's attention heads."""


ModelOption = Annotated[
    str | None, typer.Option("--model", help="Local model directory (safetensors) or hub id; default: embedded.")
]
TaskOption = Annotated[
    str | None, typer.Option("--task", help="Built-in task name, glue/<name>, or a .csv/.tsv/.jsonl file.")
]


def _settings(**overrides: object) -> Settings:
    """Settings from the environment, with the flags that were given on top."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


@app.command()
def serve(
    model: ModelOption = None,
    task: TaskOption = None,
    metric: Annotated[str | None, typer.Option(help="Metric for a task file: accuracy, f1 or mcc.")] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve the dashboard at / and the API at /api from one process."""
    from headscope.engine.errors import EngineError
    from headscope.server import serve as run

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the dashboard's own API calls: uvicorn logs them
    try:
        run(_settings(model=model, task=task, metric=metric, host=host, port=port))
    except EngineError as exc:  # a model or task that cannot be loaded: say why, no traceback
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def ui(
    api_url: Annotated[str, typer.Option("--api-url", help="Base URL of a running headscope API.")],
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Serve the dashboard alone, against a running API."""
    from headscope.server import serve_ui

    try:
        serve_ui(_settings(api_url=api_url, host=host, port=port))
    except ValueError as exc:  # a missing or malformed --api-url
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def parse_heads(text: str, option: str) -> list[list[int]]:
    """``L5H0,L5H9`` -> ``[[5, 0], [5, 9]]`` (the dashboard URL's spelling); a bad name exits with code 2."""
    from headscope.app.urlstate import HEAD_NAME

    names = [part.strip() for part in text.split(",") if part.strip()]
    if bad := [name for name in names if HEAD_NAME.fullmatch(name) is None]:
        typer.echo(f"error: {option} {', '.join(bad)}: heads are written like L3H7 (layer 3, head 7)", err=True)
        raise typer.Exit(2)
    return [[int(m[1]), int(m[2])] for m in map(HEAD_NAME.fullmatch, names)]


@app.command()
def sweep(
    kind: Annotated[str, typer.Option(help=f"Job kind: {', '.join(KINDS)}.")],
    out: Annotated[Path, typer.Option(help="Where to write the result: FILE.json or FILE.csv.")],
    mode: Annotated[str, typer.Option(help=f"Ablation mode: {', '.join(ABLATION_MODES)} "
                                           f"({', '.join(k for k, v in KINDS.items() if not v.uses_mode)} ignore it).")
                    ] = "zero",
    model: ModelOption = None,
    task: TaskOption = None,
    split: Annotated[str | None, typer.Option(help="Split to score on (default dev).")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use the first N examples of the split.")] = None,
    max_heads: Annotated[int | None, typer.Option(min=1, help="greedy: most heads to remove.")] = None,
    word_level: Annotated[bool, typer.Option(help="stats: aggregate wordpieces to spaCy's words (Clark et al.).")
                          ] = False,
    measure: Annotated[str | None, typer.Option(
        help="stats: weights (default) or norm (Kobayashi et al. 2020, rows divided by their sums).")] = None,
    base_model: Annotated[str | None, typer.Option(help="similarity: the pre-trained model to compare with.")] = None,
    off: Annotated[str, typer.Option(
        help="layers, syntax: heads switched off, as in the dashboard URL (L5H0,L5H1).")] = "",
    heads: Annotated[str | None, typer.Option(
        help="pairs: the heads to pair up, as L5H0,L5H9 (default: every head).")] = None,
    ray: Annotated[str | None, typer.Option(
        "--ray", help="Split the sweep's masks across a Ray cluster: its address, or `local` to start one.")] = None,
) -> None:
    """Run an atlas analysis from the command line, with a progress bar, and write JSON or CSV."""
    from headscope.engine.atlas.cli import sweep as run_sweep
    from headscope.engine.errors import EngineError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ablate = parse_heads(off, "--off")
    try:
        run_sweep(kind=kind, mode=mode, split=split, limit=limit, out=out, max_heads=max_heads,
                  word_level=word_level, measure=measure, ablate=ablate,
                  heads=parse_heads(heads, "--heads") if heads is not None else None,
                  settings=_settings(model=model, task=task, base_model=base_model, ray_address=ray))
    except (EngineError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"wrote {out}")

@app.command()
def prepare(
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop fine-tuning after N steps (default: one full epoch).")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where data and models go (default: HEADSCOPE_CACHE_DIR or ~/.cache/headscope)."),
    ] = None,
    model: ModelOption = None,
    task: TaskOption = None,
    metric: Annotated[str | None, typer.Option(help="Metric for a task file: accuracy, f1 or mcc.")] = None,
) -> None:
    """Make a model ready to serve, and exit: build the embedded default model (MiniLM-L6 fine-tuned on Rotten
    Tomatoes sentences) unless --model names another, then compute and store the per-head means that
    mean mode needs (over the task's train split), so no first mean-mode request waits for them."""
    from headscope.engine.errors import EngineError

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = _settings(cache_dir=cache_dir, model=model, task=task, metric=metric)
    try:
        if settings.model is None:
            _prepare_default(settings, max_steps)
        _prepare_means(settings)
    except EngineError as exc:  # PrepareError, or a model or task that cannot be loaded
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _prepare_default(settings: Settings, max_steps: int | None) -> None:
    from headscope.engine.default_model import load_metadata, prepare_default_model

    started = time.monotonic()
    model_dir = prepare_default_model(settings.cache_dir, max_steps=max_steps)
    meta = load_metadata(model_dir)
    waited = time.monotonic() - started
    typer.echo(f"model: {model_dir}")
    typer.echo(
        f"dev accuracy {meta['dev_accuracy']:.4f} (n={meta['splits']['dev']}), "
        f"test accuracy {meta['test_accuracy']:.4f} (n={meta['splits']['test']})"
    )
    typer.echo(
        f"{meta['steps']} steps; built in {meta['elapsed_seconds']:.0f} s on {meta['date']}"
        + (" (already prepared)" if waited < 1 else f"; this run took {waited:.0f} s")
    )


def _prepare_means(settings: Settings) -> None:
    """The per-head means of mean mode, stored in the results store as the `means` job stores them."""
    from headscope.engine.workspace import build_engine
    from tqdm import tqdm

    engine = build_engine(settings)
    split = engine.task.reference_split
    known = engine.has_head_means()
    started = time.monotonic()
    with tqdm(total=1000, desc=f"mean mode: head means over {split}", unit="‰", disable=known,
              bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
        engine.head_means(lambda share: bar.update(max(0, round(share * 1000) - bar.n)))
    how = "already stored" if known else f"computed in {time.monotonic() - started:.0f} s"
    typer.echo(f"mean mode: per-head means over the {len(engine.task.split(split))} {split} examples {how} "
               f"({settings.results_db})")


if __name__ == "__main__":
    app()
