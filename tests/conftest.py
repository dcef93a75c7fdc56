"""Shared fixtures: small random-weight CLIP models built once per test session (see tiny_model.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `from tiny_model import ...`

from tiny_model import make_random_vit_b32, make_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """(model_spec, checkpoint): a tiny CLIP's config JSON path and weights path, for
    --model/--pretrained, CLIPDRAW_MODEL/CLIPDRAW_PRETRAINED, or the engine's model/pretrained."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def tiny_clip(tiny_model):
    """The tiny model loaded through the public loader (cached for the process)."""
    from clipdraw.models import load_clip

    return load_clip(*tiny_model, device="cpu")


@pytest.fixture
def stand_in_engine(tmp_path):
    """A local stand-in for `ssh gpu-box clipdraw engine`: a command (a script) that runs this
    checkout's engine, for the plugin's Engine command setting."""
    script = tmp_path / "remote-engine.sh"
    core = Path(__file__).resolve().parents[1] / "core"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{core}" exec "{sys.executable}" -m clipdraw engine\n')
    script.chmod(0o755)
    return script


@pytest.fixture(scope="session")
def vit_b32_random(tmp_path_factory):
    """(model name, checkpoint) of OpenAI's ViT-B/32 architecture with random fp16 weights (~300 MB)."""
    return make_random_vit_b32(tmp_path_factory.mktemp("vit-b-32"))


@pytest.fixture
def query_all():
    """`inkscape --query-all FILE` run directly: {id: (x, y, width, height)} in px."""
    def query(path):
        out = subprocess.run(["inkscape", "--query-all", str(path)], capture_output=True, text=True,
                             timeout=120).stdout
        return {f[0]: tuple(map(float, f[1:])) for f in (line.split(",") for line in out.splitlines()) if len(f) == 5}
    return query


# CI installs Inkscape and Xvfb (tests/run.sh), so there a skipped plugin or end-to-end test means
# a broken install, not a missing optional tool: count it as a failure.
_REQUIRED_IN_CI = ("inkscape", "inkex", "xvfb")
_skipped_in_ci = []


def _note_skip(report):
    if os.environ.get("CI") and report.skipped:
        reason = str(report.longrepr).lower()
        if any(word in reason for word in _REQUIRED_IN_CI):
            _skipped_in_ci.append(f"{report.nodeid}: {report.longrepr[-1] if isinstance(report.longrepr, tuple) else reason}")


def pytest_runtest_logreport(report):
    _note_skip(report)


def pytest_collectreport(report):
    _note_skip(report)


def pytest_sessionfinish(session, exitstatus):
    if _skipped_in_ci:
        print("\nCI: these tests need Inkscape and were skipped, which CI does not allow:")
        for line in _skipped_in_ci:
            print("  " + line)
        session.exitstatus = 1
