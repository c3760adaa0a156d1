"""The embedded default model: MiniLM-L6 fine-tuned on the built-in `rt-snippets` task, built once.

Its inputs come from PyPI (:mod:`headscope.engine.downloads`), its data from the built-in task
(:mod:`headscope.engine.builtin_tasks`); this module only fine-tunes, scores and publishes it
(:func:`headscope.engine.publish.publish_once`), with its provenance in `headscope.json`.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from headscope.engine.builtin_tasks import LABELS, ground_truth_path, load_builtin_task
from headscope.engine.downloads import MINILM_SHA256, VADER_SHA256, fetch_minilm, sha256_of
from headscope.engine.errors import PrepareError
from headscope.engine.publish import publish_once
from headscope.engine.tasks import Example

DEFAULT_MODEL_NAME = "minilm-rt-snippets"
METADATA_FILE = "headscope.json"
MAX_TOKENS = 128
BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
LEARNING_RATE = 1e-4
WARMUP_FRACTION = 0.1


def default_model_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "models" / DEFAULT_MODEL_NAME


def load_metadata(model_dir: Path) -> dict:
    """The `headscope.json` written by `prepare_default_model` (scores, provenance, timing)."""
    return json.loads((Path(model_dir) / METADATA_FILE).read_text(encoding="utf-8"))


def _batches(examples: list[Example], size: int) -> Iterator[list[Example]]:
    for start in range(0, len(examples), size):
        yield examples[start : start + size]


def _encode(tokenizer, batch: list[Example]):
    """One batch as training and evaluation both see it: truncated to MAX_TOKENS, padded to the longest."""
    return tokenizer([ex.text for ex in batch], truncation=True, max_length=MAX_TOKENS, padding="longest",
                     return_tensors="pt")


def _accuracy(model, tokenizer, examples: list[Example], desc: str, progress: bool) -> float:
    import torch
    from tqdm.auto import tqdm

    model.eval()
    correct = 0
    with torch.inference_mode():
        for batch in tqdm(list(_batches(examples, EVAL_BATCH_SIZE)), desc=desc, disable=not progress):
            enc = _encode(tokenizer, batch)
            predicted = model(**enc).logits.argmax(dim=-1)
            correct += int((predicted == torch.tensor([ex.label for ex in batch])).sum())
    return correct / len(examples)


def _train(
    cache_dir: Path,
    staging: Path,
    max_steps: int | None,
    seed: int,
    epochs: int,
    learning_rate: float,
    progress: bool,
) -> dict:
    """Fine-tune MiniLM on rt-snippets `train`, score dev/test, save into `staging`; return metadata."""
    import torch
    import transformers
    from tqdm.auto import tqdm
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    started = time.monotonic()
    task = load_builtin_task("rt-snippets", cache_dir)
    base = fetch_minilm(cache_dir)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForSequenceClassification.from_pretrained(
        base,
        num_labels=2,
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
        attn_implementation="eager",
    )
    train = task.splits["train"]
    steps_per_epoch = math.ceil(len(train) / BATCH_SIZE)
    total_steps = steps_per_epoch * epochs
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
    if total_steps < 1:
        raise PrepareError(f"max_steps must be at least 1, got {max_steps}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(WARMUP_FRACTION * total_steps), total_steps)
    shuffler = random.Random(seed)

    def batches() -> Iterator[list[Example]]:
        while True:  # one fresh seeded permutation per epoch
            order = list(train)
            shuffler.shuffle(order)
            yield from _batches(order, BATCH_SIZE)

    model.train()
    bar = tqdm(total=total_steps, desc="fine-tuning", unit="step", disable=not progress)
    for _step, batch in zip(range(total_steps), batches(), strict=False):
        enc = _encode(tokenizer, batch)
        loss = model(**enc, labels=torch.tensor([ex.label for ex in batch])).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        bar.update(1)
    bar.close()
    train_seconds = time.monotonic() - started

    dev_accuracy = _accuracy(model, tokenizer, task.splits["dev"], "evaluating dev", progress)
    test_accuracy = _accuracy(model, tokenizer, task.splits["test"], "evaluating test", progress)

    model.config.finetuning_task = "rt-snippets"
    model.save_pretrained(staging)  # transformers >= 5 writes safetensors only
    tokenizer.save_pretrained(staging)
    if not (staging / "model.safetensors").is_file() or any(staging.glob("*.bin")):
        raise PrepareError("saving the model did not produce a single model.safetensors")
    for path in staging.iterdir():  # the weights file is written 0600; the cache may be shared
        path.chmod(0o644)
    return {
        "name": DEFAULT_MODEL_NAME,
        "task": "rt-snippets",
        "data_source": "Hutto & Gilbert, VADER (ICWSM 2014): Rotten Tomatoes sentences rated by a crowd",
        "dev_accuracy": dev_accuracy,
        "test_accuracy": test_accuracy,
        "splits": task.sizes(),
        "train_size": len(train),
        "steps": total_steps,
        "epochs": epochs,
        "max_steps": max_steps,
        "batch_size": BATCH_SIZE,
        "learning_rate": learning_rate,
        "warmup_fraction": WARMUP_FRACTION,
        "max_tokens": MAX_TOKENS,
        "seed": seed,
        "data_sha256": sha256_of(ground_truth_path("rt-snippets", cache_dir)),
        "data_package_sha256": VADER_SHA256,
        "task_content_hash": task.content_hash,
        "minilm_wheel_sha256": MINILM_SHA256,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
        "train_seconds": round(train_seconds, 1),
        "elapsed_seconds": round(time.monotonic() - started, 1),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def prepare_default_model(
    cache_dir: Path,
    max_steps: int | None = None,
    seed: int = 13,
    progress: bool = True,
    *,
    epochs: int = 1,
    learning_rate: float = LEARNING_RATE,
) -> Path:
    """Build the embedded default model once, and return its directory.

    A model counts as finished only when its `headscope.json` is there; it is trained in a staging
    directory and published in one rename under a file lock, so an interrupted run never leaves a
    half-written model and a second process waits, then finds the finished one. A directory there
    without `headscope.json` is not ours to replace: it is an error.
    """
    target = default_model_dir(cache_dir)
    if target.exists() and not (target / METADATA_FILE).is_file():
        raise PrepareError(
            f"{target} exists but is not a finished default model (no {METADATA_FILE}); "
            "remove it and run `headscope prepare` again"
        )

    def build(staging: Path) -> None:
        metadata = _train(Path(cache_dir), staging, max_steps, seed, epochs, learning_rate, progress)
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")

    return publish_once(target, lambda directory: (directory / METADATA_FILE).is_file(), build)
