"""The built wheel installs one top-level package, `headscope` (never a generic `app` or `backend`), with
its dashboard assets, the `headscope` command and complete metadata."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_holds_only_the_headscope_package(tmp_path: Path) -> None:
    # an isolated build, as a user's pip does it (the venv's own setuptools may predate SPDX licences)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("headscope-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(archive.read(info).decode())
        entry_points = archive.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    top = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top == {"headscope"}
    for module in ("headscope/__init__.py", "headscope/session.py", "headscope/figures.py",
                   "headscope/engine/adapters.py", "headscope/app/dashboard.py", "headscope/static/headscope.js"):
        assert module in names, module
    assert not any(n.startswith(("headscope/tests", "tests/", "bench/", "docs/")) for n in names)
    assert metadata["Name"] == "headscope" and metadata["Summary"]
    assert metadata["License-Expression"] == "Apache-2.0"
    assert any(c.startswith("Framework :: Jupyter") for c in metadata.get_all("Classifier"))
    assert "headscope = headscope.cli:app" in entry_points
