"""Classification tasks: named splits of labelled examples, plus the metric that scores them.

A task is what `/api/evaluate` scores a mask on. Sources: the built-in snippet tasks
(``headscope.engine.default_model``), local ``.csv``/``.tsv``/``.jsonl`` files, and GLUE through the
``datasets`` library when a network is there.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from headscope.engine.errors import TaskError
from headscope.engine.metrics import METRICS

GLUE_TASKS: dict[str, tuple[str, str | None, str]] = {
    # name: (text column, pair column, metric)
    "sst2": ("sentence", None, "accuracy"),
    "cola": ("sentence", None, "mcc"),
    "mrpc": ("sentence1", "sentence2", "f1"),
    "qqp": ("question1", "question2", "f1"),
    "rte": ("sentence1", "sentence2", "accuracy"),
    "qnli": ("question", "sentence", "accuracy"),
    "mnli": ("premise", "hypothesis", "accuracy"),
    "wnli": ("sentence1", "sentence2", "accuracy"),
}
SPLIT_NAMES = ("train", "dev", "test")
DEFAULT_SPLIT = "dev"  # docs/api.md: `split: null` means dev


@dataclass(frozen=True)
class Example:
    """One labelled input. ``id`` is its 0-based position in its split's stored order."""

    id: int
    text: str
    text_pair: str | None
    label: int


@dataclass
class Task:
    """A named classification task with label names, a metric and splits of examples."""

    name: str
    labels: list[str]
    metric: str
    splits: dict[str, list[Example]]
    content_hash: str = field(default="")

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise TaskError(f"unknown metric {self.metric!r}; allowed: {', '.join(METRICS)}")
        if not self.splits:
            raise TaskError(f"task {self.name!r} has no examples")
        if not self.content_hash:
            self.content_hash = _hash_content(self)

    @property
    def reference_split(self) -> str:
        """The split whose statistics feed `mean` ablation: `train` when the task has one."""
        return "train" if "train" in self.splits else DEFAULT_SPLIT

    def split_name(self, name: str | None) -> str:
        """The split a request names, `None` meaning dev (the one place that default is applied); an
        unknown name is a TaskError listing the task's splits."""
        key = DEFAULT_SPLIT if name is None else name
        if key not in self.splits:
            raise TaskError(f"unknown split {key!r}; this task has: {', '.join(self.splits)}")
        return key

    def split(self, name: str | None) -> list[Example]:
        """The examples of a split (`None` means dev)."""
        return self.splits[self.split_name(name)]

    def select(self, split: str | None, limit: int | None) -> list[Example]:
        """The first `limit` examples of a split (all when `limit` is None or larger)."""
        examples = self.split(split)
        if limit is not None:
            if limit < 1:
                raise TaskError(f"limit must be at least 1, got {limit}")
            examples = examples[:limit]
        return examples

    def sizes(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.splits.items()}


def _hash_content(task: Task) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([task.name, task.labels, task.metric]).encode())
    for name in sorted(task.splits):
        for ex in task.splits[name]:
            digest.update(json.dumps([name, ex.text, ex.text_pair, ex.label]).encode())
    return digest.hexdigest()[:16]


def _label_id(raw: object, labels: list[str], where: str) -> int:
    """Map a file's label (a name from id2label or an integer id) to a label id."""
    if isinstance(raw, bool):
        raise TaskError(f"{where}: label {raw!r} is neither a label name nor an id")
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip()
        lowered = [name.lower() for name in labels]
        if text.lower() in lowered:
            return lowered.index(text.lower())
        try:
            value = int(text)
        except ValueError:
            raise TaskError(
                f"{where}: label {text!r} is not one of the model's labels {labels} nor an integer id"
            ) from None
    if not 0 <= value < len(labels):
        raise TaskError(f"{where}: label id {value} is out of range 0..{len(labels) - 1}")
    return value


def _read_rows(path: Path) -> list[dict]:
    suffix = path.suffix.lower()
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read task file {path}: {exc}") from None
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{path.name} line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise TaskError(f"{path.name} line {number}: expected a JSON object")
            rows.append(row)
        return rows
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(raw.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        return list(reader)
    raise TaskError(f"task file {path.name} must end in .csv, .tsv or .jsonl")


def load_task_file(path: str | Path, labels: list[str], metric: str = "accuracy") -> Task:
    """A task from a file with columns `text`, optional `text_pair`, and `label`; rows form `dev`."""
    path = Path(path)
    if not path.is_file():
        raise TaskError(f"task file {path} does not exist")
    rows = _read_rows(path)
    if not rows:
        raise TaskError(f"task file {path.name} has no rows")
    missing = {"text", "label"} - set(rows[0])
    if missing:
        raise TaskError(f"task file {path.name} lacks column(s) {sorted(missing)}; needs text, label")
    examples = []
    for index, row in enumerate(rows):
        where = f"{path.name} row {index + 1}"
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            raise TaskError(f"{where}: empty or missing text")
        pair = row.get("text_pair") or None
        if pair is not None and not isinstance(pair, str):
            raise TaskError(f"{where}: text_pair must be a string")
        if row.get("label") in (None, ""):
            raise TaskError(f"{where}: missing label")
        examples.append(Example(index, text, pair, _label_id(row["label"], labels, where)))
    return Task(name=path.stem, labels=list(labels), metric=metric, splits={"dev": examples})


def load_glue_task(name: str, labels: list[str]) -> Task:
    """A GLUE task through `datasets` (needs a network or a local datasets cache)."""
    short = name.removeprefix("glue/")
    if short not in GLUE_TASKS:
        raise TaskError(f"unknown GLUE task {name!r}; supported: {', '.join(GLUE_TASKS)}")
    text_col, pair_col, metric = GLUE_TASKS[short]
    try:
        import datasets  # optional dependency: `pip install headscope[glue]`
    except ImportError:
        raise TaskError("GLUE tasks need the `datasets` package: pip install 'headscope[glue]'") from None
    try:
        data = datasets.load_dataset("nyu-mll/glue", short)
    except Exception as exc:  # network errors come in many types
        raise TaskError(f"cannot load GLUE task {short!r} (is a network there?): {exc}") from None
    names = {"train": "train", "validation": "dev", "validation_matched": "dev"}
    splits: dict[str, list[Example]] = {}
    for source, target in names.items():
        if source in data and target not in splits:
            splits[target] = [
                Example(i, row[text_col], row[pair_col] if pair_col else None, int(row["label"]))
                for i, row in enumerate(data[source])
            ]
    features = data["train"].features["label"]
    task_labels = list(getattr(features, "names", labels))
    return Task(name=f"glue/{short}", labels=task_labels, metric=metric, splits=splits)
