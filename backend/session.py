"""The Python API: ``hs = headscope.open(...)``, the engine in this process (docs/api.md, "Python API").

A :class:`Session` holds the same engine and result store a server on the same settings would use, so a
number computed here is stored for the server (and the other way round), and equals what the HTTP API
answers for the same request. Views (``figure``, ``show``, ``export_html``) take the dashboard URL's
parameters (``ex``, ``text``, ``pair``, ``layer``, ``head``, ``off``, ``mode``, ...) or a whole share link.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import numpy as np
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError
from headscope.settings import Settings

Head = Sequence[int]


class Answer:
    """An API answer with its fields as attributes (``r.score``) and as a dict (``r.to_dict()``)."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.__dict__.update(fields)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items() if k not in ("flipped", "weights"))
        return f"{type(self).__name__}({shown})"


@dataclass(frozen=True)
class Attention:
    """One input's attention under a mask: ``weights`` is ``[layers, heads, n, n]`` (``[layers, n, n]``
    for ``rollout``), rows = query tokens; ``probs`` follow ``labels``."""

    tokens: list[str]
    segments: list[int]
    label: str
    probs: list[float]
    labels: list[str]
    weights: np.ndarray
    mode: str
    measure: str
    ablate: list[list[int]]


@dataclass(frozen=True)
class View:
    """A dashboard state resolved to its input: what ``figure``, ``show`` and ``export_html`` draw."""

    query: str  # canonical, '?'-prefixed
    text: str
    pair: str | None
    layer: int
    head: int
    off: list[list[int]]
    mode: str
    measure: str


def _off_text(off: object) -> str:
    """``off`` as the URL writes it, from "L3H7,L5H1" or [[3, 7], [5, 1]]."""
    if isinstance(off, str):
        return off
    return ",".join(f"L{int(layer)}H{int(head)}" for layer, head in off)  # type: ignore[union-attr]


class Session:
    """The engine of one model and task in this process: attention, evaluations, sweeps, figures."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self._served: str | None = None  # the dashboard's base URL, once :meth:`show` served it
        self._servers = ExitStack()  # the servers :meth:`show` started, stopped by :meth:`close`
        self._serve_lock = threading.Lock()

    def __repr__(self) -> str:
        model = self.engine.model
        return (f"<headscope session: {model.name} ({model.architecture}, {model.num_layers} layers x "
                f"{model.num_heads} heads) on task {self.engine.task.name} {self.engine.task.sizes()}>")

    # -- the HTTP API's operations -------------------------------------------------------------------
    def describe(self) -> dict:
        """What ``GET /api/model`` answers."""
        return self.engine.describe()

    def attention(self, text: str, text_pair: str | None = None, ablate: Iterable[Head] = (), mode: str = "zero",
                  measure: str = "weights", level: str = "token") -> Attention:
        """Every head's attention for one input under a mask (``POST /api/attention`` with every head);
        ``level="word"`` merges the maps to spaCy's words as the API does (Clark et al.)."""
        mask = self._mask(ablate)
        measure = self.engine.check_measure(measure)
        if level not in ("token", "word"):
            raise InputError(f"unknown level {level!r}; allowed: token, word")
        result = self.engine.attention(text, text_pair, mask, mode)
        tokens, segments, maps = result.tokens, result.segments, np.asarray(result.maps(measure))
        if level == "word":
            from headscope.engine.words import require_offsets

            require_offsets(self.engine.model.tokenizer)
            words = self.engine.word_alignment(result.tokens, text, text_pair)
            tokens, segments, maps = words.entries, words.entry_segments(result.segments), words.merge(maps)
        return Attention(tokens=tokens, segments=segments, label=result.label, probs=result.probs,
                         labels=self.engine.model.labels, weights=maps, mode=mode, measure=measure, ablate=mask)

    def evaluate(self, ablate: Iterable[Head] = (), mode: str = "zero", split: str | None = None,
                 limit: int | None = None) -> Answer:
        """The task score under a mask against the baseline: ``POST /api/evaluate``'s fields as attributes."""
        mask = self._mask(ablate)
        split = self.engine.task.split_name(split)
        self.engine.task.select(split, limit)  # unknown split or bad limit: an error naming what is allowed
        result = self.engine.stored_evaluation(mask, mode, split, limit)
        if result is None:
            result = self.engine.evaluate(mask, mode, split, limit)
        return Answer({**result.model_dump(mode="json"), "split": split, "ablate": mask})

    def sweep(self, kind: str, **params: Any) -> dict:
        """Run an atlas job in this process (a progress bar: tqdm's widget in Jupyter, text in a terminal)
        and return its result, as ``GET /api/jobs/{id}`` does; a result already stored comes back at once."""
        from headscope.engine.atlas.jobs import JobManager
        from headscope.engine.atlas.runner import normalise_params, run_job
        from headscope.engine.atlas.similarity import default_base_model
        from tqdm.auto import tqdm

        mode, split, limit = params.pop("mode", "zero"), params.pop("split", None), params.pop("limit", None)
        normalised = normalise_params(self.engine, kind, mode, split, limit, **params)
        base = default_base_model(self.settings.model, self.settings.base_model, self.settings.cache_dir)
        jobs = JobManager(self.engine, base_model=base)
        stored = jobs.get(jobs.job_id(normalised))
        if stored is not None and stored.result is not None:
            return stored.result
        started = time.monotonic()
        with tqdm(total=1000, desc=kind, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining}") as bar:
            def progress(share: float) -> None:
                bar.update(max(0, round(share * 1000) - bar.n))

            result = run_job(self.engine, kind, normalised, progress, base_model=base)
        jobs.record(normalised, result, elapsed_s=time.monotonic() - started)
        return result

    # -- views: the dashboard URL's parameters --------------------------------------------------------
    def view(self, url: str | None = None, **params: Any) -> View:
        """A dashboard state from a share link (or its query string) and/or the URL's parameters given as
        keywords (keywords win); an invalid parameter is an error that says what is allowed."""
        from urllib.parse import parse_qsl

        from headscope.app.urlstate import KNOWN_PARAMS, ModelShape, parse_query, to_query
        from headscope.engine.interventions import ABLATION_MODES

        values: dict[str, str] = dict(parse_qsl(urlsplit(url).query if url and "?" in url else (url or "")))
        for key, value in params.items():
            if value is not None:
                values[key] = _off_text(value) if key == "off" else str(value)
        if "text" in params and params["text"] is not None and "ex" not in params:
            values.pop("ex", None)  # a text given here wins over the link's example
        # parameters the URL owner does not parse yet are read here
        measure = values.get("measure", "weights") if "measure" in KNOWN_PARAMS else values.pop("measure", "weights")
        split = values.get("split", "dev") if "split" in KNOWN_PARAMS else values.pop("split", "dev")
        model = self.engine.model
        shape = ModelShape(num_layers=model.num_layers, num_heads=model.num_heads,
                           dev_size=self.engine.task.sizes().get(split, 0), modes=tuple(ABLATION_MODES),
                           max_tokens=model.max_tokens)
        state, problems = parse_query(urlencode(values), shape)
        if problems:
            raise InputError(" ".join(problems))
        if state.ex is not None:
            example = self.engine.task.split(split)[state.ex]
            text, pair = example.text, example.text_pair
        else:
            text, pair = state.text or "", state.pair
        query = to_query(state)
        if split != "dev" and "split" not in KNOWN_PARAMS:
            query += f"&split={split}"
        if measure != "weights" and "measure" not in KNOWN_PARAMS:
            query += f"&measure={measure}"
        return View(query=query, text=text, pair=pair, layer=state.layer, head=state.head,
                    off=[list(h) for h in state.off], mode=state.mode, measure=measure)

    def figure(self, layer: int | None = None, head: int | None = None, text: str | None = None, *,
               url: str | None = None, **params: Any):
        """The focused head's map as a Plotly figure (``rollout``: the layer's), titled with how it was made."""
        from headscope.figures import head_figure, head_name

        view = self.view(url, layer=layer, head=head, text=text, **params)
        result = self.attention(view.text, view.pair, view.off, view.mode, view.measure)
        matrix = result.weights[view.layer] if view.measure == "rollout" else result.weights[view.layer, view.head]
        what = f"layer {view.layer}" if view.measure == "rollout" else head_name(view.layer, view.head)
        off = ", ".join(head_name(*h) for h in view.off) or "none"
        title = (f"{what} · {view.measure} · heads off: {off} ({view.mode})<br>"
                 f"<sup>{self.engine.model.name}: predicts {result.label} ({max(result.probs):.3f})</sup>")
        return head_figure(result.tokens, matrix, title=title, measure=view.measure)

    def export_html(self, path: str | Path, layer: int | None = None, head: int | None = None,
                    text: str | None = None, *, url: str | None = None, limit: int | None = None,
                    **params: Any) -> Path:
        """Write one self-contained HTML file of the view (every head's map, the focused head, the task
        score on the first `limit` dev examples, None = all of dev as the dashboard shows) that opens
        offline. Returns the path. The grid's maps are pooled as the dashboard's thumbnails are, so the
        file stays a few MB at any model size; the focused head is in full (the page says so)."""
        from headscope.api.routes.attention import pooled
        from headscope.app.attention_callbacks import THUMB_SIZE
        from headscope.figures import standalone_html

        view = self.view(url, layer=layer, head=head, text=text, **params)
        result = self.attention(view.text, view.pair, view.off, view.mode, view.measure)
        scores = self.evaluate(view.off, view.mode, "dev", limit).to_dict()
        link = (self._served + view.query) if self._served else view.query
        rollout = view.measure == "rollout"
        page = standalone_html(
            title=f"headscope: {self.engine.model.name} on {self.engine.task.name}", tokens=result.tokens,
            grid=pooled(result.weights, THUMB_SIZE),  # [layers, heads, n, n] or rollout's [layers, n, n]
            focused=None if rollout else result.weights[view.layer, view.head],
            focus=(view.layer, view.head), off=view.off, mode=view.mode,
            measure=view.measure, prediction={"label": result.label, "probs": result.probs},
            labels=result.labels, model_name=self.engine.model.name, scores=scores, link=link)
        target = Path(path)
        target.write_text(page, encoding="utf-8")
        return target

    def show(self, layer: int | None = None, head: int | None = None, text: str | None = None, *,
             url: str | None = None, height: int = 900, **params: Any) -> str:
        """The dashboard inline (in Jupyter) at this state, served from this process through Dash's own
        Jupyter support; returns the share link (valid while this kernel runs)."""
        from dash import jupyter_dash

        view = self.view(url, layer=layer, head=head, text=text, **params)
        link = self._dashboard() + view.query
        if jupyter_dash.in_ipython:
            from IPython.display import IFrame, display

            display(IFrame(link, width="100%", height=height))
        return link

    # -- serving the dashboard from this process ---------------------------------------------------
    def _dashboard(self) -> str:
        """Start (once) this session's engine behind the API and the dashboard, through the one
        serve-in-a-thread helper (headscope.server.serve_in_thread); returns the dashboard's base URL. In
        Jupyter the dashboard runs in Dash's Jupyter runner, which knows Jupyter's proxies."""
        with self._serve_lock:
            if self._served is not None:
                return self._served
            from dash import jupyter_dash
            from headscope.api.app import create_app
            from headscope.server import dashboard_asgi, serve_in_thread

            if not jupyter_dash.active:  # a script or terminal: API and dashboard on one server, as `serve`
                url = self._servers.enter_context(serve_in_thread(
                    lambda url: create_app(self.settings, engine=self.engine, ui=dashboard_asgi(f"{url}/api"))))
                self._served = url + "/"
                return self._served
            import socket

            from headscope.app.dashboard import create_dash

            api = self._servers.enter_context(
                serve_in_thread(lambda url: create_app(self.settings, engine=self.engine)))
            app = create_dash(f"{api}/api")
            with socket.socket() as probe:  # Dash's runner takes a port number, not a socket
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            jupyter_dash.run_app(app, mode="_none", host="127.0.0.1", port=port)
            prefix = app.config.requests_pathname_prefix.rstrip("/")
            self._served = (self._jupyter_server_url() or f"http://127.0.0.1:{port}") + prefix + "/"
            return self._served

    @staticmethod
    def _jupyter_server_url() -> str | None:
        from dash._jupyter import _jupyter_config

        url = _jupyter_config.get("server_url")
        return url.rstrip("/") if url else None

    def close(self) -> None:
        """Stop the servers this session started for :meth:`show` (Dash's Jupyter runner ends with the kernel)."""
        self._servers.close()
        self._served = None

    def _mask(self, ablate: Iterable[Head] | str) -> list[list[int]]:
        """Sorted [layer, head] pairs, as the API keys them; "L3H7,L5H1" is accepted too."""
        if isinstance(ablate, str):
            from headscope.app.urlstate import HEAD_NAME

            ablate = [(int(m.group(1)), int(m.group(2))) for m in HEAD_NAME.finditer(ablate)]
        return self.engine.disabled_tensor(list(ablate)).nonzero().tolist()


def open_session(model: str | Path | None = None, task: str | Path | None = None, **settings: Any) -> Session:
    """Load `model` (a directory or hub id; None = the embedded default model, prepared on first use) and
    `task` (a built-in name, glue/<name>, or a file; None = rt-snippets) with any other setting of
    :class:`headscope.settings.Settings` (``cache_dir``, ``device``, ``dtype``, ``max_tokens``, ...).
    Settings not given come from the ``HEADSCOPE_*`` environment, as for the server."""
    from headscope.engine.workspace import build_engine

    overrides = {k: v for k, v in {"model": model, "task": task, **settings}.items() if v is not None}
    chosen = Settings(**{k: str(v) if isinstance(v, Path) and k in ("model", "task") else v
                         for k, v in overrides.items()})
    return Session(build_engine(chosen), chosen)
