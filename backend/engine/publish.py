"""Making something in a cache directory exactly once, and never half: the one atomic-publish helper.

The data files, the pre-trained MiniLM and the fine-tuned default model are all built the same way: under
a file lock (another process waits, then finds the finished result), in a staging directory beside the
target, moved into place with one ``os.replace``. A crash leaves only a staging directory, removed by
the next run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock


def publish_once(target: Path, finished: Callable[[Path], bool], build: Callable[[Path], None]) -> Path:
    """`target` once `finished(target)` holds; otherwise `build(staging)` fills a fresh directory that then
    becomes `target` (an unfinished earlier `target` is replaced). Returns `target`."""
    target = Path(target)
    if finished(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / f".{target.name}.lock"):
        if finished(target):
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):  # an interrupted earlier run's
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the final directory's mode
        try:
            build(staging)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
