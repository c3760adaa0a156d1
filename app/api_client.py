"""The dashboard's only way to the backend: the public HTTP API (docs/api.md), over httpx.

Errors come back as `ApiError` carrying the API's own explanation, so the page can show it as is.
A 429 (the model's queue is full) is retried after its `Retry-After`, within a time budget.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import httpx

REMEMBERED_EXAMPLES = 64  # dev examples kept by id (each is one page of one, fetched when a view names it)
BUSY_RETRY_BUDGET_S = 60.0
SLOW_CALL_TIMEOUT_S = 600.0  # a first full-dev evaluation of a large model on a CPU is slow


class ApiError(Exception):
    """The API refused or failed a call; `message` is fit to show to the user."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def is_bad_input(self) -> bool:
        return self.status is not None and 400 <= self.status < 500 and self.status != 429


def _error_message(response: httpx.Response) -> str:
    """The API's `detail` plus each field error, or the status line when the body is not the API's."""
    try:
        body = response.json()
    except ValueError:
        return f"the API answered {response.status_code} {response.reason_phrase}"
    detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
    errors = body.get("errors") if isinstance(body, dict) else None
    if errors:
        detail = "; ".join([detail] + [f"{e.get('field')}: {e.get('message')}" for e in errors if e])
    return detail or f"the API answered {response.status_code} {response.reason_phrase}"


class ApiClient:
    """Typed calls to one headscope API (`base_url` ends in /api). Thread-safe: Dash calls it from many
    worker threads at once."""

    def __init__(self, base_url: str, *, timeout_s: float = SLOW_CALL_TIMEOUT_S,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(timeout_s, connect=5.0),
                                    transport=transport)
        self._examples_lock = threading.Lock()
        self._examples: OrderedDict[tuple[str, int], dict[str, Any]] = OrderedDict()  # (fingerprint, id) -> item

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._send(method, path, **kwargs).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + BUSY_RETRY_BUDGET_S
        while True:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.HTTPError as exc:
                raise ApiError(None, f"the API at {self.base_url} is not answering ({exc.__class__.__name__}: "
                                     f"{exc})") from None
            if response.status_code == 429:
                wait = float(response.headers.get("Retry-After", "1") or 1)
                if time.monotonic() + wait < deadline:
                    time.sleep(min(max(wait, 0.2), 10.0))
                    continue
            if response.is_success:
                return response
            raise ApiError(response.status_code, _error_message(response))

    # -- the endpoints --------------------------------------------------------------------------
    def model(self) -> dict[str, Any]:
        return self._call("GET", "/model")

    @staticmethod
    def _attention_body(text: str, text_pair: str | None, ablate: Sequence[Sequence[int]], mode: str,
                        fmt: str, heads: Sequence[Sequence[int]] | None, **fields: Any) -> dict[str, Any]:
        """The `/api/attention` request body; `fields` are further request fields (`measure`, `level`, `size`)
        as docs/api.md names them, left out when None."""
        body = {"text": text, "text_pair": text_pair or None, "ablate": [list(h) for h in ablate], "mode": mode,
                "format": fmt, "heads": None if heads is None else [list(h) for h in heads]}
        return body | {key: value for key, value in fields.items() if value is not None}

    def attention(self, text: str, text_pair: str | None, ablate: Sequence[Sequence[int]], mode: str,
                  fmt: str = "json", heads: Sequence[Sequence[int]] | None = None, measure: str = "weights",
                  level: str = "token") -> dict[str, Any]:
        body = self._attention_body(text, text_pair, ablate, mode, fmt, heads, measure=measure, level=level)
        return self._call("POST", "/attention", json=body)

    def attention_text(self, text: str, text_pair: str | None, ablate: Sequence[Sequence[int]], mode: str, *,
                       fmt: str = "f16", heads: Sequence[Sequence[int]] | None = None, **fields: Any) -> str:
        """The API's answer as text (`f16` or `thumb`; `fields` as `_attention_body` takes them), passed to the
        browser as is, never decoded here."""
        body = self._attention_body(text, text_pair, ablate, mode, fmt, heads, **fields)
        return self._send("POST", "/attention", json=body).text

    def parse(self, text: str, text_pair: str | None) -> dict[str, Any]:
        """spaCy's words, heads and relations for an input (docs/api.md, "Words, parses and syntax heads")."""
        return self._call("POST", "/parse", json={"text": text, "text_pair": text_pair or None})

    def prediction(self, text: str, text_pair: str | None, ablate: Sequence[Sequence[int]],
                   mode: str) -> dict[str, Any]:
        """The model's prediction for one input under a mask (no heads sent; the API memoises the forward)."""
        return self.attention(text, text_pair, ablate, mode, heads=[])["prediction"]

    def evaluate(self, ablate: Sequence[Sequence[int]], mode: str, split: str | None = None,
                 limit: int | None = None) -> dict[str, Any]:
        body = {"ablate": [list(h) for h in ablate], "mode": mode, "split": split, "limit": limit}
        return self._call("POST", "/evaluate", json=body)

    def examples(self, split: str | None = None, offset: int = 0, limit: int = 20,
                 q: str | None = None) -> dict[str, Any]:
        """A page of a split, or of its examples whose text contains `q` (docs/api.md, /api/examples)."""
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if split:
            params["split"] = split
        if q:
            params["q"] = q
        return self._call("GET", "/examples", params=params)

    def start_job(self, request: dict[str, Any]) -> str:
        """Queue an atlas job (or find the finished one with the same parameters); its id."""
        return self._call("POST", "/jobs", json=request)["id"]

    def job_kinds(self) -> dict[str, Any]:
        """The job kinds on offer, their parameters, and the names results use."""
        return self._call("GET", "/jobs/kinds")

    def find_job(self, request: dict[str, Any]) -> dict[str, Any]:
        """The request's job identity and its job if the server knows one (nothing is started)."""
        return self._call("POST", "/jobs/lookup", json=request)

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/jobs/{job_id}")

    def representations(self, request: dict[str, Any]) -> dict[str, Any]:
        """A layer's pooled states on their first two principal components (docs/api.md, "Layers")."""
        return self._call("POST", "/representations", json=request)

    def dev_example(self, fingerprint: str, ex: int) -> dict[str, Any]:
        """Dev example `ex` (its page of one; the last few asked for are remembered per model fingerprint).
        The dashboard never loads a whole split: the picker pages and searches (input_callbacks)."""
        key = (fingerprint, ex)
        with self._examples_lock:
            if key in self._examples:
                self._examples.move_to_end(key)
                return self._examples[key]
        page = self.examples("dev", offset=ex, limit=1) if ex >= 0 else {"items": [], "total": None}
        if not page["items"]:
            total = page["total"] if page["total"] is not None else self.examples("dev", limit=1)["total"]
            raise ApiError(422, f"dev example {ex} does not exist: ids are 0..{total - 1}")
        with self._examples_lock:
            self._examples[key] = page["items"][0]
            while len(self._examples) > REMEMBERED_EXAMPLES:
                self._examples.popitem(last=False)
        return page["items"][0]
