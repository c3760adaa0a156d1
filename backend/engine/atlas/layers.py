"""Layer by layer under a head mask: what the model's own head reads at each layer (the logit lens), what
a linear probe can decode there, and the geometry of a layer's states (docs/api.md, "Layers").

Layer numbering: state 0 enters encoder layer 0 (after any embedding projection); state l >= 1 is the
output of encoder layer l-1, so a model of L layers has states 0..L and state L is what its classifier
reads. Every state is computed under the mask: states at or below the first ablated layer are the
unablated model's, and come from the prepared split's kept layer inputs when they are there (the same
reuse as evaluation); the rest are recomputed with the intervention in place.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from headscope.engine import metrics
from headscope.engine.atlas.common import Cancelled, Progress, check_cancelled, never_cancelled, no_progress
from headscope.engine.engine import Engine
from headscope.engine.errors import InputError
from headscope.engine.evaluation import Batch, Runner, run_all, run_by_layer
from headscope.engine.interventions import AblationMode, Intervention, intervene
from headscope.engine.model import LoadedModel
from headscope.engine.significance import bootstrap_interval
from scipy.linalg import eigh
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

PROBE_FIT_EXAMPLES = 2000  # the probe is fit on the first this many examples of `train`, in stored order
PROBE_SEED = 0
REPRESENTATIONS_CAP = 5000  # most examples one representations request may project
POOLINGS = ("first", "mean")


def head_logits(model: LoadedModel, states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The model's own classification head reading states ``[batch, seq, hidden]`` as it reads the last
    layer's (dropout off: the model is in eval mode) -> logits ``[batch, labels]``.

    The one family-specific step of this module: which norm, pooling and pooler the head applies.
    """
    return model.classify(states, attention_mask)


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """``[batch, seq, hidden]`` -> ``[batch, hidden]``: the first token, or the mean over real tokens
    (special tokens included, padding left out)."""
    if pooling == "first":
        return states[:, 0]
    real = attention_mask.to(states.dtype)[:, :, None]
    return (states * real).sum(dim=1) / real.sum(dim=1).clamp(min=1)


def _first_ablated(disabled: torch.Tensor, num_layers: int) -> int:
    layers = disabled.any(dim=-1).nonzero().flatten().tolist()
    return int(layers[0]) if layers else num_layers


def batch_states(model: LoadedModel, batch: Batch, disabled: torch.Tensor, mode: AblationMode,
                 means: torch.Tensor | None, *, whole_last: bool,
                 run: Runner = run_all) -> tuple[list[torch.Tensor], torch.Tensor]:
    """States ``0..L`` of one batch under the mask ``disabled [layers, heads]``, each ``[batch, seq,
    hidden]``, and the padding mask the last is read with.

    States at or below the first ablated layer cannot change, so those the prepared split kept are reused
    and the forward restarts from the last of them. Unless `whole_last`, the last layer runs only as far
    as the model's head reads it (:meth:`LoadedModel.final_states`: the first token, ``[batch, 1,
    hidden]``, for most families), exactly as evaluation runs it. The layers run through `run`, a unit
    per layer (:func:`run_by_layer`: at BERT-large size a whole pass is seconds on a CPU).
    """
    first = _first_ablated(disabled, model.num_layers)
    states: list[torch.Tensor] = []
    while len(states) <= first and len(states) in batch.layer_inputs:
        states.append(batch.layer_inputs[len(states)].to(model.device, non_blocking=True))
    start = max(len(states) - 1, 0)  # none kept: from the embeddings, made in the first unit

    def keep(index: int, hidden: torch.Tensor) -> None:
        if index > start:
            states.append(hidden)

    mask = batch.attention_mask
    entering: list[torch.Tensor] = []  # the states entering the next unit's first layer
    last_mask = [mask]

    def segment(_: int, begin: int, stop: int) -> None:
        # fused attention, as the preparation and evaluation passes run it (states are read, weights are not)
        with torch.inference_mode(), intervene(Intervention(disabled=disabled[None].to(model.device), mode=mode,
                                                            means=means, fused=True)):
            if not states:
                states.append(model.embed(batch.input_ids, batch.token_type_ids))
            if begin == start:
                entering[:] = [states[start]]
            if stop < model.num_layers:
                entering[0] = model.run_layers(entering[0], mask, begin, stop, keep=keep)
            elif whole_last:
                states.append(model.run_layers(entering[0], mask, start=begin, keep=keep))
            else:
                last, last_mask[0] = model.final_states(entering[0], mask, begin, keep=keep)
                states.append(last)

    run_by_layer(run, [start], [batch.input_ids.numel()], model.num_layers, segment)
    return states, last_mask[0]


@dataclass(frozen=True)
class Readout:
    """Per-state readouts of a split's chosen examples under one mask, in stored order."""

    lens_logits: np.ndarray  # [layers + 1, n, labels] float32
    pooled: np.ndarray  # [layers + 1, n, hidden] float32: each state pooled as `pooling` says
    gold: np.ndarray  # [n]
    pooling: str

    @property
    def nbytes(self) -> int:
        return self.lens_logits.nbytes + self.pooled.nbytes + self.gold.nbytes


PREPARE_SHARE = 0.9  # of a readout's progress, for preparing the split when it runs that pass first


def readout(engine: Engine, split: str | None, limit: int | None, disabled: torch.Tensor, mode: AblationMode,
            pooling: str = "first", progress: Progress = no_progress,
            cancelled: Cancelled = never_cancelled) -> Readout:
    """Lens logits and pooled states at every state 0..L under the mask, kept by the engine beside its
    prepared splits (:meth:`Engine.kept_states`), so the Layers page's slider and a `layers` job under the
    same mask share one pass.

    One pass over the split: an unablated readout is the prepared split's baseline pass (its kept layer
    inputs are the states; preparing it, with progress, also serves later evaluations); under a mask the
    prepared split's kept inputs are reused when it is in memory, else the pass starts from the
    embeddings (no baseline pass first). One layer of one batch per lock hold (interactive requests
    interleave); cancellation is checked between them.
    """
    split = engine.task.split_name(split)
    masked = bool(disabled.any())
    heads = tuple(map(tuple, disabled.nonzero().tolist()))
    key = ("readout", split, len(engine.task.select(split, limit)), heads, mode if masked else None, pooling)

    def compute() -> Readout:
        share = 0.0
        if not masked and engine.ready(split, limit) is None:
            share = PREPARE_SHARE
            engine.prepared(split, limit, lambda s: progress(share * s), cancelled)
        return _readout(engine, engine.batches(split, limit), engine.task.select(split, limit), disabled, mode,
                        pooling, lambda s: progress(share + (1 - share) * s), cancelled)

    result = engine.kept_states(key, compute)
    progress(1.0)
    return result


def _readout(engine: Engine, batches: list[Batch], examples: list, disabled: torch.Tensor, mode: AblationMode,
             pooling: str, progress: Progress, cancelled: Cancelled) -> Readout:
    """One pass over `batches` under the mask: each state's lens logits and pooled vectors, in stored order."""
    model = engine.model
    means = engine.means_for(mode, disabled)
    n, layers = len(examples), model.num_layers
    lens = np.zeros((layers + 1, n, model.config.num_labels), dtype=np.float32)
    pooled = np.zeros((layers + 1, n, model.config.hidden_size), dtype=np.float32)
    done = 0
    for batch in batches:
        check_cancelled(cancelled)
        states, last_mask = batch_states(model, batch, disabled, mode, means, whole_last=pooling != "first",
                                         run=engine.chunked(cancelled=cancelled))

        @torch.inference_mode()
        def readouts(batch=batch, states=states, last_mask=last_mask) -> tuple[torch.Tensor, torch.Tensor]:
            masks = [batch.attention_mask] * layers + [last_mask]
            logits = torch.stack([head_logits(model, s, m) for s, m in zip(states, masks, strict=True)])
            vectors = torch.stack([pool(s, m, pooling) for s, m in zip(states, masks, strict=True)])
            return logits.float().cpu(), vectors.float().cpu()

        logits, vectors = engine.schedule(readouts)
        lens[:, batch.positions] = logits.numpy()
        pooled[:, batch.positions] = vectors.numpy()
        done += batch.size
        progress(done / max(n, 1))
    gold = np.array([e.label for e in examples], dtype=np.int64)
    return Readout(lens_logits=lens, pooled=pooled, gold=gold, pooling=pooling)


def make_probe() -> Pipeline:
    """The contract's probe: standardised features, then L2 logistic regression (C=1), seeded."""
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=PROBE_SEED))


def probe_predictions(fit_x: np.ndarray, fit_y: np.ndarray, score_x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Fit the probe and predict; returns (predictions, converged). A fit set of one class predicts that
    class (logistic regression needs two)."""
    classes = np.unique(fit_y)
    if len(classes) < 2:
        return np.full(len(score_x), classes[0] if len(classes) else 0, dtype=np.int64), True
    probe = make_probe()
    # one BLAS thread: lbfgs's steps are matrix-vector products of ~2,000 x hidden, too small to share, and
    # threads that spin waiting for each other cost 15x the time on a loaded 2-core CPU (66 s against 4.7 s
    # wall for the default model's 7 probes, the same predictions)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported as `probe_converged` instead
        probe.fit(fit_x.astype(np.float64), fit_y)
        predicted = probe.predict(score_x.astype(np.float64))
    converged = bool(np.all(probe[-1].n_iter_ < probe[-1].max_iter))
    return predicted, converged


def metric_interval(engine: Engine, gold: np.ndarray, predicted: np.ndarray) -> list[float]:
    """Paired-bootstrap 95 % interval of the task metric of `predicted` over resampled examples
    (the significance module's resampler, seeded)."""
    metric, num_labels = engine.task.metric, len(engine.model.labels)
    size = metrics.label_count(num_labels, gold, predicted)

    def statistic(indices: np.ndarray) -> np.ndarray:
        return metrics.from_confusion(metric, metrics.confusion(gold[indices], predicted[indices], size), num_labels)

    return bootstrap_interval(statistic, len(gold))


def layer_readouts(engine: Engine, ablate, mode: str = "zero", split: str | None = None, limit: int | None = None,
                   progress: Progress = no_progress, cancelled: Cancelled = never_cancelled) -> dict:
    """The `layers` job: lens and probe metric at every state 0..L under the mask (docs/api.md, "Layers")."""
    mode = engine.check_mode(mode)
    disabled = engine.disabled_tensor(ablate)
    split = engine.task.split_name(split)
    n = len(engine.task.select(split, limit))
    has_train = "train" in engine.task.sizes()
    if not has_train and n < 2:
        raise InputError(f"the probe needs at least 2 examples when the task has no train split "
                         f"(it is fit on the first half of them); limit gives {n}")
    fit_share = PROBE_FIT_EXAMPLES / (PROBE_FIT_EXAMPLES + n) if has_train else 0.0
    states_share = 0.9  # the rest is the probes' fitting

    chosen = readout(engine, split, limit, disabled, mode, "first",
                     lambda s: progress(states_share * (1 - fit_share) * s), cancelled)
    if has_train:
        fit = readout(engine, "train", PROBE_FIT_EXAMPLES, disabled, mode, "first",
                      lambda s: progress(states_share * ((1 - fit_share) + fit_share * s)), cancelled)
        fit_x, fit_y = fit.pooled, fit.gold
        score_x, score_y = chosen.pooled, chosen.gold
    else:
        half = n // 2
        fit_x, fit_y = chosen.pooled[:, :half], chosen.gold[:half]
        score_x, score_y = chosen.pooled[:, half:], chosen.gold[half:]

    layers = []
    count = engine.model.num_layers + 1
    for layer in range(count):
        check_cancelled(cancelled)
        predicted, converged = probe_predictions(fit_x[layer], fit_y, score_x[layer])
        lens = chosen.lens_logits[layer].argmax(axis=-1)
        layers.append({
            "layer": layer,
            "lens": engine.score(lens, chosen.gold),
            "probe": engine.score(predicted, score_y),
            "lens_ci95": metric_interval(engine, chosen.gold, lens),
            "probe_ci95": metric_interval(engine, score_y, predicted),
            "probe_converged": converged,
        })
        progress(states_share + (1 - states_share) * (layer + 1) / count)
    return {
        "n": n, "metric": engine.task.metric, "n_probe_fit": len(fit_y),
        "n_probe_score": len(score_y), "probe_split": "train" if has_train else split,
        "split": split, "mode": mode if bool(disabled.any()) else None, "ablate": disabled.nonzero().tolist(),
        "layers": layers,
    }


def principal_components(x: np.ndarray, k: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first `k` principal components of rows `x` (centred, not scaled).

    Returns (coordinates ``[n, k]``, explained variance shares ``[k]``, components ``[k, features]``);
    each component's sign makes its largest-magnitude loading positive. Components that explain no
    variance (fewer distinct rows than `k`) are zeros.

    The top `k` eigenvectors of the ``[features, features]`` scatter matrix, not a full SVD of the
    ``[n, features]`` rows: the same components, without decomposing what is thrown away (5,000 x 768
    rows: a full SVD takes seconds of CPU, this a fraction of one).
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0, keepdims=True)
    features = x.shape[1]
    total = float(np.einsum("ij,ij->", centred, centred))
    components = np.zeros((k, features))
    explained = np.zeros(k)
    if total > 0:
        top = min(k, features)
        values, vectors = eigh(centred.T @ centred, subset_by_index=[features - top, features - 1])
        for index, (value, vector) in enumerate(zip(values[::-1], vectors.T[::-1], strict=True)):
            if value > total * 1e-12:  # a direction with variance, not rounding noise
                components[index] = vector if vector[np.argmax(np.abs(vector))] > 0 else -vector
                explained[index] = value / total
    return centred @ components.T, explained, components


def check_representations_request(engine: Engine, layer: int, split: str | None, limit: int | None,
                                  pooling: str) -> int:
    """Validate a representations request without touching the model; returns the example count."""
    last = engine.model.num_layers
    if not 0 <= layer <= last:
        raise InputError(f"unknown layer {layer}: states are 0 (entering layer 0) to {last} (the last layer's output)")
    if pooling not in POOLINGS:
        raise InputError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")
    size = len(engine.task.split(split))
    if limit is None and size > REPRESENTATIONS_CAP:
        raise InputError(f"split {split or 'dev'!r} has {size} examples; representations take at most "
                         f"{REPRESENTATIONS_CAP}: give a limit of at most {REPRESENTATIONS_CAP}")
    if limit is not None and limit > REPRESENTATIONS_CAP:
        raise InputError(f"limit {limit} is over the cap: representations take at most {REPRESENTATIONS_CAP} examples")
    return len(engine.task.select(split, limit))


def representations(engine: Engine, layer: int, split: str | None = None, limit: int | None = None,
                    ablate=(), mode: str = "zero", pooling: str = "first") -> dict:
    """The first two principal components of state `layer`'s pooled vectors under the mask, with each
    example's gold label and its prediction under the mask (docs/api.md, "Layers")."""
    n = check_representations_request(engine, layer, split, limit, pooling)
    mode = engine.check_mode(mode)
    disabled = engine.disabled_tensor(ablate)
    read = readout(engine, split, limit, disabled, mode, pooling)
    pooled = read.pooled[layer]
    if disabled.any():
        predictions = read.lens_logits[-1].argmax(axis=-1)
    else:  # the readout prepared the split: its baseline is the prediction, as everywhere else
        predictions = engine.prepared(split, limit).baseline_predictions
    examples = engine.task.select(split, limit)
    coordinates, explained, _ = principal_components(pooled)
    labels = engine.model.labels
    return {
        "explained": [float(v) for v in explained],
        "points": [
            {"id": example.id, "x": float(x), "y": float(y), "label": labels[int(gold)],
             "predicted": labels[int(predicted)]}
            for example, (x, y), gold, predicted in zip(examples, coordinates, read.gold, predictions, strict=True)
        ],
        "layer": layer, "pooling": pooling, "n": n, "split": engine.task.split_name(split), "mode": mode,
        "ablate": disabled.nonzero().tolist(),
    }
