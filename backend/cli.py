"""The `headscope` command line: one function per command, each parsing arguments and calling the engine."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from backend.settings import Settings

app = typer.Typer(no_args_is_help=True)


@app.callback()  # keeps `prepare` a subcommand even while it is the only command
def main() -> None:
    """headscope: look inside a BERT classifier's attention heads."""


@app.command()
def prepare(
    max_steps: Annotated[
        int | None, typer.Option(min=1, help="Stop fine-tuning after N steps (default: one full epoch).")
    ] = None,
    cache_dir: Annotated[
        Path | None,
        typer.Option(help="Where data and models go (default: HEADSCOPE_CACHE_DIR or ~/.cache/headscope)."),
    ] = None,
) -> None:
    """Build the embedded default model (MiniLM-L6 fine-tuned on Rotten Tomatoes sentences) and exit."""
    from backend.engine.default_model import PrepareError, load_metadata, prepare_default_model

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = Settings(cache_dir=cache_dir) if cache_dir is not None else Settings()
    started = time.monotonic()
    try:
        model_dir = prepare_default_model(settings.cache_dir, max_steps=max_steps)
    except PrepareError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
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


if __name__ == "__main__":
    app()
