#!/usr/bin/env python3
"""Extensions > CLIPDraw > Draw from Prompt...: refine the selected strokes (or draw new ones)
until CLIP agrees with the prompt, and put the result back as ordinary SVG paths."""
import sys
import time

import inkex
from inkex.utils import ABORT_STATUS

import clipdraw_engine
import clipdraw_scene as cs
import clipdraw_window


class Draw(inkex.EffectExtension):
    def add_arguments(self, pars):
        pars.add_argument("--tab", default="prompt")
        pars.add_argument("--prompt", default="a drawing of a cat")
        pars.add_argument("--negative", default="", help="negative prompts, separated by ;")
        pars.add_argument("--mode", default="auto", choices=["auto", "refine", "add", "new"])
        pars.add_argument("--strokes", type=int, default=256, help="new strokes (add / new drawing)")
        pars.add_argument("--max_width", type=float, default=20.0, help="full SVG width, canvas pixels")
        pars.add_argument("--fidelity", type=float, default=1.0)
        pars.add_argument("--lock_colors", type=inkex.Boolean, default=False)
        pars.add_argument("--lock_widths", type=inkex.Boolean, default=False)
        pars.add_argument("--iterations", type=int, default=1000)
        pars.add_argument("--time_limit", type=int, default=60, help="seconds, 0 = none")
        pars.add_argument("--seed", type=int, default=0)
        pars.add_argument("--resolution", type=int, default=224, help="canvas pixels")
        pars.add_argument("--augmentations", type=int, default=4)
        pars.add_argument("--guide", default="default", help="open_clip model name offered in the dialog")
        pars.add_argument("--model", default="", help="open_clip model name (blank = --guide)")
        pars.add_argument("--pretrained", default="", help="weights file or tag (blank = default)")
        pars.add_argument("--output_mode", default="inplace", choices=["inplace", "layer"])
        pars.add_argument("--summary", type=inkex.Boolean, default=True)
        pars.add_argument("--engine", default="", help="a command that runs the engine (blank = $CLIPDRAW_ENGINE, else this computer)")

    def effect(self):
        opt = self.options
        prompt = opt.prompt.strip()
        if not prompt:
            raise inkex.AbortExtension("CLIPDraw: the prompt is empty. Type what to draw, e.g. 'a drawing of a cat'.")
        selected = list(self.svg.selection.values())
        snapshot = cs.Snapshot(self.svg)
        selection_box = cs.selection_box(self.svg, selected, [])  # before reading changes anything
        items, skipped, unlinked = cs.collect(self.svg, selected)
        mode = opt.mode
        if mode == "auto":
            mode = "refine" if items else "new"
        if mode == "refine" and not items:
            raise inkex.AbortExtension(
                "CLIPDraw: nothing to refine" + (" (" + skipped_text(skipped) + ")" if skipped else "") +
                ". Select paths or shapes, or choose 'new drawing' under Strokes.")
        refined = items if mode in ("refine", "add") else []

        box = selection_box or cs.union(item.visual_box() for item in items)
        if box is None:  # a new drawing on the page: the canvas is the largest square on it
            page = cs.page_box(self.svg)
            side = min(page.width, page.height)
            cx, cy = page.center
            box = inkex.BoundingBox((cx - side / 2, cx + side / 2), (cy - side / 2, cy + side / 2))
        canvas = cs.Canvas(box, opt.resolution)
        scene, refined = cs.scene_of(refined, canvas)
        unseen = cs.unseen(refined)  # while the elements are those read
        widest = max([s["stroke_width"] for s in scene["shapes"] if s["stroke"] is not None] + [0.0])
        lock = (["colors"] if opt.lock_colors else []) + (["widths"] if opt.lock_widths else [])
        request = {
            "command": "draw",
            "scene": scene,
            "prompt": prompt,
            "negative": [n.strip() for n in opt.negative.split(";") if n.strip()],
            "paths": opt.strokes if mode in ("add", "new") else 0,
            "iters": opt.iterations,
            "time_limit": opt.time_limit,
            "max_width": max(opt.max_width, widest),  # refining never thins what the user drew
            "fidelity": opt.fidelity,
            "lock": lock,
            "seed": opt.seed,
            "augmentations": opt.augmentations,
            "model": opt.model.strip() or (None if opt.guide == "default" else opt.guide),
            "pretrained": opt.pretrained.strip() or None,
        }
        progress, warnings = {}, []

        def on_event(event):
            if event.get("event") == "warning":
                warnings.append(event.get("message", ""))
            else:
                progress.update(event)

        start = time.time()

        def put(reply):
            """The reply into the document; the end-of-run message (None if there is none)."""
            given, new, written = self.put(reply, refined, scene, canvas, snapshot, unlinked, prompt, selected)
            changed = sum(cs.shape_changed(sent, got) for sent, got in zip(scene["shapes"], given))
            message = []
            if opt.summary:
                message.append(summary(progress, time.time() - start, changed, len(given), len(new),
                                       reply.get("similarity") if isinstance(reply, dict) else None, prompt))
            message += [f"Warning: {w}" for w in warnings]
            if skipped:
                message.append(f"Left {skipped_text(skipped)} alone (Path > Object to Path makes paths CLIPDraw can use).")
            solid = reply.get("drawn_solid", []) if isinstance(reply, dict) else []
            message += document_notes(cs.dropped_effects(written), unseen, solid)
            if no_window and opt.summary:
                message.append(no_window)
            return "CLIPDraw: " + " ".join(message) if message else None

        no_window = clipdraw_window.unavailable()
        try:
            command = clipdraw_engine.engine_command(opt.engine)
            if no_window is None:  # the window shows progress and the end message, and can stop
                window = clipdraw_window.RunWindow(f"CLIPDraw: {prompt}", put, observe=on_event)
                try:
                    window.run(dict(request, preview=1.0), command=command)
                except clipdraw_engine.EngineError:  # cancelled, or the window said what went wrong
                    cs.relink(unlinked, set())
                    sys.exit(ABORT_STATUS)  # the document stays as it was, and no second message
                return
            reply = clipdraw_engine.run(request, on_event=on_event, command=command)
        except clipdraw_engine.EngineError as e:
            cs.relink(unlinked, set())
            raise inkex.AbortExtension(f"CLIPDraw: {e}") from None
        message = put(reply)
        if message:
            inkex.errormsg(message)

    def put(self, reply, refined, scene, canvas, snapshot, unlinked, prompt, selected):
        """Write the engine's reply into the document: (given shapes, new strokes, {element: names written})."""
        # the reply holds the given shapes first, in order, then the new strokes
        shapes = reply.get("shapes", []) if isinstance(reply, dict) else []
        given, new = shapes[:len(refined)], shapes[len(refined):]

        written = {}
        if self.options.output_mode == "layer":
            layer = inkex.Layer.new(f"CLIPDraw: {prompt}")
            layer.set("id", self.svg.get_unique_id("clipdraw"))
            self.svg.append(layer)
            sources = list(refined) + [None] * len(new)
            for shape, source in zip(given + new, sources):
                layer.append(cs.new_path(shape, canvas, layer.composed_transform(), self.svg, source=source))
            cs.clip_to_canvas(layer, canvas, self.svg)
        else:
            for item, sent, shape in zip(refined, scene["shapes"], given):
                element, names = cs.write_in_place(item, sent, shape, canvas, snapshot)
                if element is not None:
                    written[element] = names
            if new:
                self.add_group(new, canvas, prompt, selected)
        cs.relink(unlinked, written)
        snapshot.restore(written)
        return given, new, written

    def add_group(self, shapes, canvas, prompt, selected):
        """New strokes in a group labelled with the prompt, just above the selection."""
        group = inkex.Group()
        group.set("id", self.svg.get_unique_id("clipdraw"))
        group.label = prompt
        order = {node: i for i, node in enumerate(self.svg.iter())}
        anchors = [e for e in selected if e in order and e.getparent() is not None]
        if anchors:
            top = max(anchors, key=order.get)
            top.addnext(group)
        else:
            self.svg.get_current_layer().append(group)
        parent = group.getparent().composed_transform()
        for shape in shapes:
            group.append(cs.new_path(shape, canvas, parent, self.svg))
        cs.clip_to_canvas(group, canvas, self.svg)


def skipped_text(skipped):
    words = {"text": ("text", "texts"), "image": ("image", "images"), "clone": ("clone", "clones")}
    return ", ".join(f"{n} {words[k][n != 1]}" for k, n in sorted(skipped.items()))


def document_notes(dropped, unseen, solid=()):
    """Sentences on what the run did to the document beyond the drawing, and what CLIP did not see."""
    notes = []
    if solid:
        notes.append(f"CLIP saw {', '.join(solid)} solid: the renderer draws no dashes yet (the dashes stay in the document).")
    if dropped:
        notes.append(f"{', '.join(dropped)} {'is a plain path' if len(dropped) == 1 else 'are plain paths'} now: "
                     f"the live path effect was dropped, since Inkscape would rebuild the path from "
                     f"its source and undo the refinement.")
    if unseen:
        notes.append("CLIP did not see " + "; ".join(f"the {kind} of {', '.join(ids)}" for kind, ids in unseen.items())
                     + " (it draws paths and their paint only).")
    return notes


def summary(progress, seconds, changed, selected, added, similarity, prompt):
    """What the run did, counting only the selected paths that really changed, and CLIP's
    similarity to the prompt on the start and on the result (the engine's fixed measure)."""
    done = progress.get("iteration")
    parts = []
    if changed:
        of = f" of {selected}" if changed < selected else ""
        parts.append(f"refined {changed}{of} path{'s' * (selected != 1)}")
    if added:
        parts.append(f"added {added} stroke{'s' * (added != 1)}")
    text = " and ".join(parts).capitalize() or "Nothing changed"
    if selected and not changed:
        text += f" (the {selected} selected path{'s are' if selected != 1 else ' is'} as drawn)"
    text += f" in {done or 0} iteration{'s' * (done != 1)}, {seconds:.0f} s."
    if similarity:
        text += f" CLIP similarity to {quoted(prompt)}: {similarity['start']:.3f} -> {similarity['end']:.3f}"
        for negative in similarity.get("negatives", []):
            text += f"; to {quoted(negative['prompt'])} (negative): {negative['start']:.3f} -> {negative['end']:.3f}"
        text += "."
    return text


def quoted(text, limit=60):
    """'text' in quotes, its middle elided when it is long (as the engine quotes prompts)."""
    half = (limit - 3) // 2
    return repr(text if len(text) <= limit else text[:half] + "..." + text[-half:])


if __name__ == "__main__":
    Draw().run()
