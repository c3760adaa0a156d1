"""The built-in sentiment tasks: Hutto & Gilbert's (ICWSM 2014) crowd-rated sentences, in seeded splits.

`rt-snippets` (Rotten Tomatoes sentences of Pang & Lee, rated by Hutto & Gilbert's raters; *not* SST-2,
and its labels are not SST's) has train/dev/test; `tweets`, `nyt-editorials` and `amazon-reviews` have
dev and test only, for cross-domain checks. The files are downloaded on first use
(:func:`headscope.engine.downloads.fetch_snippet_data`).
"""

from __future__ import annotations

import random
from pathlib import Path

from headscope.engine.downloads import fetch_snippet_data
from headscope.engine.errors import TaskError
from headscope.engine.tasks import Example, Task

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


def ground_truth_path(name: str, cache_dir: Path) -> Path:
    """Where the built-in task's file is (downloaded on first use)."""
    if name not in SNIPPET_FILES:
        raise TaskError(f"unknown built-in task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
    return fetch_snippet_data(cache_dir) / SNIPPET_FILES[name]


def load_builtin_task(name: str, cache_dir: Path) -> Task:
    """A built-in task (see the module docstring), downloading its data on first use."""
    path = ground_truth_path(name, cache_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"cannot read {path}: {exc}") from None
    rows = parse_ground_truth(text, source=path.name)
    splits = split_rows(rows, with_train=name == "rt-snippets")
    return Task(name=name, labels=list(LABELS), metric="accuracy", splits=splits)
