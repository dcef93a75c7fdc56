"""Time one CLIPDraw iteration and its parts; print the tables quoted in README.md.

    python benchmarks/iteration.py                 # 256 strokes at 224, ViT-B/32, 4 augmentations
    python benchmarks/iteration.py --compile       # also try torch.compile on the image tower
    python benchmarks/iteration.py --threads 1 2   # thread counts to compare

A full iteration is what `clipdraw draw` does per step: render (forward+backward), 4 augmented
copies in one grid_sample, ViT-B/32 image tower forward+backward, loss, Adam step, clamps. It is
timed inside the real loop (clipdraw.optimize.optimize) and compared with the CLIP image tower's
forward+backward alone on the same batch. Weights are random unless --pretrained is given: the
arithmetic, and so the time, is the same. Times are medians over --repeats runs after warm-up.
"""
from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

import torch  # noqa: E402

from clipdraw.guidance import ClipLoss, augment  # noqa: E402
from clipdraw.models import load_clip  # noqa: E402
from clipdraw.optimize import optimize, random_strokes  # noqa: E402
from clipdraw.render import render  # noqa: E402
from clipdraw.scene import Scene  # noqa: E402


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


DEVICE = "cpu"


def make_scene(paths: int, size: int, seed: int = 0) -> Scene:
    scene = Scene(width=size, height=size)
    scene.shapes = random_strokes(paths, size, size, torch.Generator().manual_seed(seed), device=DEVICE)
    return scene


def leaf_tensors(scene: Scene) -> list:
    out = [sp.points for s in scene.shapes for sp in s.subpaths]
    out += [s.stroke_width for s in scene.shapes] + [s.stroke for s in scene.shapes]
    return [t.requires_grad_() for t in out]


def clip_alone(clip, batch: torch.Tensor, autocast=None, visual=None):
    """The image tower's forward + backward to its input, as in the loop (weights frozen)."""
    visual = clip.model.visual if visual is None else visual
    text = clip.encode_text(["a drawing of a cat"])

    def step():
        x = batch.detach().requires_grad_()
        with torch.autocast(DEVICE, dtype=autocast, enabled=autocast is not None):
            f = visual((x - clip.mean) / clip.std)
        f = torch.nn.functional.normalize(f.float(), dim=-1)
        (-(f @ text.T).mean()).backward()

    return step


def loop_time(scene, loss, iters: int, warmup: int) -> tuple[float, list]:
    stamps, losses = [], []

    def callback(p):
        sync()
        stamps.append(time.perf_counter())
        losses.append(p.loss)

    optimize(scene, loss, iters=warmup + iters, max_width=50.0, callback=callback)
    steps = [b - a for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    return statistics.median(steps), losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--augmentations", type=int, default=4)
    ap.add_argument("--model", default="ViT-B-32-quickgelu")
    ap.add_argument("--pretrained", default="none", help="weights file or tag (default: random)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--iters", type=int, default=8, help="timed iterations of the full loop")
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="thread counts to compare")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile)")
    ap.add_argument("--trajectory", type=int, default=10, help="iterations of the fp32 vs bf16 loss check")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device

    default_threads = torch.get_num_threads()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    where = torch.cuda.get_device_name() if DEVICE == "cuda" else DEVICE
    print(f"# {where}; CPU {cpu}, {default_threads} torch threads, torch {torch.__version__}")
    print(f"# {args.paths} strokes at {args.size}x{args.size}, {args.model}, "
          f"{args.augmentations} augmentations\n")
    clip = load_clip(args.model, args.pretrained, DEVICE)
    g = torch.Generator().manual_seed(0)
    scene = make_scene(args.paths, args.size)
    leaves = leaf_tensors(scene)
    image = render(scene, args.size, args.size).detach()  # [H, W, 3] on DEVICE
    batch = augment(image, args.augmentations, clip.image_size, g).detach()

    def render_step():
        render(scene, args.size, args.size).mean().backward()

    def augment_step():
        x = image.clone().requires_grad_()
        augment(x, args.augmentations, clip.image_size, g).mean().backward()

    rows = []
    t_render = median_time(render_step, args.repeats)
    t_aug = median_time(augment_step, args.repeats)
    t_clip = median_time(clip_alone(clip, batch), args.repeats)
    loss = ClipLoss(clip, ["a drawing of a cat"], augmentations=args.augmentations,
                    generator=torch.Generator().manual_seed(0))
    t_full, fp32_losses = loop_time(make_scene(args.paths, args.size), loss, args.iters, warmup=2)
    del leaves

    print("| part (forward + backward)            | ms     |")
    print("|--------------------------------------|--------|")
    print(f"| render, {args.paths} strokes                  | {1e3 * t_render:6.0f} |")
    print(f"| augment, {args.augmentations} copies (one grid_sample)  | {1e3 * t_aug:6.0f} |")
    print(f"| CLIP image tower alone, batch {args.augmentations}      | {1e3 * t_clip:6.0f} |")
    print(f"| full iteration (+ loss, Adam, clamps)| {1e3 * t_full:6.0f} |")
    print(f"\nfull / CLIP alone = {t_full / t_clip:.2f}  (target <= 1.15)\n")

    # ---- making the CLIP part fast on the CPU ----
    print("| CLIP image tower fwd+bwd, batch 4  | ms     | vs fp32 |")
    print("|------------------------------------|--------|---------|")
    print(f"| {f'fp32, {default_threads} threads (default)':34s} | {1e3 * t_clip:6.0f} |   1.00  |")
    for n in args.threads or []:
        if n == default_threads:
            continue
        torch.set_num_threads(n)
        t = median_time(clip_alone(clip, batch), args.repeats)
        rows.append((f"fp32, {n} threads", t))
        torch.set_num_threads(default_threads)
    t_bf16 = median_time(clip_alone(clip, batch, torch.bfloat16), args.repeats)
    rows.append(("bf16 autocast", t_bf16))
    clip.model.visual.to(memory_format=torch.channels_last)
    t_cl = median_time(clip_alone(clip, batch.contiguous(memory_format=torch.channels_last)), args.repeats)
    clip.model.visual.to(memory_format=torch.contiguous_format)
    rows.append(("fp32, channels-last", t_cl))
    if args.compile:
        compiled = torch.compile(clip.model.visual)
        t0 = time.perf_counter()
        clip_alone(clip, batch, visual=compiled)()
        compile_s = time.perf_counter() - t0
        t_comp = median_time(clip_alone(clip, batch, visual=compiled), args.repeats)
        rows.append((f"torch.compile (compile {compile_s:.0f} s)", t_comp))
    for name, t in rows:
        print(f"| {name:34s} | {1e3 * t:6.0f} | {t / t_clip:6.2f}  |")

    if args.trajectory:
        bf16 = ClipLoss(clip, ["a drawing of a cat"], augmentations=args.augmentations,
                        generator=torch.Generator().manual_seed(0), autocast=torch.bfloat16)
        fp32 = ClipLoss(clip, ["a drawing of a cat"], augmentations=args.augmentations,
                        generator=torch.Generator().manual_seed(0))
        _, a = loop_time(make_scene(args.paths, args.size), fp32, args.trajectory, warmup=1)
        _, b = loop_time(make_scene(args.paths, args.size), bf16, args.trajectory, warmup=1)
        print("\nloss trajectory, same seed (fp32 | bf16 autocast):")
        print("  fp32: " + " ".join(f"{v:.4f}" for v in a))
        print("  bf16: " + " ".join(f"{v:.4f}" for v in b))
        print(f"  largest difference: {max(abs(x - y) for x, y in zip(a, b)):.4f}")

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"\npeak memory (max RSS): {peak:.0f} MiB")
    if DEVICE == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"\nhow long a drawing takes here: {t_full:.2f} s per iteration -> 1000 iterations "
          f"(CLIPDraw's full run) in {1000 * t_full / 60:.1f} min; a 60 s budget does "
          f"{int(60 / t_full)} iterations")


if __name__ == "__main__":
    main()
