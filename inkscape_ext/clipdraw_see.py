#!/usr/bin/env python3
"""Extensions > CLIPDraw > What Does CLIP See?: the labels CLIP finds most likely for the
selection (or the whole page), with their probabilities, as a message. The document is unchanged."""
import inkex

import clipdraw_engine
import clipdraw_scene as cs


class See(inkex.EffectExtension):
    def add_arguments(self, pars):
        pars.add_argument("--tab", default="options")
        pars.add_argument("--labels", default="", help="labels separated by ; (blank = common nouns)")
        pars.add_argument("--top", type=int, default=5)
        pars.add_argument("--resolution", type=int, default=224)
        pars.add_argument("--model", default="")
        pars.add_argument("--pretrained", default="")

    def has_changed(self, ret):
        """Never: inkex then writes no output, and Inkscape records no undo step and does not
        mark the document modified (reading alone normalises attributes and adds ids)."""
        return False

    def effect(self):
        opt = self.options
        selected = list(self.svg.selection.values())
        snapshot = cs.Snapshot(self.svg)
        box = cs.selection_box(self.svg, selected, [])
        # nothing selected: everything visible, framed by the page
        items, skipped, unlinked = cs.collect(self.svg, selected or [self.svg])
        if selected and box is None:
            box = cs.selection_box(self.svg, selected, items)
        canvas = cs.Canvas(box or cs.page_box(self.svg), opt.resolution)
        scene, items = cs.scene_of(items, canvas)
        cs.relink(unlinked, set())
        snapshot.restore()
        if not scene["shapes"]:
            raise inkex.AbortExtension("What Does CLIP See: there is nothing to look at" +
                                       (" in the selection" if selected else " on the page") +
                                       ". Draw or select some paths or shapes.")
        request = {
            "command": "score",
            "scene": scene,
            "labels": [label.strip() for label in opt.labels.split(";") if label.strip()],
            "top": opt.top,
            "model": opt.model.strip() or None,
            "pretrained": opt.pretrained.strip() or None,
        }
        try:
            reply = clipdraw_engine.run(request)
        except clipdraw_engine.EngineError as e:
            raise inkex.AbortExtension(f"What Does CLIP See: {e}") from None
        labels = reply.get("labels", []) if isinstance(reply, dict) else []
        lines = [f"{entry['label']}: {100 * float(entry['probability']):.1f}%" for entry in labels]
        where = "the selection" if selected else "the page"
        inkex.errormsg(f"CLIP sees in {where}:\n" + "\n".join(lines))


if __name__ == "__main__":
    See().run()
