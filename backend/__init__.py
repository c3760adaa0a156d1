"""headscope: per-head attention, head ablation and task scores of BERT-family classifiers.

The package is the repository's ``backend/`` folder: ``headscope.engine`` (the model engine, no web
imports), ``headscope.api`` (the HTTP API), ``headscope.app`` (the Dash dashboard, from ``app/``).

In Python (and Jupyter)::

    import headscope
    hs = headscope.open()                      # the embedded default model and task, no server
    hs.evaluate(ablate=[[5, 9]], mode="uniform").delta
    hs.figure(layer=5, head=9, ex=3)           # a Plotly figure
    hs.show(ex=3, layer=5, head=9, off="L5H9") # the dashboard inline, at that state

Importing the package is light: torch, transformers and Dash load on the first ``open``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from headscope.session import Session

__all__ = ["__version__", "open"]


def open(model: str | Path | None = None, task: str | Path | None = None, **settings: Any) -> Session:
    """The engine of `model` on `task` in this process, with the server's store (docs/api.md, "Python API").

    `model`: a local directory (safetensors) or hub id; None = the embedded default model (prepared on
    first use). `task`: a built-in name, ``glue/<name>`` or a .csv/.tsv/.jsonl file; None = rt-snippets.
    Other keywords are settings (``cache_dir``, ``device``, ``dtype``, ``max_tokens``, ``batch_size``...).
    """
    from headscope.session import open_session

    return open_session(model, task, **settings)


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        return version("headscope")
    raise AttributeError(f"module 'headscope' has no attribute {name!r}")
