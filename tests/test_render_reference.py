"""Fidelity of the native rasterizer against the diffvg reference data (tests/data/diffvg, a copy of ../shared/reference/diffvg).

For every reference scene: the image is within 0.003 mean absolute error of the supersampled
truth and no worse than diffvg's own render; the autograd directional derivatives agree with the
finite differences of the truth (cosine per parameter class >= 0.95 on every scene, and for
geometry, averaged over the scenes, at least diffvg's average).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clipdraw.render import render
from clipdraw.scene import Scene

REFERENCE = Path(__file__).resolve().parent / "data" / "diffvg"
SCENES = ["closed_filled8", "filled_and_stroked6", "open_strokes64", "wide_strokes16"]
CLASSES = {"translate": "geometry", "point": "geometry", "stroke_width": "width",
           "stroke": "colour", "fill": "colour"}

def _cosine(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))


def _scene(name: str) -> Scene:
    return Scene.load(REFERENCE / f"{name}.scene.json")


def _directional(scene: Scene, direction: dict) -> float:
    """The derivative of the loss along one fd.json direction, from the .grad fields."""
    shape = scene.shapes[direction["shape"]]
    param = direction["param"]
    if param == "translate":
        v = torch.tensor(direction["vector"], dtype=torch.float32)
        return float(sum((sp.points.grad * v).sum() for sp in shape.subpaths))
    if param == "point":
        v = torch.tensor(direction["vector"], dtype=torch.float32)
        return float((shape.subpaths[direction["subpath"]].points.grad[direction["index"]] * v).sum())
    if param == "stroke_width":
        return float(shape.stroke_width.grad)
    return float(getattr(shape, param).grad[direction["channel"]])


def _derivatives(name: str):
    """Per class: (ours, fd, diffvg) columns over the rows of NAME.fd.json."""
    scene = _scene(name)
    for shape in scene.shapes:
        for sp in shape.subpaths:
            sp.points.requires_grad_(True)
        shape.stroke_width.requires_grad_(True)
        for colour in (shape.stroke, shape.fill):
            if colour is not None:
                colour.requires_grad_(True)
    fd = json.loads((REFERENCE / f"{name}.fd.json").read_text())
    weights = torch.from_numpy(np.load(REFERENCE / fd["weights"]))
    image = render(scene)  # over white, as the reference loss
    loss = (image * weights).mean()
    loss.backward()
    assert abs(float(loss.detach()) - fd["loss_value"]) < 1e-3
    cols = {}
    for row in fd["rows"]:
        cls = CLASSES[row["direction"]["param"]]
        ours, ref, dv = cols.setdefault(cls, ([], [], []))
        ours.append(_directional(scene, row["direction"]))
        ref.append(row["fd"])
        dv.append(row["diffvg"])
    return cols


@pytest.mark.parametrize("name", SCENES)
def test_image_matches_truth(name):
    truth = np.load(REFERENCE / f"{name}.truth.npy")
    diffvg = np.load(REFERENCE / f"{name}.diffvg.npy")
    with torch.no_grad():
        image = render(_scene(name)).numpy()
    assert image.shape == truth.shape and image.dtype == np.float32
    ours = float(np.abs(image - truth).mean())
    theirs = float(np.abs(diffvg - truth).mean())
    assert ours <= 0.003, f"{name}: mean |image - truth| = {ours:.5f} > 0.003"
    assert ours <= theirs, f"{name}: mean |image - truth| = {ours:.5f} worse than diffvg's {theirs:.5f}"


@pytest.mark.parametrize("name", SCENES)
def test_derivatives_match_finite_differences(name):
    for cls, (ours, fd, _) in _derivatives(name).items():
        cos = _cosine(ours, fd)
        assert cos >= 0.95, f"{name}: {cls} derivatives: cosine with fd {cos:.4f} < 0.95"


def test_geometry_derivatives_at_least_as_good_as_diffvg():
    ours, theirs = [], []
    for name in SCENES:
        o, fd, dv = _derivatives(name)["geometry"]
        ours.append(_cosine(o, fd))
        theirs.append(_cosine(dv, fd))
    assert np.mean(ours) >= np.mean(theirs), (
        f"geometry cosine averaged over scenes {np.mean(ours):.4f} < diffvg's {np.mean(theirs):.4f}")


def fidelity_table() -> str:
    """README's fidelity table: per scene, mean |image - truth| and the cosine of each parameter
    class's derivatives with finite differences, ours / diffvg's."""
    lines = ["| scene | mean abs | geometry | width | colour |", "|---|---|---|---|---|"]
    for name in SCENES:
        truth = np.load(REFERENCE / f"{name}.truth.npy")
        diffvg = np.load(REFERENCE / f"{name}.diffvg.npy")
        with torch.no_grad():
            image = render(_scene(name)).numpy()
        cells = [f"{np.abs(image - truth).mean():.5f} / {np.abs(diffvg - truth).mean():.5f}"]
        cols = _derivatives(name)
        for cls in ("geometry", "width", "colour"):
            if cls in cols:
                ours, fd, dv = cols[cls]
                cells.append(f"{_cosine(ours, fd):.4f} / {_cosine(dv, fd):.4f}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":  # python tests/test_render_reference.py: print the table
    print(fidelity_table())
