"""The job kinds: :data:`KINDS`, the one list of them (name, title, whether an ablation mode applies, which
extra parameters each takes; the parameters themselves are described in ``runner.PARAMS``). Plain data, no
torch, so `headscope --help` lists them at once; :mod:`headscope.engine.atlas.runner` runs them and
`GET /api/jobs/kinds` serves them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobKind:
    title: str
    uses_mode: bool  # False: the kind reads the unablated model, and `mode` is ignored
    params: tuple[str, ...] = ()  # names in PARAMS


KINDS: dict[str, JobKind] = {
    "single-head": JobKind("Every head disabled alone: change of the metric (Kovaleva et al., Fig. 8)", True),
    "layer": JobKind("Every layer disabled: change of the metric", True),
    "importance": JobKind("Head importance E|dL/dξ| (Michel et al.), L2-normalised per layer", True),
    "pruning": JobKind("Iterative pruning by importance, 10 % of heads a step (Michel et al.)", True),
    "greedy": JobKind("Greedy search for heads whose removal raises the metric (chosen on dev, checked on test)",
                      True, ("max_heads",)),
    "stats": JobKind("Attention statistics per head (Clark et al.; Voita et al.)", False,
                     ("word_level", "measure")),
    "patterns": JobKind("Pattern types per head (Kovaleva et al.; rule-based classifier)", False),
    "similarity": JobKind("Cosine similarity of attention maps, fine-tuned vs pre-trained (Kovaleva et al.)", False),
    "layers": JobKind("Per layer: the model's own head reading it (logit lens) and a linear probe", True,
                      ("ablate",)),
    "syntax": JobKind("Syntax heads: each head predicting words' dependency heads (Clark et al.)", True,
                      ("ablate",)),
    "pairs": JobKind("Every pair of heads disabled together: delta and interaction beyond both heads alone", True,
                     ("heads",)),
    "means": JobKind("Per-head mean outputs over the reference split (train when the task has one), which mean mode "
                     "puts in place of a disabled head's output; computed once and stored", False),
}
MASKED_KINDS = tuple(name for name, kind in KINDS.items() if "ablate" in kind.params)  # run under a head mask
