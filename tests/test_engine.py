"""`python -m clipdraw engine` as the Inkscape plugin runs it: a real subprocess, JSON in and out."""
import base64
import io
import json
import os
import subprocess
import sys
import threading

import pytest
import torch
from PIL import Image

from clipdraw.engine import PREVIEW_SIDE, RequestError, parse_request, png_base64
from clipdraw.scene import Scene

# A device this machine does not have (CUDA where there is none, else MPS, which Linux never has).
UNAVAILABLE_DEVICE = "mps" if torch.cuda.is_available() else "cuda"


def engine(request, env=None, timeout=600):
    text = request if isinstance(request, str) else json.dumps(request)
    r = subprocess.run([sys.executable, "-m", "clipdraw", "engine"], input=text, capture_output=True,
                       text=True, timeout=timeout, env={**os.environ, **(env or {})})
    events = [json.loads(line) for line in r.stderr.splitlines()]  # every stderr line is JSON
    return r, events


def canvas(shapes=()):
    return {"format": "clipdraw-scene", "version": 1, "width": 64, "height": 64,
            "background": [1, 1, 1, 1], "shapes": list(shapes)}


STROKE = {"id": "path12", "subpaths": [{"points": [[10, 10], [20, 30], [30, 30], [40, 10]], "closed": False}],
          "stroke": [0, 0, 0, 1], "stroke_width": 3, "fill": None}
BLOB = {"id": "path13", "subpaths": [{"points": [[40, 40], [50, 40], [50, 50], [40, 50], [35, 45], [40, 42]],
                                      "closed": True}],
        "stroke": None, "stroke_width": 0, "fill": [0.2, 0.6, 0.2, 1]}


def test_draw_request_gives_a_scene_and_progress(tiny_model):
    req = {"command": "draw", "scene": canvas([STROKE, BLOB]), "prompt": "a drawing of a cat",
           "negative": ["a blurry photo"], "paths": 3, "iters": 4, "time_limit": 60, "max_width": 10,
           "fidelity": 1.0, "lock": ["colors"], "seed": 0, "augmentations": 2,
           "model": tiny_model[0], "pretrained": tiny_model[1], "device": "cpu"}
    r, events = engine(req)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["format"] == "clipdraw-scene" and reply["width"] == 64
    assert [s["id"] for s in reply["shapes"]] == ["path12", "path13", None, None, None]
    assert reply["shapes"][0]["stroke"] == [0, 0, 0, 1]  # locked colours
    assert reply["shapes"][1]["fill"] == pytest.approx(BLOB["fill"], abs=1e-7)
    assert all(2 * 64 / 224 - 1e-6 <= s["stroke_width"] <= 10 for s in reply["shapes"][2:])  # 2 px at 224
    assert events[0]["event"] == "status"
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1]["iteration"] == 4 and progress[-1]["iterations"] == 4
    assert set(progress[-1]) == {"event", "iteration", "iterations", "loss", "elapsed", "time_limit"}
    assert progress[-1]["time_limit"] == 60
    sim = reply["similarity"]
    assert isinstance(sim["start"], float) and isinstance(sim["end"], float) and sim["start"] != sim["end"]
    assert [n["prompt"] for n in sim["negatives"]] == ["a blurry photo"]
    assert not [e for e in events if e["event"] == "warning"]  # the prompts fit the context


def test_a_prompt_longer_than_the_context_is_a_warning_event(tiny_model):
    long = "a drawing of a cat " + "with a very long tail " * 15  # 5 + 75 tokens; 77 hold 75 and start, end
    r, events = engine({"scene": canvas([STROKE]), "prompt": long, "negative": ["a dog"], "iters": 1,
                        "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    warnings = [e["message"] for e in events if e["event"] == "warning"]
    assert len(warnings) == 1 and "its last 5 tokens are dropped" in warnings[0], warnings


def test_environment_picks_the_model_and_defaults_fill_in(tiny_model):
    r, events = engine({"scene": canvas([STROKE]), "prompt": "a cat", "iters": 2},
                       env={"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    assert "clipdraw-tiny" in events[0]["message"]
    assert [s["id"] for s in json.loads(r.stdout)["shapes"]] == ["path12"]  # paths default 0 with shapes


def test_zero_iterations_give_the_scene_back_as_given(tiny_model):
    given = canvas([STROKE, BLOB])
    r, _ = engine({"scene": given, "prompt": "a cat", "iters": 0,
                   "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    similarity = reply.pop("similarity")
    assert reply == json.loads(json.dumps(Scene.from_dict(given).to_dict()))
    assert similarity["start"] == similarity["end"]  # the same drawing, judged on the same copies


def test_precision_and_threads_keys(tiny_model):
    for precision, dtype in (("bf16", "bfloat16"), ("fp32", "float32")):
        r, events = engine({"scene": canvas([STROKE]), "prompt": "a cat", "iters": 2, "precision": precision,
                            "threads": 1, "model": tiny_model[0], "pretrained": tiny_model[1]})
        assert r.returncode == 0, r.stderr
        assert f"image tower in {dtype} (clipdraw's image tower), 1 thread" in [e.get("message") for e in events]


def test_score_request(tiny_model):
    r, _ = engine({"command": "score", "scene": canvas([STROKE]), "labels": ["cat", "dog", "stitch"],
                   "top": 2, "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    labels = json.loads(r.stdout)["labels"]
    assert len(labels) == 2 and {l["label"] for l in labels} <= {"cat", "dog", "stitch"}
    assert 1 >= labels[0]["probability"] >= labels[1]["probability"] >= 0


@pytest.mark.parametrize("request_text, status, words", [
    ("{not json", 2, "not valid JSON"),
    (json.dumps({"scene": canvas(), "prompt": "  "}), 2, "prompt"),
    (json.dumps({"scene": {"format": "svg"}, "prompt": "a cat"}), 2, "scene: format"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "iters": "many"}), 2, "iters"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "lock": ["shapes"]}), 2, "lock"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "seed": 2**64}), 2, "seed: expected a whole number from 0 to"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "seed": -1}), 2, "seed: expected a whole number from 0 to"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "colour": 1}), 2, "unknown key 'colour'"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "preview": -1}), 2, "preview"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "pretrained": "/no/such/file.pt",
                 "model": "ViT-B-32-quickgelu"}), 2, "does not exist"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "device": UNAVAILABLE_DEVICE}), 2, "not available"),
    (json.dumps({"scene": canvas(), "prompt": "a cat", "precision": "fp8"}), 2, "precision"),
    (json.dumps({"command": "score", "scene": canvas(), "threads": 0}), 2, "threads"),
])
def test_failures_are_one_json_error_line(request_text, status, words):
    r, events = engine(request_text)
    assert r.returncode == status
    assert r.stdout == ""
    assert events[-1]["event"] == "error" and words.lower() in events[-1]["message"].lower()
    assert "Traceback" not in r.stderr


def test_unreadable_model_file_is_a_bad_request(tiny_model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"garbage")
    r, events = engine({"scene": canvas(), "prompt": "a cat", "model": tiny_model[0], "pretrained": str(junk)})
    assert r.returncode == 2 and "junk.pt" in events[-1]["message"] and r.stdout == ""


def test_parse_request_defaults_are_those_of_draw():
    req = parse_request({"scene": canvas(), "prompt": "a cat"})
    assert (req["iters"], req["max_width"], req["fidelity"], req["augmentations"], req["seed"]) == (1000, 100.0, 1.0, 4, 0)
    assert req["paths"] is None and req["time_limit"] is None and req["lock"] == [] and req["device"] == "auto"
    assert parse_request({"scene": canvas(), "prompt": "x", "time_limit": 0})["time_limit"] is None
    with pytest.raises(RequestError):
        parse_request({"scene": canvas(), "prompt": "x", "paths": 1.5})


def start_engine(request, env=None):
    """A live engine with stdin left open, as the plugin runs it: (process, events, finish), the
    stderr events collected by a thread as they come; finish(timeout) waits for the exit and
    returns the stdout text."""
    proc = subprocess.Popen([sys.executable, "-m", "clipdraw", "engine"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    proc.stdin.write(json.dumps(request) + "\n")
    proc.stdin.flush()
    events, out = [], []
    readers = [threading.Thread(target=lambda: events.extend(json.loads(l) for l in proc.stderr), daemon=True),
               threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()

    def finish(timeout):
        try:
            proc.wait(timeout=timeout)
            for reader in readers:
                reader.join(timeout=10)
        finally:
            proc.kill()
            proc.wait()
        return out[0] if out else ""

    return proc, events, finish


def wait_for(events, proc, test, timeout=120):
    import time

    deadline = time.time() + timeout
    while not any(test(e) for e in list(events)):
        assert proc.poll() is None, f"the engine ended early: {events[-1:]}"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_preview_frames_come_from_the_first_iteration_on(tiny_model):
    r, events = engine({"scene": canvas([STROKE, BLOB]), "prompt": "a cat", "iters": 5, "preview": 0,
                        "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    frames = [e for e in events if e["event"] == "progress" and "png" in e]
    assert [e["iteration"] for e in frames] == [1, 2, 3, 4, 5]  # preview 0: a picture every iteration
    picture = Image.open(io.BytesIO(base64.b64decode(frames[0]["png"])))
    assert picture.format == "PNG" and picture.size == (64, 64)  # the render CLIP sees: the canvas
    rgb = picture.convert("RGB")
    assert rgb.getpixel((10, 10)) != (255, 255, 255) and rgb.getpixel((0, 0)) == (255, 255, 255)  # stroke, paper


def test_preview_every_s_seconds_and_no_pictures_unasked(tiny_model):
    r, events = engine({"scene": canvas([STROKE]), "prompt": "a cat", "iters": 30, "preview": 3600,
                        "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert r.returncode == 0, r.stderr
    assert [e["iteration"] for e in events if "png" in e] == [1]  # the first soon, the next in an hour
    r, events = engine({"scene": canvas([STROKE]), "prompt": "a cat", "iters": 3,
                        "model": tiny_model[0], "pretrained": tiny_model[1]})
    assert not any("png" in e for e in events)


def test_preview_pictures_are_at_most_512_px():
    picture = Image.open(io.BytesIO(base64.b64decode(png_base64(torch.rand(600, 900, 3)))))
    assert picture.size == (PREVIEW_SIDE, round(600 * PREVIEW_SIDE / 900))


def test_stop_ends_the_run_with_the_current_result(tiny_model):
    proc, events, finish = start_engine({"scene": canvas([STROKE]), "prompt": "a cat", "paths": 3,
                                         "iters": 100000, "preview": 0.5,
                                         "model": tiny_model[0], "pretrained": tiny_model[1]})
    wait_for(events, proc, lambda e: e.get("iteration", 0) >= 3)
    proc.stdin.write('{"command": "stop"}\n')
    proc.stdin.flush()
    out = finish(timeout=60)  # stdin stays open: the stop alone ends it
    assert proc.returncode == 0
    reply = json.loads(out)
    assert [s["id"] for s in reply["shapes"]] == ["path12", None, None, None]
    assert reply["shapes"][0]["subpaths"] != STROKE["subpaths"]  # the drawing so far, not the one given
    progress = [e for e in events if e["event"] == "progress"]
    done = progress[-1]["iteration"]
    assert 3 <= done < 100000
    assert events[-1]["event"] == "status" and events[-1]["message"].startswith(f"stopped: {done} iterations")


def test_end_of_stdin_is_not_a_stop_and_unknown_commands_are_ignored(tiny_model):
    proc, events, finish = start_engine({"scene": canvas([STROKE]), "prompt": "a cat", "iters": 40,
                                         "model": tiny_model[0], "pretrained": tiny_model[1]})
    proc.stdin.write('{"command": "pause"}\n')
    proc.stdin.close()  # what a plugin that knows no commands does
    out = finish(timeout=300)
    assert proc.returncode == 0 and json.loads(out)["format"] == "clipdraw-scene"
    assert [e for e in events if e["event"] == "progress"][-1]["iteration"] == 40
    assert any("pause" in e.get("message", "") for e in events)


def test_draw_reply_names_dashed_shapes_the_renderer_draws_solid(tiny_model):
    """`drawn_solid` tells the plugin which dashed shapes CLIP saw as solid strokes: exactly when
    the renderer draws a dashed stroke like the solid one."""
    from clipdraw.render import render

    dashed = dict(STROKE, stroke_linecap="butt", stroke_dasharray=[4, 4])
    images = [render(Scene.from_dict(canvas([s])), 64, 64) for s in (dashed, dict(STROKE, stroke_linecap="butt"))]
    drawn_solid = torch.equal(*images)
    req = {"command": "draw", "scene": canvas([dashed, BLOB]), "prompt": "a cat", "iters": 1, "seed": 0,
           "augmentations": 1, "model": tiny_model[0], "pretrained": tiny_model[1], "device": "cpu"}
    r, _ = engine(req)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply.get("drawn_solid", []) == (["path12"] if drawn_solid else [])
    assert reply["shapes"][0]["stroke_dasharray"] == [4, 4]  # the dashes travel back all the same
