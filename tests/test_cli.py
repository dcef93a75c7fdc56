"""The `clipdraw` command as a user runs it: real subprocesses, tiny models through --model/--pretrained."""
import json
import os
import time
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from clipdraw.scene import Scene
from clipdraw.svg import scene_to_svg, svg_to_scene

SVG_NS = "{http://www.w3.org/2000/svg}"


def clipdraw(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "clipdraw", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def model_args(tiny_model):
    return ["--model", tiny_model[0], "--pretrained", tiny_model[1]]


def test_draw_writes_svg_png_scene_and_frames(tiny_model, tmp_path):
    out = tmp_path / "cat.svg"
    r = clipdraw("draw", "a drawing of a cat", "-o", out, "--png", tmp_path / "cat.png",
                 "--scene", tmp_path / "cat.json", "--paths", 5, "--iters", 3, "--size", 64,
                 "--frames", tmp_path / "frames", "--frame-every", 2, "--max-width", 8,
                 "--negative", "a blurry photo", "--negative", "text", "--show-labels", 2,
                 *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    assert "3/3" in r.stderr and "loss=" in r.stderr  # the progress bar
    assert re.search(r"iteration 2: .+ \d+\.\d%", r.stderr)  # CLIP's top nouns every 2 iterations
    number = r"(-?\d\.\d{3})"
    m = re.search(rf"CLIP similarity to 'a drawing of a cat': {number} -> {number}; "
                  rf"to 'a blurry photo' \(negative\): {number} -> {number}; to 'text' \(negative\)", r.stderr)
    assert m, r.stderr
    assert "warning" not in r.stderr
    root = ET.parse(out).getroot()
    assert root.get("viewBox") == "0 0 64 64"
    paths = root.findall(f"{SVG_NS}path")
    assert len(paths) == 5
    assert all("stroke-linecap:round" in p.get("style") and "stroke-linejoin:round" in p.get("style")
               for p in paths)
    scene = Scene.load(tmp_path / "cat.json")
    # CLIPDraw's 2 px floor, for a 224 canvas, scaled to this 64 px one
    assert len(scene.shapes) == 5 and all(2 * 64 / 224 - 1e-6 <= float(s.stroke_width) <= 8 for s in scene.shapes)
    from PIL import Image

    assert Image.open(tmp_path / "cat.png").size == (64, 64)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_0001.png", "frame_0002.png"]


def test_draw_refines_an_svg_and_keeps_its_ids(tiny_model, tmp_path):
    sketch = tmp_path / "sketch.svg"
    sketch.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        '<path id="ear" d="M 10 10 L 30 30" style="stroke:#000;stroke-width:3;fill:none"/>'
        '<g transform="translate(5 5)"><circle id="eye" cx="40" cy="20" r="5" fill="#00f"/></g></svg>')
    out = tmp_path / "out.json"
    r = clipdraw("draw", "a cat", "-o", tmp_path / "out.svg", "--scene", out, "--init", sketch,
                 "--iters", 2, "--fidelity", 2, "--lock", "colors", *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    scene = Scene.load(out)
    assert [s.id for s in scene.shapes] == ["ear", "eye"]  # no new strokes by default with --init
    assert scene.shapes[1].fill.tolist() == [0.0, 0.0, 1.0, 1.0]  # locked colour
    assert abs(float(scene.shapes[1].subpaths[0].points[:, 0].mean()) - 45) < 3  # transform applied


def test_init_svg_reads_opacity_visibility_display_caps_and_dashes(tiny_model, tmp_path):
    """--init reads a document as the plugin does: opacity of the shape and its groups in alpha,
    hidden shapes left out, caps, joins and dashes kept (scaled with the stroke); and the SVG
    written back says the same."""
    sketch = tmp_path / "sketch.svg"
    sketch.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
        '<g opacity="0.5"><path id="faded" d="M 10 10 L 30 30" style="stroke:#f00;opacity:0.8;fill:none"/></g>'
        '<path id="invisible" d="M 1 1 L 9 9" style="stroke:#000;visibility:hidden"/>'
        '<g style="display:none"><path id="undisplayed" d="M 1 1 L 9 9" style="stroke:#000"/></g>'
        '<g style="visibility:hidden"><path id="shown" d="M 1 9 L 9 1" style="stroke:#00f;visibility:visible"/></g>'
        '<g transform="scale(2)"><path id="dashed" d="M 5 20 L 25 20 L 25 28" style="fill:none;stroke:rgba(0,128,0,0.5);'
        'stroke-width:2;stroke-linecap:square;stroke-linejoin:bevel;stroke-dasharray:3 1 2;stroke-dashoffset:1"/></g>'
        '<path id="mitred" d="M 40 40 L 50 50 L 60 40" style="fill:none;stroke:#000;stroke-miterlimit:8"/></svg>')
    out = tmp_path / "out.json"
    r = clipdraw("draw", "a cat", "-o", tmp_path / "out.svg", "--scene", out, "--init", sketch,
                 "--iters", 1, "--lock", "points", "--lock", "widths", "--lock", "colors", *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    for scene in (Scene.load(out), svg_to_scene(tmp_path / "out.svg")):  # the SVG written reads back the same
        shapes = {s.id: s for s in scene.shapes}
        assert list(shapes) == ["faded", "shown", "dashed", "mitred"]
        assert float(shapes["faded"].stroke[3]) == pytest.approx(0.4, abs=1e-3)
        dashed = shapes["dashed"]
        assert float(dashed.stroke[3]) == pytest.approx(0.5, abs=3e-3) and float(dashed.stroke_width) == 4
        assert (dashed.stroke_linecap, dashed.stroke_linejoin) == ("square", "bevel")
        assert dashed.stroke_dasharray == pytest.approx([6, 2, 4, 6, 2, 4]) and dashed.stroke_dashoffset == 2
        mitred = shapes["mitred"]  # SVG's defaults: butt caps, miter joins
        assert (mitred.stroke_linecap, mitred.stroke_linejoin, mitred.stroke_miterlimit) == ("butt", "miter", 8)


def test_a_prompt_longer_than_the_context_is_a_warning(tiny_model, tmp_path):
    r = clipdraw("draw", "a drawing of a cat " + "with a very long tail " * 15, "-o", tmp_path / "a.svg",
                 "--paths", 2, "--iters", 1, "--size", 32, *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    assert re.search(r"clipdraw draw: warning: the prompt 'a drawing of a cat with a ve\.\.\..*' is too long "
                     r"for clipdraw-tiny: its last 5 tokens are dropped", r.stderr), r.stderr


def test_env_vars_choose_the_model_and_image_prompts_work(tiny_model, tmp_path):
    from PIL import Image

    Image.new("RGB", (32, 32), (0, 200, 0)).save(tmp_path / "green.png")
    r = clipdraw("draw", "", "--image-prompt", tmp_path / "green.png", "-o", tmp_path / "a.svg",
                 "--paths", 2, "--iters", 1, "--size", 32,
                 env={"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    assert "clipdraw-tiny" in r.stderr
    assert re.search(r"CLIP similarity to the image prompt: -?\d\.\d{3} -> ", r.stderr), r.stderr


@pytest.mark.parametrize("args, message", [
    (["draw", "a cat", "-o", "x.png"], "must end in .svg"),
    (["draw", "", "-o", "x.svg"], "give a prompt"),
    (["draw", "a cat", "-o", "x.svg", "--iters", "0"], "must be at least 1"),
    (["draw", "a cat", "-o", "x.svg", "--paths", "-3"], "at least 0"),
    (["draw", "a cat", "-o", "x.svg", "--fidelity", "-1"], "at least 0"),
    (["draw", "a cat", "-o", "x.svg", "--max-width", "0.5"], "at least 1"),
    (["draw", "a cat", "-o", "x.svg", "--lock", "shapes"], "invalid choice"),
    (["draw", "a cat", "-o", "x.svg", "--size", "31"], "--size must be from 32 to 16384, got 31"),
    (["draw", "a cat", "-o", "x.svg", "--size", "16385"], "--size must be from 32 to 16384"),
    (["draw", "a cat", "-o", "x.svg", "--seed", "-1"], "--seed must be from 0 to"),
    (["draw", "a cat", "-o", "x.svg", "--seed", str(2**64)], "--seed must be from 0 to"),
    (["draw", "a cat", "-o", "x.svg", "--show-labels", "-2"], "--show-labels must be at least 0"),
    (["trace", "x.png", "-o", "x.svg", "--seed", "-1"], "--seed must be from 0 to"),
    (["draw", "a cat", "-o", "x.svg", "--init", "missing.json"], "no such file"),
    (["draw", "a cat", "-o", "x.svg", "--device", "tpu"], "invalid choice"),
    (["draw", "a cat", "-o", "no/such/dir/x.svg"], "folder does not exist"),
    (["score", "missing.png", "--labels", "cat"], "cannot read image"),
    (["trace", "missing.png", "-o", "x.svg"], "cannot read image"),
    (["draw", "a cat", "-o", "x.svg", "--precision", "fp8"], "invalid choice"),
    (["score", "x.png", "--threads", "0"], "must be at least 1"),
])
def test_bad_arguments_exit_2_with_one_clear_line(args, message, tmp_path, monkeypatch, capsys):
    from clipdraw.cli import main

    monkeypatch.chdir(tmp_path)  # in-process: the same main() the console script runs
    try:
        code = main(args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT is how Ctrl+C reaches a POSIX process")
def test_ctrl_c_writes_the_drawing_so_far(tiny_model, tmp_path):
    import signal
    import time

    frames = tmp_path / "frames"
    proc = subprocess.Popen([sys.executable, "-m", "clipdraw", "draw", "a cat", "-o", str(tmp_path / "cat.svg"),
                             "--scene", str(tmp_path / "cat.json"), "--paths", "4", "--size", "64",
                             "--iters", "100000", "--frames", str(frames), "--frame-every", "1",
                             *model_args(tiny_model)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not (frames / "frame_0002.png").exists():  # the loop is running
            assert proc.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    m = re.search(r"interrupted: wrote the result after (\d+) of 100000 iterations to .*cat.svg", err)
    assert m and 2 <= int(m.group(1)) < 100000, err
    assert "Traceback" not in err
    assert len(ET.parse(tmp_path / "cat.svg").getroot().findall(f"{SVG_NS}path")) == 4
    assert len(Scene.load(tmp_path / "cat.json").shapes) == 4


def test_precision_and_threads_options_and_environment(tiny_model, tmp_path):
    picture = tmp_path / "dot.png"
    from PIL import Image

    Image.new("RGB", (32, 32), "white").save(picture)
    runs = {p: clipdraw("score", picture, "--labels", "cat, dog", "--precision", p, "--threads", 1,
                        *model_args(tiny_model)) for p in ("fp32", "bf16")}
    for precision, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        assert runs[precision].returncode == 0, runs[precision].stderr
        assert f"image tower in {dtype} (clipdraw's image tower), 1 thread\n" in runs[precision].stderr
    probabilities = [[float(line.split(": ")[1][:-1]) for line in r.stdout.splitlines()] for r in runs.values()]
    assert probabilities[0] == pytest.approx(probabilities[1], abs=0.5)  # percent
    r = clipdraw("score", picture, "--labels", "cat", *model_args(tiny_model), env={"CLIPDRAW_THREADS": "1"})
    assert r.returncode == 0 and ", 1 thread\n" in r.stderr
    r = clipdraw("score", picture, "--labels", "cat", *model_args(tiny_model), env={"CLIPDRAW_THREADS": "many"})
    assert r.returncode == 2 and "CLIPDRAW_THREADS" in r.stderr and "Traceback" not in r.stderr


def test_unreadable_weights_exit_2(tiny_model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not a checkpoint")
    r = clipdraw("draw", "a cat", "-o", tmp_path / "x.svg", "--model", tiny_model[0], "--pretrained", junk)
    assert r.returncode == 2 and "junk.pt" in r.stderr and "Traceback" not in r.stderr


def test_score_prints_a_sorted_table(tiny_model, tmp_path):
    scene = Scene.from_dict({"format": "clipdraw-scene", "version": 1, "width": 48, "height": 48,
                             "shapes": [{"subpaths": [{"points": [[5, 5], [20, 40], [30, 40], [44, 5]]}],
                                         "stroke": [0, 0, 0, 1], "stroke_width": 4, "fill": None}]})
    drawing = tmp_path / "d.svg"
    drawing.write_text(scene_to_svg(scene))
    labels = tmp_path / "labels.txt"
    labels.write_text("stitch\nbird\n")
    r = clipdraw("score", drawing, "--labels", "cat, dog", "--labels-file", labels, "--top", 3,
                 *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    rows = [re.fullmatch(r"(.+): (\d+\.\d\d)%", line) for line in r.stdout.strip().splitlines()]
    assert len(rows) == 3 and all(rows)
    values = [float(m.group(2)) for m in rows]
    assert values == sorted(values, reverse=True)
    assert {m.group(1) for m in rows} <= {"cat", "dog", "stitch", "bird"}
    # a PNG, and the shipped nouns when no labels are given
    from PIL import Image

    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "red.png")
    r = clipdraw("score", tmp_path / "red.png", *model_args(tiny_model))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 5


def test_trace_brings_the_error_down(tmp_path):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (48, 48), "white")
    d = ImageDraw.Draw(im)
    d.ellipse([8, 8, 26, 26], fill=(230, 30, 30))
    d.line([6, 38, 42, 38], fill=(20, 20, 200), width=5)
    im.save(tmp_path / "in.png")
    r = clipdraw("trace", tmp_path / "in.png", "-o", tmp_path / "t.svg", "--size", 48, "--paths", 8,
                 "--fills", 4, "--iters", 50, "--png", tmp_path / "t.png")
    assert r.returncode == 0, r.stderr
    m = re.search(r"([\d.]+) at the start, ([\d.]+) at the end", r.stderr)
    start, end = float(m.group(1)), float(m.group(2))
    assert end < 0.3 * start, (start, end)
    assert len(ET.parse(tmp_path / "t.svg").getroot().findall(f"{SVG_NS}path")) == 12


def test_svg_round_trip_through_svgelements():
    d = {"format": "clipdraw-scene", "version": 1, "width": 100, "height": 80, "background": [1, 1, 1, 1],
         "shapes": [
             {"id": "s", "subpaths": [{"points": [[1, 2], [10, 20], [30, 5], [50.5, 60.25]], "closed": False}],
              "stroke": [1, 0, 0, 0.5], "stroke_width": 3.5, "fill": None},
             {"id": "f", "subpaths": [{"points": [[10, 10], [20, 10], [20, 20], [10, 20], [5, 15], [10, 12]],
                                       "closed": True}],
              "stroke": None, "stroke_width": 0, "fill": [0, 0.4, 1, 1], "fill_rule": "evenodd"}]}
    import io

    back = svg_to_scene(io.StringIO(scene_to_svg(Scene.from_dict(d)))).to_dict()
    assert (back["width"], back["height"], back["background"]) == (100, 80, [1, 1, 1, 1])
    assert [s["id"] for s in back["shapes"]] == ["s", "f"]
    for a, b in zip(d["shapes"], back["shapes"]):
        assert a["subpaths"][0]["closed"] == b["subpaths"][0]["closed"]
        assert torch.allclose(torch.tensor(a["subpaths"][0]["points"], dtype=torch.float32),
                              torch.tensor(b["subpaths"][0]["points"]), atol=1e-3)
        for key in ("stroke", "fill"):
            assert (a[key] is None) == (b[key] is None)
            if a[key] is not None:
                assert torch.allclose(torch.tensor(a[key], dtype=torch.float32), torch.tensor(b[key]), atol=1 / 255)
    assert back["shapes"][0]["stroke_width"] == 3.5 and back["shapes"][1]["fill_rule"] == "evenodd"


def test_svg_lines_quadratics_and_arcs_become_cubics():
    import io

    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="50" height="50">'
           '<path d="M 0 0 L 10 0 Q 20 0 20 10 A 5 5 0 0 1 30 10" stroke="black" fill="none"/>'
           '<rect x="5" y="5" width="10" height="10" fill="red"/></svg>')
    scene = svg_to_scene(io.StringIO(svg))
    line = scene.shapes[0].subpaths[0]
    assert not line.closed and (line.points.shape[0] - 1) % 3 == 0 and line.points.shape[0] >= 10
    assert line.points[0].tolist() == [0, 0] and line.points[-1].tolist() == [30, 10]
    assert line.points[1].tolist() == pytest.approx([10 / 3, 0])  # a line is a straight cubic
    rect = scene.shapes[1].subpaths[0]
    assert rect.closed and rect.points.shape[0] == 12
    assert scene.background is None  # a small rect is a shape, not the background


@pytest.mark.slow
def test_draw_with_the_full_vit_b32_architecture(vit_b32_random, tmp_path):
    """OpenAI's ViT-B/32 layout with random weights, through the command line like a user."""
    name, checkpoint = vit_b32_random
    r = clipdraw("draw", "a drawing of a cat", "-o", tmp_path / "b32.svg", "--scene", tmp_path / "b32.json",
                 "--paths", 16, "--iters", 3, "--model", name, "--pretrained", checkpoint)
    assert r.returncode == 0, r.stderr
    assert "ViT-B-32-quickgelu" in r.stderr and "3/3" in r.stderr
    assert len(json.loads((tmp_path / "b32.json").read_text())["shapes"]) == 16


def test_draw_preview_shows_the_drawing_in_the_desktop_viewer_and_frames_still_work(tiny_model, tmp_path):
    """A stand-in `xdg-open` on PATH records what the desktop was asked to show."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    opened = tmp_path / "opened.txt"
    (bin_dir / "xdg-open").write_text(f'#!/bin/sh\necho "$1" > "{opened}"\n')
    (bin_dir / "xdg-open").chmod(0o755)
    preview = tmp_path / "watch.png"
    r = clipdraw("draw", "a cat", "-o", tmp_path / "cat.svg", "--paths", 4, "--iters", 3, "--size", 64,
                 "--preview", preview, "--frames", tmp_path / "frames", "--frame-every", 1,
                 *model_args(tiny_model),
                 env={"DISPLAY": ":99", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    from PIL import Image

    assert Image.open(preview).size == (64, 64) and not (tmp_path / "watch.png.part").exists()
    deadline = time.time() + 30
    while not opened.exists() and time.time() < deadline:  # the viewer is started, not waited for
        time.sleep(0.1)
    assert opened.read_text().strip() == str(preview)
    assert len(list((tmp_path / "frames").iterdir())) == 3
    r = clipdraw("draw", "a cat", "-o", tmp_path / "cat.svg", "--preview", tmp_path / "watch.jpg",
                 *model_args(tiny_model))
    assert r.returncode == 2 and "--preview" in r.stderr
