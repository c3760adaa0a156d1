"""Request and response bodies of the HTTP API (docs/api.md), with every static limit declared.

Limits live in ``Field(...)`` so that ``/openapi.json`` states them and the 422 messages name them.
Limits that depend on the loaded model (layer and head ranges, ``max_tokens``) are checked by the
engine and reported by ``/api/model``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from headscope.engine.atlas.layers import REPRESENTATIONS_CAP
from headscope.engine.atlas.runner import KINDS
from headscope.engine.engine import EvaluationResult
from headscope.engine.interventions import AblationMode
from pydantic import BaseModel, ConfigDict, Field

MAX_TEXT_CHARS = 50_000
MAX_HEAD_LIST = 4096
MAX_EXAMPLES_PAGE = 1000
MAX_EXAMPLES_QUERY = 200  # characters of an /api/examples search
MIN_THUMB_SIZE, MAX_THUMB_SIZE = 8, 64


Text = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
Index = Annotated[int, Field(strict=True, ge=0)]
Head = Annotated[
    tuple[Index, Index],
    Field(description="[layer, head], 0-indexed; layer < num_layers and head < num_heads of /api/model"),
]
HeadList = Annotated[list[Head], Field(max_length=MAX_HEAD_LIST)]
HeadPair = Annotated[list[int], Field(min_length=2, max_length=2, description="[layer, head]")]


class RequestBody(BaseModel):
    """Unknown fields are an error, so a misspelt option is reported instead of silently ignored."""

    model_config = ConfigDict(extra="forbid")


class AttentionRequest(RequestBody):
    text: Text = Field(min_length=1, description="The input; at most max_tokens tokens once encoded.")
    text_pair: Text | None = Field(default=None, description="Optional second segment.")
    ablate: HeadList = Field(default_factory=list, description="Heads to disable.")
    mode: AblationMode = Field(default="zero", description="How disabled heads are disabled.")
    heads: HeadList | None = Field(default=None, description="Heads to send; null = every head.")
    format: Literal["json", "f16", "thumb"] = Field(
        default="json",
        description="json: rounded values; f16: base64 little-endian float16, row-major n x n; thumb: each map "
        "average-pooled (torch adaptive_avg_pool2d) to min(n, size) x min(n, size), base64 float16 with `shape`.",
    )
    size: int = Field(default=32, ge=MIN_THUMB_SIZE, le=MAX_THUMB_SIZE,
                      description="Side of a thumbnail (format thumb); maps shorter than this are sent whole.")
    measure: Literal["weights", "norm", "rollout"] = Field(
        default="weights",
        description="weights: softmax weights (rows sum to 1); norm: weight x ||W_O block . value|| (Kobayashi "
                    "et al. 2020; rows do not sum to 1); rollout: per layer (Abnar & Zuidema 2020), answered in "
                    "`layers`, with `heads` null in the request. Definitions in docs/api.md.",
    )
    level: Literal["token", "word"] = Field(
        default="token",
        description="token: the model's tokens; word: special tokens and spaCy's words (attention summed to a "
                    "word's pieces, averaged from them; Clark et al. 2019). Word k of /api/parse is the k-th "
                    "non-special entry of tokens.",
    )


class Prediction(BaseModel):
    label: str
    probs: list[float] = Field(description="Class probabilities in the order of /api/model's labels.")


class HeadAttention(BaseModel):
    layer: int
    head: int
    values: list[list[float]] | None = Field(default=None, description="n x n, rows = queries (format json).")
    data: str | None = Field(default=None, description="base64 float16 n x n (format f16) or rows x cols (thumb).")
    shape: list[int] | None = Field(default=None, description="[rows, cols] of a thumbnail (format thumb).")
    disabled: bool | None = Field(
        default=None, description="measure norm: true for a head disabled in zero or mean mode (all 0).")


class LayerAttention(BaseModel):
    layer: int
    values: list[list[float]] | None = Field(default=None, description="n x n rollout R_layer (format json).")
    data: str | None = Field(default=None, description="base64 float16 n x n (format f16) or rows x cols (thumb).")
    shape: list[int] | None = Field(default=None, description="[rows, cols] of a thumbnail (format thumb).")


class AttentionResponse(BaseModel):
    tokens: list[str]
    segments: list[int]
    prediction: Prediction
    heads: list[HeadAttention] = Field(description="Per-head maps; [] for measure rollout.")
    layers: list[LayerAttention] | None = Field(default=None, description="measure rollout: one map per layer.")
    measure: Literal["weights", "norm", "rollout"] = Field(description="The measure of these numbers.")
    mode: AblationMode = Field(description="The ablation mode that produced these numbers.")
    ablate: list[HeadPair] = Field(description="The disabled heads, sorted, without repeats.")
    level: Literal["token", "word"] = Field(description="Whether tokens are the model's tokens or words.")


class ParseRequest(RequestBody):
    text: Text = Field(min_length=1, description="The input; at most max_tokens tokens once encoded.")
    text_pair: Text | None = Field(default=None, description="Optional second segment, parsed on its own.")


class ParseResponse(BaseModel):
    words: list[str] = Field(description="spaCy's tokens without whitespace tokens; text_pair's follow text's.")
    heads: list[int] = Field(description="Index into words of each word's syntactic head; i itself for a root.")
    relations: list[str] = Field(description="Each word's dependency relation (spaCy's dep_, lower case).")
    parser: str = Field(description="The spaCy pipeline and version that parsed.")


class EvaluateRequest(RequestBody):
    ablate: HeadList = Field(default_factory=list, description="Heads to disable.")
    mode: AblationMode = Field(default="zero", description="How disabled heads are disabled.")
    split: str | None = Field(default=None, max_length=64, description="train, dev or test; null = dev.")
    limit: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=None, description="The first N examples of the split; null = all of it."
    )


class EvaluateResponse(EvaluationResult):
    """The engine's evaluation record (headscope.engine.records.StoredEvaluation, its one list of fields)
    and what the request resolved to."""

    split: str = Field(description="The split scored (dev when the request said null).")
    ablate: list[HeadPair] = Field(description="The disabled heads, sorted, without repeats.")


class ExampleItem(BaseModel):
    id: int
    text: str
    text_pair: str | None
    label: str
    predicted: str = Field(description="The unablated model's prediction.")


class ExamplesResponse(BaseModel):
    total: int
    items: list[ExampleItem]


class TaskInfo(BaseModel):
    name: str
    metric: str
    splits: dict[str, int]


class Limits(BaseModel):
    max_tokens: int
    max_text_chars: int
    max_body_bytes: int
    max_examples_page: int
    max_representations: int = Field(description="Most examples one /api/representations request projects.")
    concurrency: int
    queue_size: int


class ModelResponse(BaseModel):
    name: str
    architecture: str
    num_layers: int
    num_heads: int
    head_dim: int
    max_tokens: int
    device: str
    dtype: str
    labels: list[str]
    fingerprint: str
    task: TaskInfo
    ablation_modes: dict[str, str] = Field(description="Every ablation mode the server accepts, in order, with "
                                                       "its one-line definition.")
    limits: Limits


class HealthResponse(BaseModel):
    status: Literal["ok"]
    model: str
    device: str
    running: int = Field(description="Model calls running now.")
    waiting: int = Field(description="Model calls waiting for a slot.")
    concurrency: int
    queue_size: int


# -- jobs (docs/api.md, "Jobs") -------------------------------------------------------------------------
JobKindName = Literal[tuple(KINDS)]  # type: ignore[valid-type]  # the one list of kinds is the runner's


class JobRequest(RequestBody):
    """A job: kind, mode, split, limit, and each kind's own parameters (`GET /api/jobs/kinds` says which
    kind takes which; a parameter a kind does not take is ignored)."""

    kind: JobKindName = Field(description="The analysis to run (docs/api.md, \"Jobs\").")
    mode: AblationMode = Field(default="zero",
                               description="How disabled heads are disabled (kinds with a mode; syntax with ablate).")
    split: str | None = Field(default=None, max_length=64, description="train, dev or test; null = dev.")
    limit: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=None, description="The first N examples of the split; null = all of it.")
    max_heads: Annotated[int, Field(strict=True, ge=1)] | None = Field(
        default=None, description="greedy: most heads to disable (default 5, at most every head).")
    word_level: bool = Field(default=False, description="stats: merge wordpieces into spaCy's words (Clark et al.).")
    measure: Literal["weights", "norm"] = Field(
        default="weights", description="stats: the attention measure the statistics read (norm: Kobayashi et al. "
                                       "2020, each row divided by its sum first); other kinds read the weights.")
    ablate: HeadList = Field(default_factory=list, description="layers, syntax: heads disabled (by `mode`) while "
                                                               "the layer states or attention maps are computed.")
    heads: HeadList | None = Field(default=None, description="pairs: the heads to pair up; null = every head.")


class JobCreated(BaseModel):
    id: str
    kind: str
    state: str


class JobBody(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    progress: float = Field(ge=0, le=1)
    eta_s: float | None = Field(description="Estimated seconds left; null while unknown.")
    result: dict | None
    error: str | None
    params: dict = Field(description="The canonical parameters the job ran with.")
    stored: bool = Field(description="The result came from the store (computed earlier, maybe before a restart).")
    elapsed_s: float | None


class JobList(BaseModel):
    jobs: list[JobBody] = Field(description="Newest first; results left out (fetch each job for its result).")


class JobLookup(BaseModel):
    id: str = Field(description="The job id this request has (whether or not it ever ran).")
    params: dict = Field(description="The request's canonical parameters.")
    job: JobBody | None = Field(description="The job, result left out, if one is known; null otherwise.")


class JobParamInfo(BaseModel):
    name: str
    type: Literal["integer", "boolean", "choice", "heads"]
    default: int | bool | str | list | None
    description: str
    choices: list[str] = Field(description="The allowed values of a `choice` parameter.")


class JobKindInfo(BaseModel):
    kind: str
    title: str
    uses_mode: bool = Field(description="False: the kind reads the unablated model and ignores `mode`.")
    params: list[JobParamInfo] = Field(description="The extra request fields this kind takes.")


class JobCatalogue(BaseModel):
    kinds: list[JobKindInfo]
    pattern_types: list[str] = Field(description="The pattern types of the `patterns` result, in order.")
    statistics: list[str] = Field(description="The per-head statistics of the `stats` result, in order.")


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx (and the rare 500) answers with this: what was wrong and what is allowed."""

    detail: str
    errors: list[FieldError] | None = None


class RepresentationsRequest(RequestBody):
    layer: Index = Field(description="State l: 0 enters encoder layer 0, l >= 1 is encoder layer l-1's output "
                                     "(0..num_layers of /api/model).")
    split: str | None = Field(default=None, max_length=64, description="train, dev or test; null = dev.")
    limit: Annotated[int, Field(strict=True, ge=1, le=REPRESENTATIONS_CAP)] | None = Field(
        default=None, description=f"The first N examples of the split; null = all of it (a split of more than "
                                  f"{REPRESENTATIONS_CAP} examples needs a limit).")
    ablate: HeadList = Field(default_factory=list, description="Heads to disable.")
    mode: AblationMode = Field(default="zero", description="How disabled heads are disabled.")
    pooling: Literal["first", "mean"] = Field(
        default="first", description="first: the first token's state; mean: the mean over real tokens, special "
                                     "tokens included.")


class RepresentationPoint(BaseModel):
    id: int = Field(description="Example id in the split.")
    x: float = Field(description="Coordinate on the first principal component.")
    y: float = Field(description="Coordinate on the second principal component.")
    label: str = Field(description="Gold label.")
    predicted: str = Field(description="The model's prediction under the mask.")


class RepresentationsResponse(BaseModel):
    explained: list[float] = Field(description="Share of the total variance each component explains.")
    points: list[RepresentationPoint]
    layer: int
    pooling: Literal["first", "mean"]
    n: int
    split: str
    mode: AblationMode
    ablate: list[HeadPair] = Field(description="The disabled heads, sorted, without repeats.")
