"""The preview window in real Inkscape under Xvfb: it shows the drawing as it forms, "Stop and keep"
puts the current result into the document early, "Cancel" leaves the document as it was and no
engine behind; without Gtk the plugin runs as before. Screenshots land in each test's tmp_path."""
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from test_inkscape_e2e import (FAST, TOOLS, by_id, display, drawing, kill_inkscape,  # noqa: F401
                               plugin_processes, profile, run_inkscape, start_inkscape, windows)

GTK = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('Gtk', '3.0'); "
                      "from gi.repository import Gtk"], capture_output=True).returncode == 0 \
    if Path("/usr/bin/python3").exists() else False
pytestmark = [
    pytest.mark.inkscape,
    pytest.mark.timeout(600),
    pytest.mark.skipif(any(__import__("shutil").which(t) is None for t in TOOLS),
                       reason="needs Inkscape, Xvfb, xdotool and ImageMagick (apt-get install inkscape xvfb xdotool imagemagick)"),
]
needs_gtk = pytest.mark.skipif(not GTK, reason="needs Gtk 3 for Inkscape's Python (apt-get install python3-gi gir1.2-gtk-3.0)")
LONG = dict(FAST, iterations=100000, time_limit=0, prompt="a red apple")
MARGIN, SIDE = 12, 320  # clipdraw_window's margin and drawing size


def model_env(tiny_model):
    return {"CLIPDRAW_MODEL": tiny_model[0], "CLIPDRAW_PRETRAINED": tiny_model[1]}


def find_window(env, title, proc, limit=180, shot=None):
    deadline = time.time() + limit
    while True:
        found = [w for w in windows(env) if w[1] == title]
        if found:  # below Inkscape's "working" dialog (without a window manager it may cover ours)
            subprocess.run(["xdotool", "windowmove", found[0][0], "0", "520"], env=env, timeout=20, check=True)
            time.sleep(0.5)
            moved = [w for w in windows(env) if w[0] == found[0][0]]
            if moved:
                return moved[0]
            continue
        if proc.poll() is not None or time.time() > deadline:
            if shot:  # what the screen shows instead
                subprocess.run(["import", "-window", "root", str(shot)], env=env, timeout=30)
            assert proc.poll() is None, f"Inkscape ended without a window {title!r}"
            raise AssertionError(f"no window {title!r} after {limit} s: {windows(env)}")
        time.sleep(0.3)


def photograph(env, wid, path):
    subprocess.run(["import", "-window", wid, str(path)], env=env, timeout=30, check=True)
    return Image.open(path).convert("RGB")


def wait_for_drawing(env, wid, path, proc, limit=180):
    """Photograph the window until its drawing area shows a drawing (not blank paper or nothing)."""
    deadline = time.time() + limit
    while True:
        shot = photograph(env, wid, path)
        left = (shot.width - SIDE) // 2  # the drawing is centred
        area = shot.crop((left, MARGIN, left + SIDE, MARGIN + SIDE))
        colours = area.getcolors(SIDE * SIDE)
        inked = sum(n for n, c in colours if max(c) - min(c) > 60)  # saturated: strokes, not greys
        if inked > 200 and len(colours) > 10:
            return shot
        assert proc.poll() is None, "Inkscape ended before the drawing showed"
        assert time.time() < deadline, "the window never showed a drawing"
        time.sleep(1.0)


def click(env, x, y):
    subprocess.run(["xdotool", "mousemove", str(x), str(y), "click", "1"], env=env, timeout=20, check=True)


def press(env, wid, right):
    """Click the bottom row's right half ("Stop and keep", later "Close") or left half ("Cancel"),
    where they are now."""
    _, _, x, y, width, height = next(w for w in windows(env) if w[0] == wid)
    click(env, x + (3 if right else 1) * width // 4, y + height - MARGIN - 12)


def finish(proc, out, limit=120):
    deadline = time.time() + limit
    try:
        while proc.poll() is None:
            assert time.time() < deadline, f"Inkscape still running after {limit} s"
            time.sleep(0.3)
    finally:
        kill_inkscape(proc)
    from lxml import etree

    return etree.parse(str(out)).getroot() if out.exists() else None


@needs_gtk
def test_window_shows_the_drawing_and_stop_keeps_the_current_result(display, profile, tmp_path, tiny_model,
                                                                   stand_in_engine):
    """Through the Engine command field, with a stand-in for ssh: the run would never end by itself."""
    prefs = dict(LONG, summary="true", engine=str(stand_in_engine))
    proc, env, out = start_inkscape(display, profile, tmp_path, "select-by-id:p1,g1;org.clipdraw.draw.noprefs",
                                    prefs, model_env(tiny_model))
    window = find_window(env, "CLIPDraw: a red apple", proc)
    wait_for_drawing(env, window[0], tmp_path / "window.png", proc)
    press(env, window[0], right=True)
    done = find_window(env, "CLIPDraw: done", proc, limit=60, shot=tmp_path / "screen.png")  # the end message, in the same window
    time.sleep(1.0)
    photograph(env, done[0], tmp_path / "window-done.png")
    assert not [w for w in windows(env) if w[1] == "" and w[5] > 120]  # no second message window
    press(env, done[0], right=True)  # now Close
    tree = finish(proc, out)
    assert tree is not None
    assert by_id(tree, "p1").get("d") != "M 10 10 C 20 30 40 30 50 10"  # the result so far is in
    for i in ("p1", "r1", "c1", "g1", "layer1"):
        assert by_id(tree, i) is not None, i
    assert not plugin_processes(profile)


@needs_gtk
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
def test_cancel_leaves_the_document_and_no_engine(display, profile, tmp_path, tiny_model):
    base, _ = run_inkscape(display, profile, tmp_path, "select-by-id:p1", {})
    proc, env, out = start_inkscape(display, profile, tmp_path, "select-by-id:p1,g1;org.clipdraw.draw.noprefs",
                                    dict(LONG, summary="true"), model_env(tiny_model))
    window = find_window(env, "CLIPDraw: a red apple", proc)
    wait_for_drawing(env, window[0], tmp_path / "window.png", proc)
    assert len(plugin_processes(profile)) >= 2  # the plugin and its engine
    press(env, window[0], right=False)
    deadline = time.time() + 60
    messages = []
    while proc.poll() is None and time.time() < deadline:
        messages += [w for w in windows(env) if w[1] == "" and w[5] > 120]
        time.sleep(0.3)
    tree = finish(proc, out)
    assert not messages  # Cancel says nothing more
    assert drawing(tree) == drawing(base)
    assert not plugin_processes(profile)


def test_without_gtk_the_plugin_runs_as_before(display, profile, tmp_path, tiny_model):
    """A `gi` that cannot be imported stands for an Inkscape Python without PyGObject."""
    blocker = tmp_path / "no-gtk" / "gi"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no PyGObject here')\n")
    tree, shots = run_inkscape(display, profile, tmp_path, "select-by-id:p1;org.clipdraw.draw.noprefs",
                               dict(FAST, prompt="a red apple", summary="true"),
                               dict(model_env(tiny_model), PYTHONPATH=str(blocker.parent)))
    assert tree is not None and len(shots) == 1  # the summary, in Inkscape's message window
    assert by_id(tree, "p1").get("d") != "M 10 10 C 20 30 40 30 50 10"
