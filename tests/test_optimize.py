"""The CLIPDraw loop with the real renderer: init, schedule, refinement, locks, seeds, tracing."""
import torch

import pytest

from clipdraw.guidance import ClipLoss
from clipdraw.optimize import (CLIPDRAW_LR, draw, l2_loss, optimize, picture, random_strokes, trace)
from clipdraw.render import render
from clipdraw.scene import Scene, Subpath, make_shape


def sketch(size=64):
    """A user's two strokes and a filled square, as the plugin would send them."""
    s = Scene(width=size, height=size)
    s.shapes = [
        make_shape([Subpath(torch.tensor([[10., 10], [20, 30], [30, 30], [40, 10]]))],
                   stroke=[0, 0, 0, 1], stroke_width=3, id="a"),
        make_shape([Subpath(torch.tensor([[10., 50], [25, 40], [40, 60], [55, 50]]))],
                   stroke=[0.8, 0.1, 0.1, 1], stroke_width=2, id="b"),
        make_shape([Subpath(torch.tensor([[44., 20], [54, 20], [54, 20], [54, 30], [54, 30], [44, 30],
                                          [44, 30], [44, 20], [44, 20]]), closed=True)],
                   fill=[0.1, 0.5, 0.9, 1], id="c"),
    ]
    return s


def all_points(scene):
    return torch.cat([sp.points for s in scene.shapes for sp in s.subpaths])


def test_random_strokes_follow_clipdraw():
    g = torch.Generator().manual_seed(0)
    shapes = random_strokes(200, 224, 224, g)
    for s in shapes:
        p = s.subpaths[0].points
        assert p.shape[0] in (4, 7, 10) and not s.subpaths[0].closed
        steps = (p[1:] - p[:-1]).abs()
        assert steps.max() <= 0.05 * 224 + 1e-4  # each control point near the previous one
        assert float(s.stroke_width) == 2.0 and s.fill is None
        assert s.stroke.shape == (4,) and 0 <= s.stroke.min() and s.stroke.max() <= 1
    starts = torch.stack([s.subpaths[0].points[0] for s in shapes])
    assert starts.min() >= 0 and starts.max() <= 224 and starts.std(0).min() > 40  # spread over the canvas
    assert {s.subpaths[0].points.shape[0] for s in shapes} == {4, 7, 10}


def test_clamps_and_the_final_iterate(tiny_clip):
    """Widths/colours are clamped; the result is the last iterate, its loss the last one seen."""
    scene = Scene(width=64, height=64)
    scene.shapes = random_strokes(4, 64, 64, torch.Generator().manual_seed(1))
    seen = []

    def loss_fn(image):
        return -(image.mean()) * 1e3  # pushes widths up (more ink) and colours past 1

    def callback(p):
        seen.append(p.loss)

    result = optimize(scene, loss_fn, iters=8, max_width=3.0, callback=callback)
    assert result.iterations == 8 and len(seen) == 8
    assert result.loss == seen[-1] and not result.stopped
    for s in result.scene.shapes:
        assert 2.0 * 64 / 224 <= float(s.stroke_width) <= 3.0
        assert s.stroke.min() >= 0 and s.stroke.max() <= 1
    assert not any(t.requires_grad for t in (s.stroke_width for s in result.scene.shapes))


def test_lr_drops_at_half_and_three_quarters():
    scene = sketch()
    lrs = []
    import clipdraw.optimize as opt_mod

    real_adam = torch.optim.Adam

    class Spy(real_adam):
        def step(self, *a, **k):
            lrs.append({g["name"]: g["lr"] for g in self.param_groups})
            return super().step(*a, **k)

    opt_mod.torch.optim.Adam, saved = Spy, opt_mod.torch.optim.Adam
    try:
        optimize(scene, lambda im: im.mean(), iters=8)
    finally:
        opt_mod.torch.optim.Adam = saved
    base = CLIPDRAW_LR["points"] * 64 / 224
    assert [round(l["points"] / base, 3) for l in lrs] == [1, 1, 1, 1, 0.4, 0.4, 0.1, 0.1]
    assert all(abs(l["widths"] - 0.2 * 64 / 224) < 1e-12 and l["colors"] == 0.01 for l in lrs)


def test_same_seed_same_drawing_other_seed_another(tiny_clip):
    kw = dict(paths=6, iters=3, size=64)
    a = draw(tiny_clip, "a cat", seed=7, **kw).scene.to_dict()
    b = draw(tiny_clip, "a cat", seed=7, **kw).scene.to_dict()
    c = draw(tiny_clip, "a cat", seed=8, **kw).scene.to_dict()
    assert a == b
    assert a != c
    assert len(a["shapes"]) == 6 and all(s["id"] is None for s in a["shapes"])


def test_drawing_moves_strokes_and_raises_the_similarity(tiny_clip):
    losses = []
    result = draw(tiny_clip, "a cat", paths=8, iters=12, size=64, seed=0, negatives=["a dog"],
                  callback=lambda p: losses.append(p.loss))
    start = Scene(width=64, height=64, background=(1.0, 1.0, 1.0, 1.0))
    start.shapes = random_strokes(8, 64, 64, torch.Generator().manual_seed(0))
    assert not torch.allclose(all_points(result.scene), all_points(start))
    assert result.loss == losses[-1]
    # the fair measure: the start and the result judged on the same fixed copies
    loss = ClipLoss(tiny_clip, ["a cat"], ["a dog"])
    sim = result.similarity
    for when, scene in (("start", start), ("end", result.scene)):
        target, (negative,) = loss.similarity(picture(scene))
        assert sim[when] == pytest.approx(target, abs=1e-6)
        assert sim["negatives"][0][when] == pytest.approx(negative, abs=1e-6)
    assert sim["end"] > sim["start"] and sim["negatives"][0]["prompt"] == "a dog"


def test_zero_iterations_measure_the_same_similarity_twice(tiny_clip):
    sim = draw(tiny_clip, "a cat", sketch(), iters=0).similarity
    assert sim["start"] == sim["end"] and sim["negatives"] == []


def test_refinement_keeps_ids_and_order_and_adds_new_strokes(tiny_clip):
    result = draw(tiny_clip, "a cat", sketch(), paths=3, iters=2, seed=0)
    ids = [s.id for s in result.scene.shapes]
    assert ids == ["a", "b", "c", None, None, None]
    assert result.scene.shapes[2].fill is not None and result.scene.shapes[2].subpaths[0].closed


def test_locked_tensors_stay_bit_identical():
    before = sketch()
    grey = lambda image: (image - 0.5).square().mean()  # noqa: E731 - moves points, widths and colours
    for lock in (["points"], ["widths"], ["colors"], ["points", "widths", "colors"]):
        after = optimize(sketch(), grey, iters=4, lock=lock).scene
        for s0, s1 in zip(before.shapes, after.shapes):
            same = {
                "points": all(torch.equal(a.points, b.points) for a, b in zip(s0.subpaths, s1.subpaths)),
                "widths": torch.equal(s0.stroke_width, s1.stroke_width) or s0.stroke is None,
                "colors": all(torch.equal(a, b) for a, b in ((s0.stroke, s1.stroke), (s0.fill, s1.fill))
                              if a is not None),
            }
            for k in lock:
                assert same[k], (lock, k)
        if lock == ["widths"]:  # what is not locked does move
            assert not torch.equal(all_points(before), all_points(after))
            assert not torch.equal(before.shapes[0].stroke, after.shapes[0].stroke)
        if lock == ["colors"]:
            assert not torch.equal(before.shapes[0].stroke_width, after.shapes[0].stroke_width)


def test_draw_passes_locks_through(tiny_clip):
    after = draw(tiny_clip, "a cat", sketch(), paths=2, iters=2, lock=["colors", "points"], seed=1).scene
    for s0, s1 in zip(sketch().shapes + [None, None], after.shapes):
        if s0 is not None:
            assert torch.equal(s0.subpaths[0].points, s1.subpaths[0].points)
            assert torch.equal(s0.stroke if s0.stroke is not None else s0.fill,
                               s1.stroke if s1.stroke is not None else s1.fill)


def test_higher_fidelity_keeps_points_closer(tiny_clip):
    """A loss that drags every point to the right; fidelity pulls them back to the sketch."""
    drift = {}
    for fidelity in (0.0, 1.0, 100.0):
        scene = sketch()
        start = all_points(scene).clone()
        wants_right = lambda image: -(all_points(scene)[:, 0].mean()) / 64  # noqa: E731
        optimize(scene, wants_right, iters=15, fidelity=fidelity, lock=["widths", "colors"])
        drift[fidelity] = float((all_points(scene) - start).norm(dim=-1).mean())
    assert drift[0.0] > drift[1.0] > drift[100.0]
    assert drift[100.0] < 0.5 * drift[0.0]


def test_new_strokes_are_not_pulled(tiny_clip):
    scene = sketch()
    scene.shapes += random_strokes(2, 64, 64, torch.Generator().manual_seed(0))
    start = all_points(scene).clone()
    n_given = sum(sp.points.shape[0] for s in scene.shapes[:3] for sp in s.subpaths)
    wants_right = lambda image: -(all_points(scene)[:, 0].mean()) / 64  # noqa: E731
    optimize(scene, wants_right, iters=10, fidelity=10.0, anchored=3, lock=["widths", "colors"])
    moved = (all_points(scene) - start).norm(dim=-1)
    assert moved[n_given:].mean() > 5 * moved[:n_given].mean()


def test_time_in_the_callback_counts_against_the_time_limit():
    """What the callback does (--show-labels, frames) is part of the run's time."""
    import time

    slow = lambda p: time.sleep(0.3)  # noqa: E731
    result = optimize(sketch(), lambda image: image.mean(), iters=1000, time_limit=1.0, callback=slow)
    assert 1 <= result.iterations <= 4  # each iteration takes 0.3 s at least: 1 s holds 4 at most


def test_time_limit_stops_early_and_runs_the_schedule(tiny_clip):
    seen = []
    result = draw(tiny_clip, "a cat", paths=4, iters=100000, size=64, time_limit=1.0,
                  callback=lambda p: seen.append(p))
    assert 1 <= result.iterations < 100000
    assert seen[-1].elapsed < 1.0 + 5.0  # one iteration past the budget at most
    assert seen[-1].time_limit == 1.0


def test_trace_fits_a_synthetic_image():
    """L2 tracing exercises render + gradients + optimizer without any CLIP weights."""
    h = w = 48
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    target = torch.ones(h, w, 3)
    disk = ((xs - 16) ** 2 + (ys - 18) ** 2 < 64)[..., None]
    target = torch.where(disk, torch.tensor([1.0, 0.1, 0.1]), target)
    bar = ((ys - 36).abs() < 2.5) & (xs > 8) & (xs < 40)
    target = torch.where(bar[..., None], torch.tensor([0.1, 0.1, 0.9]), target)
    losses = []
    result = trace(target, paths=8, fills=4, iters=60, seed=0, callback=lambda p: losses.append(p.loss))
    final = float(l2_loss(target)(render(result.scene, w, h)).detach())
    assert final < 0.25 * losses[0], (losses[0], final)


def test_big_canvases_render_at_a_working_size(tiny_clip):
    """A document-sized canvas is rendered at most at twice CLIP's input; coordinates stay the canvas's."""
    sizes = []
    big = sketch(64)
    big.width = big.height = 1000
    result = draw(tiny_clip, "a cat", big, paths=2, iters=1, callback=lambda p: sizes.append(p.image.shape))
    assert sizes == [(448, 448, 3)]
    assert result.scene.width == 1000
    starts = torch.stack([s.subpaths[0].points[0] for s in result.scene.shapes[3:]])
    assert starts.max() > 64  # new strokes are spread over the whole 1000 px canvas


def test_trace_can_add_a_clip_term(tiny_clip):
    target = torch.ones(32, 32, 3)
    target[8:24, 8:24] = torch.tensor([0.2, 0.3, 0.9])
    plain = trace(target, paths=2, fills=2, iters=3, seed=0)
    guided = trace(target, paths=2, fills=2, iters=3, seed=0, clip=tiny_clip, prompt="a blue square",
                   clip_weight=1.0)
    # same start, and the CLIP term (a cosine, about -0.1..0.1 here) shifts the loss; 3 iterations
    # because Adam's first step is lr x sign(gradient), which a small term rarely flips
    assert guided.loss != plain.loss
    assert not torch.equal(all_points(guided.scene), all_points(plain.scene))


def test_widths_clamp_at_2px_but_hairlines_may_stay_thin():
    for size in (224, 448):
        scene = sketch(size)
        scene.shapes[0].stroke_width = torch.tensor(0.5)
        scene.shapes[1].stroke_width = torch.tensor(2.5 * size / 224)
        thin = lambda image: -image.mean()  # noqa: E731 - less ink is better: widths shrink
        result = optimize(scene, thin, iters=6, max_width=4.0, lock=["points", "colors"]).scene
        floor = 2.0 * size / 224  # CLIPDraw's 1.0 half width at 224, scaled with the canvas
        assert 0.5 <= float(result.shapes[0].stroke_width) < 0.5 + 1e-6  # it only wants thinner
        assert float(result.shapes[1].stroke_width) == floor


def strokes_scene(size):
    """Two semi-transparent strokes, 3 and 4 px wide at 224, everything scaled to a size x size canvas."""
    k = size / 224
    s = Scene(width=size, height=size)
    s.shapes = [
        make_shape([Subpath(k * torch.tensor([[30., 40], [70, 150], [120, 160], [180, 60]]))],
                   stroke=[0.5, 0.4, 0.3, 0.5], stroke_width=3 * k),
        make_shape([Subpath(k * torch.tensor([[40., 190], [90, 120], [150, 210], [200, 170],
                                               [190, 120], [170, 90], [150, 30]]))],
                   stroke=[0.2, 0.5, 0.7, 0.5], stroke_width=4 * k),
    ]
    return s


def test_one_iteration_moves_every_parameter_by_clipdraws_step():
    """Adam's first step is lr x sign(gradient): points 1.0 px, widths 0.2 px at 224, twice at 448;
    colours 0.01. The result is that moved iterate, not the start."""
    # darker is better: every parameter has a gradient, big enough that Adam's eps does not matter
    ink = lambda image: image.sum()  # noqa: E731
    for size in (224, 448):
        start = strokes_scene(size)
        result = optimize(strokes_scene(size), ink, iters=1)
        assert result.iterations == 1
        moved = (all_points(result.scene) - all_points(start)).abs()
        assert torch.allclose(moved, torch.full_like(moved, size / 224), atol=1e-3), (size, moved)
        for s0, s1 in zip(start.shapes, result.scene.shapes):
            assert abs(float(s1.stroke_width - s0.stroke_width) - 0.2 * size / 224) < 1e-4
            assert torch.allclose((s1.stroke - s0.stroke).abs(), torch.full((4,), 0.01), atol=1e-5)


def test_one_clip_iteration_moves_a_refined_sketch(tiny_clip):
    """The noisy first loss is no reason to hand the sketch back: one step of draw moves it."""
    start = strokes_scene(224)
    result = draw(tiny_clip, "a cat", strokes_scene(224), iters=1, seed=0).scene
    moved = (all_points(result) - all_points(start)).abs()
    assert ((moved - 1.0).abs() < 0.05).all(), moved
    assert all(not torch.equal(a.stroke if a.stroke is not None else a.fill,
                               b.stroke if b.stroke is not None else b.fill)
               for a, b in zip(start.shapes, result.shapes))


def test_a_callback_can_stop_the_run():
    result = optimize(sketch(), lambda image: image.mean(), iters=50, callback=lambda p: p.iteration == 3)
    assert result.iterations == 3 and result.stopped
    assert not optimize(sketch(), lambda image: image.mean(), iters=3, callback=lambda p: p.iteration == 3).stopped


def test_alpha_max_caps_alpha_and_fixed_paints_keep_their_colour():
    """A document's group opacity caps the alpha; a gradient's stand-in colour does not move,
    while the same shape's other paint, points and width still do."""
    scene = sketch()
    a, b, c = scene.shapes
    a.alpha_max = 0.4
    a.stroke = torch.tensor([0.0, 0.0, 0.0, 0.38])
    b.stroke = torch.tensor([0.8, 0.1, 0.1, 0.38])
    c.fixed_paints = ["fill"]
    c.stroke, c.stroke_width = torch.tensor([0.2, 0.2, 0.2, 0.5]), torch.tensor(2.0)
    fill0 = c.fill.clone()

    def loss_fn(image):
        return image.mean() * 1e3  # darker is better: alphas and ink push up

    result = optimize(scene, loss_fn, iters=6, max_width=5.0)
    a, b, c = result.scene.shapes
    assert float(a.stroke[3]) <= 0.4 + 1e-7 and float(b.stroke[3]) > 0.4  # b has no cap
    assert torch.equal(c.fill, fill0)
    assert float(c.stroke[3]) > 0.5 and float(c.stroke_width) > 2.0
