"""Running the CLIPDraw engine (docs/engine-protocol.md) from Inkscape's Python.

The engine needs torch, which Inkscape's Python does not have, so it runs as a subprocess of the
Python that `clipdraw install-inkscape` recorded (or $CLIPDRAW_PYTHON), or as any command that
speaks the protocol (the dialog's Engine command, or $CLIPDRAW_ENGINE), such as
`ssh gpu-box clipdraw engine`. Its stderr is read as JSON events while it works and never passed
on raw: failures become one EngineError message.

Cancel: Inkscape's Cancel button does not kill the extension; it stops reading its pipes. So
the plugin watches its own stdout/stderr for the reader going away (and for signals), and kills
the engine then. The engine is started through a small bootstrap that exits when its parent
(this plugin) dies, so even a SIGKILL of the plugin leaves no engine behind.
"""
import json
import os
import select
import shlex
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


class Cancelled(EngineError):
    """The user cancelled: the engine is gone and nothing is to change."""


def engine_command(setting=""):
    """The command line of a protocol-speaking engine: the dialog's setting, else
    $CLIPDRAW_ENGINE; None means the local Python. EngineError if it cannot be parsed."""
    text = (setting or "").strip() or os.environ.get("CLIPDRAW_ENGINE", "").strip()
    if not text:
        return None
    try:
        command = shlex.split(text, posix=os.name != "nt")
    except ValueError as e:
        raise EngineError(f"the engine command {text!r} cannot be read ({e}): fix the quoting") from None
    return command


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


def run(request, on_event=None, python=None, cancelled=reader_gone, command=None, stop=None):
    """Send one request to a fresh engine and return its reply (a dict).

    The engine is `command` (a list, see engine_command) if given, else the local Python's.
    on_event(event) sees each status/progress event as it comes. Raises EngineError with the
    engine's own error message when it fails, and kills the engine (raising Cancelled) if
    `cancelled()` turns true, the plugin is signalled, or the plugin exits. When `stop()` turns
    true the engine is told to stop and its reply is the drawing so far.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
    env.pop("PYTHONPATH", None)  # Inkscape's inkex path is nothing the engine's Python should see
    env.pop("PYTHONHOME", None)
    if command:
        argv, what = command, f"the engine command `{' '.join(command)}`"
    else:
        python = python or find_python()
        argv, what = [python, "-c", BOOTSTRAP], None
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
            start_new_session=bool(command),  # a command's children (ssh, a shell) go with it on kill
        )
    except OSError as e:
        if what:
            raise EngineError(f"cannot run {what}: {e.strerror}. Check the Engine command in the Run "
                              f"tab (or CLIPDRAW_ENGINE), or leave it blank to use this computer") from None
        raise EngineError(f"cannot start the engine's Python {python}: {e.strerror}; " + INSTALL_HINT) from None

    restore = kill_on_signals(proc)
    out = []  # stdout is read whole by a thread so neither pipe can fill up and stall the engine
    events = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    err_reader = threading.Thread(target=read_events, args=(proc.stderr, events, on_event), daemon=True)
    err_reader.start()
    try:
        # the request is one line; stdin stays open for the stop command when there may be one
        send(proc, json.dumps(request))
        if stop is None:
            close(proc.stdin)
        stopping = False
        while proc.poll() is None:
            if cancelled():
                kill(proc)
                raise Cancelled("cancelled")
            if stop is not None and not stopping and stop():
                stopping = True
                send(proc, json.dumps({"command": "stop"}))
            time.sleep(0.1)
        reader.join()
        err_reader.join()
    finally:
        kill(proc)
        restore()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            close(pipe)
    if proc.returncode != 0:
        raise EngineError(failure_message(proc.returncode, events, python, what))
    try:
        return json.loads(out[0].decode("utf-8"))
    except (IndexError, ValueError, UnicodeDecodeError):
        raise EngineError("the engine finished but its reply is not JSON: "
                          "check that CLIPDRAW_PYTHON / the installed engine match this plugin's version") from None


def send(proc, line):
    try:
        proc.stdin.write(line.encode("utf-8") + b"\n")
        proc.stdin.flush()
    except OSError:
        pass  # the engine died before reading it: its stderr says why


def close(pipe):
    try:
        pipe.close()
    except OSError:
        pass


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


def failure_message(code, events, python, command=None):
    if code == 3 and not command:  # the bootstrap's own: no clipdraw to import
        return f"the Python {python} does not have the clipdraw engine: " + INSTALL_HINT
    errors = [e.get("message", "") for e in events if e.get("event") == "error"]
    if errors:  # the engine speaks of its command line; the user has a dialog
        return errors[-1].replace("--pretrained FILE or CLIPDRAW_PRETRAINED=FILE",
                                  "the dialog's Weights field (Run > Weights in Draw from Prompt; "
                                  "or set CLIPDRAW_PRETRAINED=FILE)")
    text = [e.get("message", "") for e in events if e.get("event") == "text"]
    if command:  # ssh and shells say what went wrong in their last line
        said = f": {text[-1]}" if text else ""
        return (f"{command} failed (exit status {code}){said}. Check that it runs `clipdraw engine` "
                f"(try it in a terminal), or clear the Engine command in the Run tab")
    if any("No module named" in e.get("message", "") for e in events):
        return f"the Python {python} does not have the clipdraw engine: " + INSTALL_HINT
    last = text[-1] if text else f"exit status {code}"
    return f"the engine failed ({last}); run `clipdraw engine` by hand to see the whole error"


def kill(proc):
    if proc.poll() is None:
        try:
            if os.name == "posix" and os.getpgid(proc.pid) == proc.pid:  # an engine command's own group
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
        except OSError:  # it has just gone
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def kill_on_signals(proc):
    """Kill the engine if the plugin is told to stop; returns a function that undoes this."""
    names = ("SIGTERM", "SIGINT", "SIGHUP", "SIGPIPE")
    previous = {}

    def handler(signum, frame):
        if signum == getattr(signal, "SIGPIPE", None) and proc.poll() is not None:
            return  # the engine's own stdin, closed as it died: send() sees the error, stderr says why
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
