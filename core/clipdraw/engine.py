"""`clipdraw engine`: a JSON request as the first line of stdin, one JSON reply on stdout, JSON
lines on stderr.

The Inkscape plugin's side of the boundary (docs/engine-protocol.md). Nothing but the reply goes
to stdout and nothing but JSON lines to stderr, whatever happens: every failure ends as one
{"event": "error"} line and exit status 2 (a bad request) or 1 (anything else). stdin stays open
after the request for commands: {"command": "stop"} ends a drawing after its current iteration.
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import sys
import threading
import time
import warnings

DRAW_KEYS = {"command", "scene", "prompt", "negative", "negative_weight", "paths", "iters",
             "time_limit", "max_width", "fidelity", "lock", "seed", "augmentations", "model",
             "pretrained", "device", "preview", "precision", "threads"}
SCORE_KEYS = {"command", "scene", "labels", "top", "model", "pretrained", "device", "precision", "threads"}
DEVICES = ("auto", "cpu", "cuda", "mps")
PREVIEW_SIDE = 512  # the longest side of a preview picture


class RequestError(ValueError):
    """A request that does not follow the protocol: exit status 2."""


_EMITTING = threading.Lock()  # the command listener emits too: one whole line at a time


def emit(event: str, **fields) -> None:
    with _EMITTING:
        sys.stderr.write(json.dumps({"event": event, **fields}) + "\n")
        sys.stderr.flush()


# ---- request validation -------------------------------------------------------------------------


def _number(req, key, default, low=None, integer=False, nullable=False, high=None):
    v = req.get(key, default)
    if v is None and nullable:
        return None
    ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
    if ok and integer:
        ok = float(v) == int(v)
        v = int(v) if ok else v
    if not ok or (low is not None and v < low) or (high is not None and v > high):
        kind = "a whole number" if integer else "a number"
        bound = f" of at least {low}" if low is not None else ""
        bound = f" from {low} to {high}" if high is not None else bound
        raise RequestError(f"{key}: expected {kind}{bound}{' or null' if nullable else ''}, got {v!r}")
    return v


def _strings(req, key) -> list:
    v = req.get(key) or []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise RequestError(f"{key}: expected a list of strings, got {v!r}")
    return [s.strip() for s in v if s.strip()]


def _optional_string(req, key):
    v = req.get(key)
    if v is not None and not isinstance(v, str):
        raise RequestError(f"{key}: expected a string or null, got {v!r}")
    return v or None


def parse_request(req) -> dict:
    """Check a request and fill in the defaults of `clipdraw draw`; RequestError if it is wrong."""
    from .hardware import PRECISIONS
    from .optimize import LOCKABLE, MAX_SEED, MAX_WIDTH
    from .scene import Scene, SceneError

    if not isinstance(req, dict):
        raise RequestError("the request must be a JSON object")
    command = req.get("command", "draw")
    if command not in ("draw", "score"):
        raise RequestError(f"command: expected \"draw\" or \"score\", got {command!r}")
    unknown = sorted(set(req) - (DRAW_KEYS if command == "draw" else SCORE_KEYS))
    if unknown:
        raise RequestError(f"unknown key {unknown[0]!r} in a {command} request")
    if "scene" not in req:
        raise RequestError("scene: missing")
    try:
        scene = Scene.from_dict(req["scene"])
    except SceneError as e:
        raise RequestError(f"scene: {e}") from None
    out = {"command": command, "scene": scene,
           "model": _optional_string(req, "model"), "pretrained": _optional_string(req, "pretrained")}
    device = req.get("device") or "auto"
    if device not in DEVICES:
        raise RequestError(f"device: expected one of {', '.join(DEVICES)}, got {device!r}")
    out["device"] = device
    precision = req.get("precision") or "auto"
    if precision not in PRECISIONS:
        raise RequestError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    out["precision"] = precision
    out["threads"] = _number(req, "threads", None, low=1, integer=True, nullable=True)
    if command == "score":
        out["labels"] = _strings(req, "labels")
        out["top"] = _number(req, "top", 5, low=1, integer=True)
        return out
    prompt = req.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise RequestError("prompt: a draw request needs a non-empty prompt")
    lock = _strings(req, "lock")
    bad = [k for k in lock if k not in LOCKABLE]
    if bad:
        raise RequestError(f"lock: unknown {bad[0]!r}; choose from {', '.join(LOCKABLE)}")
    out.update(
        prompt=prompt.strip(),
        negative=_strings(req, "negative"),
        negative_weight=_number(req, "negative_weight", 0.3, low=0),
        paths=_number(req, "paths", None, low=0, integer=True, nullable=True),
        iters=_number(req, "iters", 1000, low=0, integer=True),
        time_limit=_number(req, "time_limit", None, low=0, nullable=True) or None,
        max_width=_number(req, "max_width", MAX_WIDTH, low=1),
        fidelity=_number(req, "fidelity", 1.0, low=0),
        lock=lock,
        seed=_number(req, "seed", 0, low=0, high=MAX_SEED, integer=True, nullable=True),
        augmentations=_number(req, "augmentations", 4, low=1, integer=True),
        preview=_number(req, "preview", None, low=0, nullable=True),
    )
    return out


# ---- stdin: the request, then commands ------------------------------------------------------


def stdin_lines(fd: int):
    """The lines of stdin (bytes, without the newline), read straight from its file descriptor: a
    thread left blocked in this read at exit holds none of the locks that sys.stdin's buffer would,
    which the interpreter needs to shut down."""
    pending = []
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            if any(pending):
                yield b"".join(pending)
            return
        *complete, rest = chunk.split(b"\n")
        for part in complete:
            yield b"".join(pending) + part
            pending = []
        pending.append(rest)


def listen(lines, stop: threading.Event) -> None:
    """Carry out the commands that follow the request. End of stdin is not a stop: old plugins
    close it right after the request."""
    for raw in lines:
        text = raw.decode("utf-8", "replace").strip()
        if not text:
            continue
        try:
            command = json.loads(text).get("command")
        except (ValueError, AttributeError):
            command = None
        if command == "stop":
            stop.set()
        else:
            emit("status", message=f"ignored a line that is not a command this engine knows: {text[:200]}")


def preview_png(image) -> bytes:
    """A float [H, W, 3] image in 0..1 as a PNG at most PREVIEW_SIDE px on its longest side."""
    from .render import to_pil

    picture = to_pil(image)
    picture.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))  # only ever shrinks
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def png_base64(image) -> str:
    return base64.b64encode(preview_png(image)).decode("ascii")


# ---- running ---------------------------------------------------------------------------------


def run(req: dict, stop: threading.Event | None = None) -> dict:
    """Carry out a parsed request; the reply object. Setting `stop` ends a drawing after the
    iteration under way, with the result so far."""
    from .guidance import context_warnings, top_labels
    from .hardware import set_threads
    from .models import load_clip, pick_device, resolve
    from .optimize import draw, picture

    try:
        device = pick_device(req["device"])
        threads = set_threads(req["threads"])
    except ValueError as e:  # a device this machine lacks, or a bad CLIPDRAW_THREADS
        raise RequestError(str(e)) from None
    model, pretrained = resolve(req["model"], req["pretrained"])
    emit("status", message=f"loading {model} ({pretrained or 'random weights'}) on {device}")
    clip = load_clip(model, pretrained, device, req["precision"])
    emit("status", message=clip.describe(threads))

    if req["command"] == "score":
        top = top_labels(clip, picture(req["scene"].to(device)), req["labels"])[: req["top"]]
        return {"labels": [{"label": l, "probability": p} for l, p in top]}

    for warning in context_warnings(clip, [req["prompt"], *req["negative"]]):
        emit("warning", message=_sentence(warning))
    emit("status", message=f"drawing \"{req['prompt']}\"")
    stop = stop or threading.Event()
    last = [0.0]
    shown = [None]  # when the last preview picture went out

    def progress(p):
        now = time.perf_counter()
        stopping = stop.is_set()
        frame = req["preview"] is not None and (shown[0] is None or now - shown[0] >= req["preview"])
        # a few lines a second at most, but always the last one and each picture
        if frame or stopping or now - last[0] >= 0.25 or p.iteration == p.iterations:
            last[0] = now
            picture_field = {}
            if frame:
                shown[0] = now
                picture_field["png"] = png_base64(p.image)
            emit("progress", iteration=p.iteration, iterations=p.iterations, loss=round(p.loss, 5),
                 elapsed=round(p.elapsed, 2), time_limit=p.time_limit, **picture_field)
        return stopping

    result = draw(clip, req["prompt"], req["scene"], negatives=req["negative"],
                  negative_weight=req["negative_weight"], paths=req["paths"], iters=req["iters"],
                  max_width=req["max_width"], fidelity=req["fidelity"], lock=req["lock"],
                  seed=req["seed"], augmentations=req["augmentations"],
                  time_limit=req["time_limit"], callback=progress)
    emit("status", message=f"{'stopped' if result.stopped else 'done'}: {result.iterations} iterations "
                           f"in {result.elapsed:.1f} s")
    reply = {**result.scene.to_dict(), "similarity": result.similarity}
    dashed = [s.id for s in result.scene.shapes if s.stroke_dasharray and s.id is not None]
    if dashed and not renders_dashes():  # the plugin's summary names what CLIP saw unlike the document
        reply["drawn_solid"] = dashed
    return reply


def renders_dashes() -> bool:
    """Whether the renderer draws stroke_dasharray: one dashed line across a tiny canvas shows
    gaps, or not (asked of the renderer itself, so the answer follows it)."""
    global _renders_dashes
    if _renders_dashes is None:
        from .render import render
        from .scene import Scene

        line = {"id": None, "subpaths": [{"points": [[0, 2], [5, 2], [11, 2], [16, 2]], "closed": False}],
                "stroke": [0, 0, 0, 1], "stroke_width": 2, "fill": None, "stroke_linecap": "butt",
                "stroke_dasharray": [4, 4]}
        probe = Scene.from_dict({"format": "clipdraw-scene", "version": 1, "width": 16, "height": 4,
                                 "background": [1, 1, 1, 1], "shapes": [line]})
        row = render(probe, 16, 4, background=(1, 1, 1))[2, :, 0]  # [16]: 0 under ink, 1 in a gap
        _renders_dashes = bool(row.max() - row.min() > 0.5)
    return _renders_dashes


_renders_dashes = None


def main(stdin=None, stdout=None) -> int:
    """Read one request, write one reply; never a traceback. Returns the exit status."""
    warnings.simplefilter("ignore")  # stderr carries JSON lines only
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    try:
        from .models import ModelError, ModelFileError
        from .scene import SceneError
    except Exception as e:  # a broken install: still one JSON line
        emit("error", message=f"the engine cannot start: {type(e).__name__}: {e}")
        return 1
    try:
        lines = stdin_lines(stdin.fileno())
        text = next(lines, b"").decode("utf-8", "replace")
        try:
            request = json.loads(text)
        except json.JSONDecodeError as e:
            raise RequestError(f"the request is not valid JSON ({e.msg} at line {e.lineno}, "
                               f"column {e.colno}); it is the first line of stdin") from None
        request = parse_request(request)
        stop = threading.Event()
        threading.Thread(target=listen, args=(lines, stop), daemon=True).start()
        reply = run(request, stop)
    except (RequestError, SceneError, ModelFileError) as e:
        emit("error", message=_sentence(e))
        return 2
    except ModelError as e:
        emit("error", message=_sentence(e))
        return 1
    except BaseException as e:  # noqa: BLE001 - the protocol promises one JSON line, not a traceback
        if isinstance(e, SystemExit) and not e.code:
            raise
        what = "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
        emit("error", message=f"the engine failed: {_first_line(what)}")
        return 1
    stdout.write(json.dumps(reply))
    stdout.write("\n")
    stdout.flush()
    return 0


def _first_line(text: str) -> str:
    lines = str(text).strip().splitlines()
    return lines[0][:1000] if lines else "unknown error"


def _sentence(e: Exception) -> str:
    s = _first_line(str(e))
    return s[0].upper() + s[1:] if s else type(e).__name__
