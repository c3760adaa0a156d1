"""The dashboard's shareable state and its URL form (docs/api.md, "Dashboard URL"): the one owner of both.

The address bar is the single source of truth: a query string is parsed here into a validated
`ViewState` plus one plain-language explanation per invalid parameter (each invalid part falls back
to its default), and a state is written back in one canonical form. :data:`URL_PARAMS` says which
parameters the form has, in which order, when each is left out and what a change of it means (its
`scope`); the browser's encoder in `static/headscope.js` (for clicks, which must not wait for the server)
is generic over that list, which the page hands it, so a new parameter is added here alone.

Adding a parameter: a field of `ViewState`, an entry in `URL_PARAMS`, its parsing in `parse_query` (a
fixed set of values: give `choices`, and it is parsed for you), and the API call that uses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, quote

# Characters left as they are in a value: what JavaScript's encodeURIComponent leaves, except the quote
# (browsers escape it in a query themselves), plus the comma that separates heads in `off`.
URL_SAFE = "!*(),"
HEAD_NAME = re.compile(r"L(\d{1,4})H(\d{1,4})", re.IGNORECASE)
TOKEN_RANGE = r"(\d{1,6})-(\d{1,6})"
ZOOM = re.compile(TOKEN_RANGE + r"(?:," + TOKEN_RANGE + r")?")
LINES = re.compile(TOKEN_RANGE)
LINES_MAX_TOKENS = 40  # the lines view draws at most this many tokens at once: more are unreadable
MAX_SHOWN_CHARS = 40
MAX_LISTED_BAD_HEADS = 5

Head = tuple[int, int]


@dataclass(frozen=True)
class Param:
    """One parameter of the canonical query, in order. Omitted when its value is None (or empty), or equal to
    `default` when `omit_default`. `scope` says what a change means: "view" only moves what the maps show
    (zoom, lines window; no request depends on it, and a new input resets it), "focus" redraws from data
    already in the page or fetches the focused head, "input" refetches the input's attention, "mask" also
    rescores the mask on the split."""

    name: str
    scope: str
    default: str | None = None
    omit_default: bool = False
    choices: tuple[str, ...] = ()  # a fixed set of values, checked by `parse_query`

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "scope": self.scope, "default": self.default, "omit_default": self.omit_default}


URL_PARAMS: tuple[Param, ...] = (
    Param("ex", "input"),
    Param("text", "input"),
    Param("pair", "input"),
    Param("layer", "focus", "0"),
    Param("head", "focus", "0"),
    Param("off", "mask", "", omit_default=True),
    Param("mode", "mask", "zero"),
    # what the maps show (docs/api.md, "Attention measures"): refetched with the input's attention
    Param("measure", "input", "weights", omit_default=True, choices=("weights", "norm", "rollout")),
    # the focused head's word view (docs/api.md, "Words, parses and syntax heads"): drawn for the focus
    Param("level", "focus", "token", omit_default=True, choices=("token", "word")),
    # the Layers page's scatter (docs/api.md, "Dashboard URL"): state 0 (embeddings) .. L, omitted = the last
    Param("state", "focus"),
    Param("pooling", "focus", "first", omit_default=True, choices=("first", "mean")),
    # the heatmap's and the difference view's zoom, and the lines view's window (docs/api.md, "Dashboard URL"):
    # token positions; zooming or moving the window changes the address bar and fetches nothing
    Param("zoom", "view"),
    Param("lines", "view"),
)
KNOWN_PARAMS = tuple(p.name for p in URL_PARAMS)


@dataclass(frozen=True)
class ModelShape:
    """What a URL is checked against: the loaded model's size, the dev split, the API's text limit."""

    num_layers: int
    num_heads: int
    dev_size: int
    modes: tuple[str, ...]  # the server's ablation modes, in its order
    max_text_chars: int = 50_000
    max_tokens: int = 512  # token positions in `zoom` and `lines` are below this

    @classmethod
    def from_model_info(cls, info: dict[str, Any]) -> ModelShape:
        """From `/api/model`'s body."""
        limits = info.get("limits") or {}
        return cls(
            num_layers=int(info["num_layers"]),
            num_heads=int(info["num_heads"]),
            dev_size=int(info["task"]["splits"].get("dev", 0)),
            modes=tuple(info["ablation_modes"]),
            max_text_chars=int(limits.get("max_text_chars", cls.max_text_chars)),
            max_tokens=int(limits.get("max_tokens", cls.max_tokens)),
        )


@dataclass(frozen=True)
class ViewState:
    """One view of the dashboard: the input (a dev example or free text), focused head, mask and mode, the
    measure the maps show, and whether the focused head is also shown over words."""

    ex: int | None = 0
    text: str | None = None
    pair: str | None = None
    layer: int = 0
    head: int = 0
    off: tuple[Head, ...] = field(default_factory=tuple)
    mode: str = "zero"
    measure: str = "weights"
    level: str = "token"
    state: int | None = None  # the Layers page's PCA: state 0 (embeddings) .. num_layers; None = the last
    pooling: str = "first"  # the Layers page's PCA: the first token's state or the mean over tokens
    # the heatmap's zoom: query tokens first..last, key tokens first..last (inclusive); None = every token
    zoom: tuple[int, int, int, int] | None = None
    lines: tuple[int, int] | None = None  # the lines view's tokens first..last; None = follow the zoom
    def url_values(self) -> dict[str, str | None]:
        """Each URL parameter's value as text (None: not in the link), the form both encoders take."""
        example = self.ex is not None
        return {"ex": str(self.ex) if example else None, "text": None if example else (self.text or ""),
                "pair": None if example else (self.pair or None), "layer": str(self.layer),
                "head": str(self.head), "off": ",".join(head_name(*h) for h in sorted(set(self.off))),
                "mode": self.mode, "measure": self.measure, "level": self.level,
                "state": None if self.state is None else str(self.state), "pooling": self.pooling,
                "zoom": zoom_text(self.zoom),
                "lines": None if self.lines is None else f"{self.lines[0]}-{self.lines[1]}"}


def head_name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


def zoom_text(zoom: tuple[int, int, int, int] | None) -> str | None:
    """`zoom`'s URL form: `10-30` when queries and keys span the same tokens, else `10-30,0-50`."""
    if zoom is None:
        return None
    rows, cols = f"{zoom[0]}-{zoom[1]}", f"{zoom[2]}-{zoom[3]}"
    return rows if rows == cols else f"{rows},{cols}"


def _shown(value: str) -> str:
    """A user-supplied value quoted for a message, cut short so a huge parameter stays readable."""
    if len(value) > MAX_SHOWN_CHARS:
        return repr(value[:MAX_SHOWN_CHARS] + "…")
    return repr(value)


def _parse_index(name: str, raw: str, upper: int, what: str, problems: list[str]) -> int | None:
    """A non-negative integer below `upper`, or None with an explanation naming the allowed range."""
    value = raw.strip()
    if not value.isascii() or not value.isdigit():
        problems.append(f"{name}={_shown(raw)} is not a whole number; {what} are 0..{upper - 1}.")
        return None
    number = int(value)
    if number >= upper:
        problems.append(f"{name}={number} is out of range: {what} are 0..{upper - 1}.")
        return None
    return number


def _parse_off(raw: str, shape: ModelShape, problems: list[str]) -> tuple[Head, ...]:
    """`L3H7,L5H1` -> sorted unique heads; unknown or malformed names are dropped and listed."""
    heads: set[Head] = set()
    malformed: list[str] = []
    unknown: list[str] = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        match = HEAD_NAME.fullmatch(item)
        if match is None:
            malformed.append(item)
            continue
        layer, head = int(match[1]), int(match[2])
        if layer < shape.num_layers and head < shape.num_heads:
            heads.add((layer, head))
        else:
            unknown.append(head_name(layer, head))
    if malformed:
        listed = ", ".join(_shown(m) for m in malformed[:MAX_LISTED_BAD_HEADS])
        more = f" and {len(malformed) - MAX_LISTED_BAD_HEADS} more" if len(malformed) > MAX_LISTED_BAD_HEADS else ""
        problems.append(f"off: {listed}{more} ignored: heads are written like L3H7 (layer 3, head 7), "
                        "separated by commas.")
    if unknown:
        listed = ", ".join(unknown[:MAX_LISTED_BAD_HEADS])
        more = f" and {len(unknown) - MAX_LISTED_BAD_HEADS} more" if len(unknown) > MAX_LISTED_BAD_HEADS else ""
        problems.append(f"off: {listed}{more} ignored: this model has layers 0..{shape.num_layers - 1} "
                        f"and heads 0..{shape.num_heads - 1}.")
    return tuple(sorted(heads))


def _parse_text(name: str, raw: str, shape: ModelShape, problems: list[str]) -> str | None:
    if not raw.strip():
        problems.append(f"{name} is empty; give some text or an example id (ex).")
        return None
    if len(raw) > shape.max_text_chars:
        problems.append(f"{name} has {len(raw)} characters; the limit is {shape.max_text_chars} "
                        "(and the model reads at most max_tokens tokens).")
        return None
    return raw


def _parse_zoom(raw: str, shape: ModelShape, problems: list[str]) -> tuple[int, int, int, int] | None:
    """`10-30` or `10-30,0-50` (query tokens, then key tokens, first-last) -> the zoom, or None explained."""
    match = ZOOM.fullmatch(raw.strip())
    top = shape.max_tokens - 1
    if match is None:
        problems.append(f"zoom={_shown(raw)} ignored: write the query tokens' range, e.g. zoom=10-30, or the "
                        f"query then the key tokens' ranges, e.g. zoom=10-30,0-50 (positions 0..{top}).")
        return None
    first, last = int(match[1]), int(match[2])
    zoom = (first, last, int(match[3]), int(match[4])) if match[3] is not None else (first, last, first, last)
    if zoom[0] > zoom[1] or zoom[2] > zoom[3] or max(zoom) > top:
        problems.append(f"zoom={_shown(raw)} ignored: each range runs from a first to a last token, first <= "
                        f"last, within 0..{top} (this model reads at most {shape.max_tokens} tokens).")
        return None
    return zoom


def _parse_lines(raw: str, shape: ModelShape, problems: list[str]) -> tuple[int, int] | None:
    """`40-79` -> the lines view's window of at most LINES_MAX_TOKENS tokens, or None explained."""
    match = LINES.fullmatch(raw.strip())
    top = shape.max_tokens - 1
    if match is None or int(match[1]) > int(match[2]) or int(match[2]) > top:
        problems.append(f"lines={_shown(raw)} ignored: write the window's first and last token, e.g. lines=40-79 "
                        f"(first <= last, within 0..{top}).")
        return None
    first, last = int(match[1]), int(match[2])
    if last - first + 1 > LINES_MAX_TOKENS:
        problems.append(f"lines={first}-{last} ignored: it spans {last - first + 1} tokens, and the lines view draws "
                        f"at most {LINES_MAX_TOKENS} at once (e.g. lines={first}-{first + LINES_MAX_TOKENS - 1}).")
        return None
    return first, last


def parse_query(query: str, shape: ModelShape) -> tuple[ViewState, list[str]]:
    """A query string (with or without '?') -> the state it names and one explanation per invalid part."""
    problems: list[str] = []
    values: dict[str, str] = {}
    for key, value in parse_qsl(query.removeprefix("?"), keep_blank_values=True):
        if key not in KNOWN_PARAMS:
            problems.append(f"unknown parameter {_shown(key)} ignored; known: {', '.join(KNOWN_PARAMS)}.")
        elif key in values:
            problems.append(f"{key} is given more than once; the first value is used.")
        else:
            values[key] = value

    state = ViewState()
    example = None
    if "ex" in values:
        if shape.dev_size < 1:
            problems.append("ex ignored: this task has no dev examples.")
        else:
            example = _parse_index("ex", values["ex"], shape.dev_size, "dev example ids", problems)
    if example is not None:
        state = replace(state, ex=example)
    elif "text" in values:
        text = _parse_text("text", values["text"], shape, problems)
        if text is not None:
            pair = _parse_text("pair", values["pair"], shape, problems) if values.get("pair") else None
            state = replace(state, ex=None, text=text, pair=pair)
    elif "pair" in values:
        problems.append("pair ignored: it is the second segment of text=, which is missing.")

    layer = head = 0
    if "layer" in values:
        layer = _parse_index("layer", values["layer"], shape.num_layers, "layers", problems) or 0
    if "head" in values:
        head = _parse_index("head", values["head"], shape.num_heads, "heads", problems) or 0
    state = replace(state, layer=layer, head=head)
    if "state" in values:  # one more state than layers: the embeddings, then each layer's output
        state = replace(state, state=_parse_index("state", values["state"], shape.num_layers + 1,
                                                  "the Layers page's states (0 = embeddings)", problems))

    if "off" in values:
        state = replace(state, off=_parse_off(values["off"], shape, problems))
    if "mode" in values:
        if values["mode"] in shape.modes:
            state = replace(state, mode=values["mode"])
        else:
            problems.append(f"mode={_shown(values['mode'])} is not an ablation mode; allowed: "
                            f"{', '.join(shape.modes)}. Using {state.mode}.")
    if "zoom" in values:
        state = replace(state, zoom=_parse_zoom(values["zoom"], shape, problems))
    if "lines" in values:
        state = replace(state, lines=_parse_lines(values["lines"], shape, problems))
    for param in URL_PARAMS:
        if param.choices and param.name in values:
            if values[param.name] in param.choices:
                state = replace(state, **{param.name: values[param.name]})
            else:
                problems.append(f"{param.name}={_shown(values[param.name])} is not allowed; allowed: "
                                f"{', '.join(param.choices)}. Using {param.default}.")
    return state, problems


def _encode(value: str) -> str:
    return quote(value, safe=URL_SAFE)


def encode_query(values: dict[str, str | None]) -> str:
    """URL values (see `ViewState.url_values`) -> the canonical '?'-prefixed query, in `URL_PARAMS` order.
    `static/headscope.js`'s `encodeQuery` is this function for the browser (the e2e tests compare them)."""
    parts = []
    for param in URL_PARAMS:
        value = values.get(param.name)
        if value is None or (param.omit_default and value == param.default):
            continue
        parts.append(f"{param.name}={_encode(value)}")
    return "?" + "&".join(parts)


def to_query(state: ViewState) -> str:
    """The canonical query string of a state, '?'-prefixed: input, focus, mask (when any), mode, measure
    and level (each when not the default)."""
    return encode_query(state.url_values())
