"""The ablation modes, by name and definition: what "switch a head off" may mean (docs/api.md, "Ablation
modes"). Plain data, no torch, so `headscope --help` lists them at once; :mod:`headscope.engine.interventions`
implements them."""

from __future__ import annotations

from typing import Literal, get_args

AblationMode = Literal["zero", "uniform", "mean"]
# Each mode's one-line definition, in AblationMode's order: what /api/model's `ablation_modes` serves.
ABLATION_MODES: dict[str, str] = {
    "zero": "the head's output (its slice of the context vector) is set to 0 (Michel et al. 2019)",
    "uniform": "the head's attention weights are 1/L over the L real tokens, so its output is the mean "
               "of its value vectors (Kovaleva et al. 2019)",
    "mean": "the head's output at every position is its mean output over the reference split's real "
            "tokens, computed once on the unablated model",
}
if tuple(ABLATION_MODES) != get_args(AblationMode):
    raise ImportError("ABLATION_MODES must define exactly the modes of AblationMode, in its order")
