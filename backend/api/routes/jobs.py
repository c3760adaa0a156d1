"""Background atlas jobs (docs/api.md, "Jobs"): start one, watch its progress, fetch its result, cancel it.

The job manager is created in the app's lifespan and kept on ``app.state.jobs``; it runs jobs in its own worker
thread, outside the model gate (a job takes the engine's lock one chunk at a time, so interactive
requests still get through). Finished results are stored and survive restarts.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from headscope.api.errors import ERROR_RESPONSES, error_response
from headscope.api.schemas import ErrorBody, HeadList, RequestBody
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.similarity import default_base_model
from headscope.engine.engine import Engine
from headscope.engine.interventions import AblationMode
from headscope.settings import Settings
from pydantic import BaseModel, Field

router = APIRouter(prefix="/api", tags=["jobs"])
_create_lock = threading.Lock()

JobKind = Literal["single-head", "layer", "importance", "pruning", "stats", "patterns", "greedy", "similarity",
                  "layers", "syntax"]
JobId = Annotated[str, Path(max_length=64, description="The id POST /api/jobs returned.")]


def create_job_manager(engine: Engine, settings: Settings) -> JobManager:
    """The job manager for the app's engine and configured base model (made in the app's lifespan)."""
    return JobManager(engine, base_model=default_base_model(settings.model, settings.base_model, settings.cache_dir))


def get_jobs(request: Request) -> JobManager:
    """The app's one job manager (made on first use if the lifespan did not run, as in some tests)."""
    state = request.app.state
    with _create_lock:
        if getattr(state, "jobs", None) is None:
            state.jobs = create_job_manager(state.engine, state.settings)
    return state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]
JOB_RESPONSES: dict[int | str, dict] = {
    **ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "No job with this id."},
}


class JobRequest(RequestBody):
    kind: JobKind = Field(description="The analysis to run (docs/api.md, \"Jobs\").")
    mode: AblationMode = Field(default="zero",
                               description="How disabled heads are disabled (sweeps, pruning, syntax with ablate).")
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


def _unknown(job_id: str) -> JSONResponse:
    return error_response(404, f"no job with id {job_id!r}; POST /api/jobs starts one, GET /api/jobs lists them")


@router.post("/jobs", status_code=202, response_model=JobCreated, responses=ERROR_RESPONSES)
def start_job(body: JobRequest, jobs: JobsDep) -> JobCreated:
    """Queue an analysis (or find the same one running or finished: the id depends only on the request,
    the model and the task)."""
    extra = {"max_heads": body.max_heads} if body.kind == "greedy" else {}
    if body.kind == "stats":
        extra.update(word_level=body.word_level, measure=body.measure)
    elif body.measure != "weights":
        extra["measure"] = body.measure  # refused by normalise_params with a message naming the rule
    if body.ablate:
        extra["ablate"] = body.ablate
    job = jobs.submit(body.kind, body.mode, body.split, body.limit, **extra)
    return JobCreated(id=job.id, kind=job.kind, state=job.state)


@router.get("/jobs", response_model=JobList, responses=ERROR_RESPONSES)
def list_jobs(jobs: JobsDep) -> JobList:
    """Jobs of this server and finished ones stored for this model and task."""
    return JobList(jobs=[JobBody(**job.to_dict(with_result=False)) for job in jobs.list()])


@router.get("/jobs/{job_id}", response_model=JobBody, responses=JOB_RESPONSES)
def get_job(job_id: JobId, jobs: JobsDep) -> JobBody | JSONResponse:
    """State, progress (0..1), time left and, once done, the result."""
    job = jobs.get(job_id)
    return _unknown(job_id) if job is None else JobBody(**job.to_dict())


@router.delete("/jobs/{job_id}", response_model=JobBody, responses=JOB_RESPONSES)
def cancel_job(job_id: JobId, jobs: JobsDep) -> JobBody | JSONResponse:
    """Cancel a queued or running job; a finished job is left as it is."""
    job = jobs.cancel(job_id)
    return _unknown(job_id) if job is None else JobBody(**job.to_dict())
