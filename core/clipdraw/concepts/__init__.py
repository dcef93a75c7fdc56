"""A toy concept world: a few shapes in a few colours, drawn in strokes.

OpenAI's CLIP weights cannot be downloaded where this project is built and tested, so a small
CLIP-style model that really knows these concepts is trained here on synthetic stroke drawings
(`synth.py`), with an independent judge, a small CNN, to grade what CLIPDraw draws with it
(`judge.py`). `python -m clipdraw.concepts.train` remakes both (`train.py`); the trained files are
in tests/data/concept/. The semantic tests and benchmarks/quality.py use them.
"""
SHAPES = ("circle", "square", "triangle", "star", "cross")
COLOURS = ("red", "green", "blue", "yellow", "black")


def caption(shape: str, colour: str, template: str = "a drawing of a {}") -> str:
    """"a drawing of a red circle": the prompts the concept model was trained on."""
    return template.format(f"{colour} {shape}")


def concepts() -> list[tuple[str, str]]:
    """Every (shape, colour) pair, shape-major: class index = shape * len(COLOURS) + colour."""
    return [(s, c) for s in SHAPES for c in COLOURS]
