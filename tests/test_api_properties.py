"""Property-based tests: requests generated from the app's own OpenAPI schema (valid and invalid) never
get a 5xx and every 4xx says what was wrong; attention under random masks is always a distribution."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from headscope.api.app import create_app
from headscope.engine.engine import Engine
from headscope.engine.interventions import ABLATION_MODES
from headscope.settings import Settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.helpers import WORDS

INTERNALS = ("Traceback", 'File "', "/work/", "site-packages")
EXAMPLES_PER_OPERATION = 30


@pytest.fixture
def app(word_engine: Engine, tmp_path: Path):
    """The tiny engine with spaCy already loaded, so a first word-level request is not a slow outlier."""
    return create_app(Settings(cache_dir=tmp_path), engine=word_engine)


def error_bodies_explain(ctx, response, case) -> None:
    """A 4xx is JSON with a sentence in `detail`; no answer of any kind shows the server's insides."""
    assert not any(marker in response.text for marker in INTERNALS), response.text[:500]
    if 400 <= response.status_code < 500:
        detail = response.json().get("detail")
        assert isinstance(detail, str) and len(detail) >= 10, f"unhelpful {response.status_code}: {response.text}"


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          error_bodies_explain]


@pytest.mark.parametrize("generation_mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_no_generated_request_is_a_server_error_and_every_4xx_explains(app, generation_mode) -> None:
    """Every operation of /openapi.json, with requests that fit the schema (positive) and that break it
    (negative). schemathesis' pytest loader for fixtures does not run on pytest 9, so each operation's
    strategy drives a hypothesis test here."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.label for op in operations} >= {"GET /api/health", "GET /api/model", "POST /api/attention",
                                                "POST /api/evaluate", "GET /api/examples"}
    statuses: dict[str, set[int]] = defaultdict(set)
    for operation in operations:
        if generation_mode is GenerationMode.NEGATIVE and not any(operation.iter_parameters()) \
                and not operation.get_request_payload_content_types():
            continue  # nothing to break in a request without parameters or body

        @given(case=operation.as_strategy(generation_mode=generation_mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def call_and_check(case) -> None:
            statuses[case.operation.label].add(case.call_and_validate(checks=CHECKS).status_code)

        call_and_check()
    if generation_mode is GenerationMode.POSITIVE:  # the generator reached the model, not just validation
        assert 200 in statuses["POST /api/attention"] and 200 in statuses["POST /api/evaluate"], statuses
    else:
        assert 422 in statuses["POST /api/attention"] and 422 in statuses["GET /api/examples"], statuses


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=20).map(" ".join)
heads = st.tuples(st.integers(0, 2), st.integers(0, 3))


@given(text=texts, pair=st.none() | texts, ablate=st.lists(heads, max_size=12),
       mode=st.sampled_from(tuple(ABLATION_MODES)))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_attention_is_a_distribution_under_any_mask(app, engine: Engine, text: str, pair: str | None,
                                                    ablate: list[tuple[int, int]], mode: str) -> None:
    with TestClient(app) as client:
        body = client.post("/api/attention", json={"text": text, "text_pair": pair, "ablate": ablate,
                                                   "mode": mode}).json()
    n = len(body["tokens"])
    assert len(body["segments"]) == n and set(body["segments"]) <= {0, 1}
    assert abs(sum(body["prediction"]["probs"]) - 1) < 1e-5
    direct = engine.attention(text, pair, ablate, mode)
    for head in body["heads"]:
        values = np.array(head["values"])
        assert values.shape == (n, n) and (values >= 0).all()
        np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=n * 5e-6)
        np.testing.assert_allclose(values, direct.weights[head["layer"], head["head"]], atol=5.1e-6)
        if mode == "uniform" and (head["layer"], head["head"]) in ablate:
            np.testing.assert_allclose(values, 1 / n, atol=5e-6)
