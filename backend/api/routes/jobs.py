"""Background atlas jobs (docs/api.md, "Jobs"): the kinds on offer, start one, find one, watch its progress,
fetch its result, cancel it.

The job manager is created in the app's lifespan and kept on ``app.state.jobs``; it runs jobs in its own
worker, outside the model gate (a job takes the engine's lock one chunk at a time, so interactive requests
still get through). Finished results are stored and survive restarts.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from headscope.api.errors import ERROR_RESPONSES, error_response
from headscope.api.schemas import ErrorBody, JobBody, JobCatalogue, JobCreated, JobList, JobLookup, JobRequest
from headscope.engine.atlas import runner
from headscope.engine.atlas.jobs import JobManager
from headscope.engine.atlas.similarity import default_base_model
from headscope.engine.engine import Engine
from headscope.settings import Settings

router = APIRouter(prefix="/api", tags=["jobs"])

JobId = Annotated[str, Path(max_length=64, description="The id POST /api/jobs returned.")]


def create_job_manager(engine: Engine, settings: Settings) -> JobManager:
    """The job manager for the app's engine and configured base model (made in the app's lifespan)."""
    return JobManager(engine, base_model=default_base_model(settings.model, settings.base_model, settings.cache_dir))


def get_jobs(request: Request) -> JobManager:
    """The app's one job manager, made at start-up."""
    return request.app.state.jobs


JobsDep = Annotated[JobManager, Depends(get_jobs)]
JOB_RESPONSES: dict[int | str, dict] = {
    **ERROR_RESPONSES, 404: {"model": ErrorBody, "description": "No job with this id."},
}


def _unknown(job_id: str) -> JSONResponse:
    return error_response(404, f"no job with id {job_id!r}; POST /api/jobs starts one, GET /api/jobs lists them")


def _extra(body: JobRequest) -> dict:
    """The kind's own parameters from the request, plus any other one given a value, so that
    `normalise_params` can refuse it by name (the others are not part of the job's identity)."""
    own = runner.KINDS[body.kind].params
    return {name: getattr(body, name) for name, param in runner.PARAMS.items()
            if name in own or getattr(body, name) not in (None, param.default)}


@router.get("/jobs/kinds", response_model=JobCatalogue)
def job_kinds() -> JobCatalogue:
    """The job kinds on offer, whether a mode applies to each, the extra parameters each takes, and the names
    results use (pattern types, statistics)."""
    return JobCatalogue(**runner.catalogue())


@router.post("/jobs/lookup", response_model=JobLookup, responses=ERROR_RESPONSES)
def find_job(body: JobRequest, jobs: JobsDep) -> JobLookup:
    """The id and canonical parameters a request has, and its job if one is known (queued, running or finished,
    or stored earlier), without starting anything. Result left out: fetch the job for it."""
    params, job = jobs.lookup(body.kind, body.mode, body.split, body.limit, **_extra(body))
    return JobLookup(id=jobs.job_id(params), params=params,
                     job=JobBody(**job.to_dict(with_result=False)) if job is not None else None)


@router.post("/jobs", status_code=202, response_model=JobCreated, responses=ERROR_RESPONSES)
def start_job(body: JobRequest, jobs: JobsDep) -> JobCreated:
    """Queue an analysis (or find the same one running or finished: the id depends only on the request,
    the model and the task)."""
    job = jobs.submit(body.kind, body.mode, body.split, body.limit, **_extra(body))
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
