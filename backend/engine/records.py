"""The shapes of stored results. A row read back from the store is parsed through these models; one that
does not parse (an older layout, a hand-edited or truncated row) is a miss and is recomputed, never
served and never a server error."""

from __future__ import annotations

from typing import Literal

from headscope.engine.interventions import AblationMode
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def parse_or_none(cls, value: object) -> Record | None:
        """The parsed row, or None when it does not fit this shape."""
        try:
            return cls.model_validate(value)
        except ValidationError:
            return None


class Significance(Record):
    """How sure a delta is (docs/api.md, "Significance on every score")."""

    test: Literal["mcnemar-exact", "paired-permutation"] = Field(
        description="mcnemar-exact for accuracy; paired-permutation for f1 and mcc.")
    p_value: float = Field(ge=0, le=1, description="Two-sided, unadjusted.")
    right_to_wrong: int = Field(ge=0, description="Examples right under the baseline and wrong under the mask.")
    wrong_to_right: int = Field(ge=0, description="Examples wrong under the baseline and right under the mask.")
    ci95: tuple[float, float] = Field(description="Paired-bootstrap 95 % interval of delta (2.5th, 97.5th percentile).")
    resamples: int = Field(ge=1, description="Bootstrap resamples behind ci95.")


class StoredEvaluation(Record):
    """One mask's evaluation as the store keeps it: the one list of the evaluation record's fields, which
    the engine's answer (:class:`headscope.engine.engine.EvaluationResult`) and the API's
    (``EvaluateResponse``) extend (docs/api.md, "POST /api/evaluate")."""

    metric: str = Field(description="The task's metric: accuracy, f1 or mcc.")
    mode: AblationMode = Field(description="The ablation mode that produced these numbers.")
    n: int = Field(ge=0, description="Examples scored: the first `limit` of the split, or all of it.")
    score: float = Field(description="The metric with the mask's heads disabled.")
    baseline: float = Field(description="The metric of the unablated model on the same examples.")
    delta: float = Field(description="score - baseline.")
    flipped: list[int] = Field(description="Ids of the examples whose prediction differs from the baseline's.")
    significance: Significance = Field(description="How sure delta is: the paired test, its p-value and a "
                                                   "seeded paired-bootstrap 95 % interval (docs/api.md).")
