"""The shapes of stored results. A row read back from the store is parsed through these models; one that
does not parse (an older layout, a hand-edited or truncated row) is a miss and is recomputed, never
served and never a server error."""

from __future__ import annotations

from typing import Literal

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
    """One mask's evaluation as the store keeps it (everything of the answer but timing and `cached`)."""

    metric: str
    mode: str
    n: int = Field(ge=0)
    score: float
    baseline: float
    delta: float
    flipped: list[int]
    significance: Significance
