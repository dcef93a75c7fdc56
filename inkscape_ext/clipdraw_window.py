"""The window that watches a drawing form: the engine's preview pictures, iteration, time,
CLIP similarity and a progress bar, with "Stop and keep" and "Cancel"; the end-of-run message
appears in it too, so that progress and result share one place.

Gtk 3 through PyGObject: Inkscape bundles it on Windows and macOS; Linux has it as python3-gi and
gir1.2-gtk-3.0. inkex.gui builds windows from Glade files and caches pixmaps by name, neither of
which fits one window of changing pictures, so this is plain Gtk.
"""
import base64
import os
import sys
import threading
import warnings

import clipdraw_engine

DRAWING_SIDE = 320  # px on screen
GET_THE_WINDOW = ("For a live preview with Stop and Cancel, install Gtk 3 for Python "
                  "(Debian/Ubuntu: sudo apt install python3-gi gir1.2-gtk-3.0).")


def unavailable():
    """None if the window can open here, else why not (a sentence for the summary)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "There is no display for the preview window."
    os.environ.setdefault("NO_AT_BRIDGE", "1")  # no accessibility-bus warnings on stderr, which Inkscape would show
    warnings.filterwarnings("ignore", category=ImportWarning)  # gi's importer warns on stderr, which Inkscape shows
    try:
        import gi

        gi.require_version("Gtk", "3.0")
        from gi.repository import Gtk  # noqa: F401
    except (ImportError, ValueError):
        return GET_THE_WINDOW
    if not Gtk.init_check(None)[0]:
        return "The preview window cannot open on this display."
    return None


def duration(seconds):
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


class RunWindow:
    """Runs one engine request under a window; run() returns the reply or raises EngineError
    (Cancelled when the user cancelled). observe(event) sees each engine event too; finish(reply)
    is called on the reply and returns the message the window shows at the end (None: close at once)."""

    def __init__(self, title, finish, observe=None):
        from gi.repository import Gtk

        self.finish, self.observe = finish, observe
        self.stopping = False
        self.cancelled = False
        self.outcome = None  # ("reply", dict) or ("error", exception)
        self.window = Gtk.Window(title=title)
        self.window.set_default_size(DRAWING_SIDE + 24, -1)
        self.window.set_keep_above(True)  # not lost behind Inkscape's "working" dialog
        self.window.connect("delete-event", self.on_close)
        box = Gtk.Box(orientation=Gtk.Orientation.VERTICAL, spacing=8, margin=12)
        self.window.add(box)
        self.drawing = Gtk.Image()
        self.drawing.set_size_request(DRAWING_SIDE, DRAWING_SIDE)
        box.pack_start(self.drawing, False, False, 0)
        self.status = Gtk.Label(label="Starting the engine...", xalign=0, wrap=True, max_width_chars=40)
        box.pack_start(self.status, False, False, 0)
        self.bar = Gtk.ProgressBar(show_text=True, text="")
        box.pack_start(self.bar, False, False, 0)
        self.message = Gtk.Label(xalign=0, wrap=True, max_width_chars=40, selectable=True)
        box.pack_start(self.message, False, False, 0)
        buttons = Gtk.Box(spacing=8, homogeneous=True)  # each button half the width: tests click there
        self.cancel_button = Gtk.Button.new_with_mnemonic("_Cancel")
        self.cancel_button.connect("clicked", self.on_cancel)
        self.stop_button = Gtk.Button.new_with_mnemonic("_Stop and keep")
        self.stop_button.connect("clicked", self.on_stop)
        buttons.pack_start(self.cancel_button, True, True, 0)
        buttons.pack_start(self.stop_button, True, True, 0)
        box.pack_end(buttons, False, False, 0)

    def run(self, request, **engine_options):
        from gi.repository import GLib, Gtk

        def work():
            try:
                reply = clipdraw_engine.run(
                    request, on_event=lambda e: GLib.idle_add(self.on_event, e),
                    cancelled=lambda: self.cancelled or clipdraw_engine.reader_gone(),
                    stop=lambda: self.stopping, **engine_options)
                GLib.idle_add(self.on_reply, reply)
            except Exception as e:  # noqa: BLE001 - shown in the window, raised again by run()
                GLib.idle_add(self.on_failure, e)

        self.window.show_all()
        threading.Thread(target=work, daemon=True).start()
        Gtk.main()
        self.window.destroy()
        kind, value = self.outcome
        if kind == "error":
            raise value
        return value

    # ---- from the engine (on the Gtk thread) ----

    def on_event(self, event):
        if self.observe is not None:
            self.observe(event)
        if event.get("event") != "progress":
            text = event.get("message", "")[:120]
            self.status.set_text(text[:1].upper() + text[1:])
            return False
        done, total = event.get("iteration", 0), max(1, event.get("iterations", 1))
        elapsed, limit = float(event.get("elapsed", 0.0)), event.get("time_limit")
        left = (total - done) * elapsed / max(done, 1)
        if limit:
            left = min(left, max(0.0, limit - elapsed))
        similarity = event.get("similarity", -float(event.get("loss", 0.0)))
        self.status.set_text(f"Iteration {done} of {total}  ·  {duration(elapsed)}, about {duration(left)} left"
                             f"  ·  CLIP similarity {similarity:.3f}")
        fraction = max(done / total, elapsed / limit if limit else 0.0)
        self.bar.set_fraction(min(1.0, fraction))
        self.bar.set_text("Stopping after this iteration..." if self.stopping else f"{100 * min(1.0, fraction):.0f}%")
        if "png" in event:
            self.show_picture(base64.b64decode(event["png"]))
        return False

    def show_picture(self, png):
        from gi.repository import GdkPixbuf, GLib

        loader = GdkPixbuf.PixbufLoader.new_with_type("png")
        try:
            loader.write(png)
            loader.close()
        except GLib.Error:
            return
        picture = loader.get_pixbuf()
        k = DRAWING_SIDE / max(picture.get_width(), picture.get_height())
        self.drawing.set_from_pixbuf(picture.scale_simple(max(1, round(picture.get_width() * k)),
                                                          max(1, round(picture.get_height() * k)),
                                                          GdkPixbuf.InterpType.BILINEAR))

    def on_reply(self, reply):
        try:
            message = self.finish(reply)
        except Exception as e:  # noqa: BLE001 - the caller raises it after the loop
            return self.on_failure(e)
        self.outcome = ("reply", reply)
        if message is None:
            self.quit()
        else:
            self.end("Done", message)
        return False

    def on_failure(self, error):
        self.outcome = ("error", error)
        if isinstance(error, clipdraw_engine.Cancelled):
            self.quit()
        else:
            self.end("Nothing changed", f"CLIPDraw: {error}")
        return False

    def end(self, status, message):
        """The end-of-run message, in this window; Close (or closing it) ends the extension."""
        self.status.set_text(status)
        self.message.set_text(message)
        self.bar.set_text("")
        self.cancel_button.hide()
        self.stop_button.set_label("_Close")
        self.stop_button.set_sensitive(True)
        self.window.set_title(f"CLIPDraw: {status.lower()}")

    # ---- from the user ----

    def on_stop(self, button):
        if self.outcome is not None:  # it is the Close button by now
            return self.quit()
        self.stopping = True
        button.set_sensitive(False)
        self.bar.set_text("Stopping after this iteration...")

    def on_cancel(self, button=None):
        if self.outcome is not None:
            return self.quit()
        self.cancelled = True  # the engine thread kills the engine and reports Cancelled
        self.window.hide()

    def on_close(self, window, event):
        self.on_cancel()
        return True  # destroyed by run() once the engine is gone

    def quit(self):
        from gi.repository import Gtk

        self.window.hide()
        Gtk.main_quit()
