"""Running the CLIPDraw engine (docs/engine-protocol.md) from Inkscape's Python.

The engine needs torch, which Inkscape's Python does not have, so it runs as a subprocess of the
Python that `clipdraw install-inkscape` recorded (or $CLIPDRAW_PYTHON). Its stderr is read as
JSON events while it works and never passed on raw: failures become one EngineError message.

Cancel: Inkscape's Cancel button does not kill the extension; it stops reading its pipes. So
the plugin watches its own stdout/stderr for the reader going away (and for signals), and kills
the engine then. The engine is started through a small bootstrap that exits when its parent
(this plugin) dies, so even a SIGKILL of the plugin leaves no engine behind.
"""
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

CONFIG = "clipdraw_engine.json"  # written by `clipdraw install-inkscape` next to the plugin
INSTALL_HINT = (
    "install the engine (pip install clipdraw-inkscape, or pip install -e . in a clone) and run "
    "`clipdraw install-inkscape`, or set CLIPDRAW_PYTHON to a Python that has it"
)

# Runs inside the engine's Python: exit when the parent goes away, then be `clipdraw engine`.
BOOTSTRAP = """
import os, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(0.25)
    os._exit(1)
if os.name == "posix":
    threading.Thread(target=watch, daemon=True).start()
try:
    from clipdraw.cli import main
except ImportError as e:
    print('{"event": "error", "message": "this Python cannot import the clipdraw engine (%s)"}' % e, file=sys.stderr)
    sys.exit(3)
sys.exit(main(["engine"]))
"""


class EngineError(Exception):
    """What went wrong, in one message fit for the user."""


def config_paths():
    here = os.path.dirname(os.path.abspath(__file__))
    return [os.path.join(here, CONFIG), os.path.join(os.path.dirname(here), CONFIG)]


def find_python():
    """$CLIPDRAW_PYTHON, else the Python recorded at install time; EngineError if neither."""
    python = os.environ.get("CLIPDRAW_PYTHON")
    if python:
        if not os.path.exists(python):
            raise EngineError(f"CLIPDRAW_PYTHON is {python!r}, which does not exist: point it at a "
                              f"Python that has the engine, or unset it")
        return python
    for path in config_paths():
        if os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as f:
                    python = json.load(f)["python"]
            except (OSError, ValueError, KeyError, TypeError):
                raise EngineError(f"{path} is damaged: run `clipdraw install-inkscape` again") from None
            if not os.path.exists(python):
                raise EngineError(f"the engine's Python {python} (recorded in {path}) is gone: "
                                  f"run `clipdraw install-inkscape` again from the Python that has the engine")
            return python
    raise EngineError("CLIPDraw's engine is not set up: " + INSTALL_HINT)


def reader_gone(streams=(sys.stdout, sys.stderr)):
    """True when whoever reads our stdout/stderr (Inkscape) has closed its end: Cancel."""
    if not hasattr(select, "poll"):
        return False
    poll = select.poll()
    for stream in streams:
        try:
            poll.register(stream.fileno(), 0)  # no events asked: only errors and hang-ups come back
        except (AttributeError, ValueError, OSError):
            continue
    try:
        return any(flags & (select.POLLERR | select.POLLHUP) for _, flags in poll.poll(0))
    except OSError:
        return False


def run(request, on_event=None, python=None, cancelled=reader_gone):
    """Send one request to a fresh engine and return its reply (a dict).

    on_event(event) sees each status/progress event as it comes. Raises EngineError with the
    engine's own error message when it fails, and kills the engine if `cancelled()` turns true,
    the plugin is signalled, or the plugin exits.
    """
    python = python or find_python()
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONPATH", None)  # Inkscape's inkex path is nothing the engine's Python should see
    env.pop("PYTHONHOME", None)
    try:
        proc = subprocess.Popen(
            [python, "-c", BOOTSTRAP], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
    except OSError as e:
        raise EngineError(f"cannot start the engine's Python {python}: {e.strerror}; " + INSTALL_HINT) from None

    restore = kill_on_signals(proc)
    out = []  # stdout is read whole by a thread so neither pipe can fill up and stall the engine
    events = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    err_reader = threading.Thread(target=read_events, args=(proc.stderr, events, on_event), daemon=True)
    err_reader.start()
    try:
        try:
            proc.stdin.write(json.dumps(request).encode("utf-8"))
            proc.stdin.close()
        except OSError:
            pass  # the engine died before reading everything: its stderr says why
        while proc.poll() is None:
            if cancelled():
                kill(proc)
                raise EngineError("cancelled")
            time.sleep(0.1)
        reader.join()
        err_reader.join()
    finally:
        kill(proc)
        restore()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass
    if proc.returncode != 0:
        raise EngineError(failure_message(proc.returncode, events, python))
    try:
        return json.loads(out[0].decode("utf-8"))
    except (IndexError, ValueError, UnicodeDecodeError):
        raise EngineError("the engine finished but its reply is not JSON: "
                          "check that CLIPDRAW_PYTHON / the installed engine match this plugin's version") from None


def read_events(stream, events, on_event):
    """Collect the engine's JSON event lines; anything else (a traceback) is kept as text."""
    for raw in iter(stream.readline, b""):
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        try:
            event = json.loads(line)
            if not isinstance(event, dict):
                raise ValueError
        except ValueError:
            event = {"event": "text", "message": line}
        events.append(event)
        if on_event is not None and event.get("event") in ("status", "progress", "warning"):
            on_event(event)


def failure_message(code, events, python):
    if code == 3:  # the bootstrap's own: no clipdraw to import
        return f"the Python {python} does not have the clipdraw engine: " + INSTALL_HINT
    errors = [e.get("message", "") for e in events if e.get("event") == "error"]
    if errors:
        return errors[-1]
    if any("No module named" in e.get("message", "") for e in events):
        return f"the Python {python} does not have the clipdraw engine: " + INSTALL_HINT
    text = [e.get("message", "") for e in events if e.get("event") == "text"]
    last = text[-1] if text else f"exit status {code}"
    return f"the engine failed ({last}); run `clipdraw engine` by hand to see the whole error"


def kill(proc):
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def kill_on_signals(proc):
    """Kill the engine if the plugin is told to stop; returns a function that undoes this."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE")
    previous = {}

    def handler(signum, frame):
        kill(proc)
        os._exit(128 + signum)

    for name in names:
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                previous[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread, or not settable here
                pass

    def restore():
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
