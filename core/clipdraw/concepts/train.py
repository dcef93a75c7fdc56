"""Train the concept model and the judge: `python -m clipdraw.concepts.train [--out DIR]`.

Deterministic: seeded data, seeded initialisation, one CPU thread; about 20 minutes for the model
and 18 for the judge on one thread of a busy 2-core machine (`--only` trains one of the two).
Writes into DIR (default tests/data/concept):
- clipdraw-concept.json         an open_clip model config (load with --model FILE)
- clipdraw-concept.safetensors  its weights in fp16 (--pretrained FILE)
- judge.safetensors             the judge's weights (clipdraw.concepts.judge.Judge.load)

The concept model is a small CLIP: timm's `test_resnet` (a 0.4M-parameter ResNet, random init)
on 64 px inputs, average-pooled, as the image tower, and a 2-layer text tower. (Small ViTs with
average pooling and fixed sin-cos positions, at 112 px with 16 px patches and at 64 px with 8 px
patches, stayed at colour only here for 1100 and 200 steps; the ResNet's loss fell below that plateau
within 150.)
Each step scores a batch of drawings, augmented as CLIPDraw augments its renders, against the
captions of all 25 concepts under a random template ("a drawing of a red circle", "a red
circle", ...), of the 5 shapes ("a drawing of a circle") and of the 5 colours ("a red drawing"):
a softmax over each of the three sets. The judge, a small CNN, learns shape and colour from
other drawings (another seed) and never sees the concept model.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from . import COLOURS, SHAPES, caption, concepts
from .synth import dataset

NAME = "clipdraw-concept"
CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"timm_model_name": "test_resnet", "timm_model_pretrained": False, "timm_pool": "avg",
                   "timm_proj": "linear", "image_size": 64},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2,
                 "mlp_ratio": 2.0},
}
TEMPLATES = ("a drawing of a {}", "a {}", "{}", "a sketch of a {}", "a picture of a {}",
             "a drawing of a {}.", "a simple drawing of a {}")
COLOUR_TEMPLATES = ("a {} drawing", "something {}", "a drawing in {}", "{}")


def augmented(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, size, size]: CLIPDraw's augmentation (perspective and
    crop, one random draw per image), the same grid clipdraw.guidance applies to renders."""
    from ..guidance import augment_grid

    b, h, w, _ = images.shape
    x = images.permute(0, 3, 1, 2).float() / 255
    grid = augment_grid(b, h, w, size, generator)
    return F.grid_sample(x - 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + 1


def caption_sets(template: str, colour_template: str) -> list[str]:
    """25 concept captions, then 5 shape captions, then 5 colour captions."""
    return ([caption(s, c, template) for s, c in concepts()] + [template.format(s) for s in SHAPES]
            + [colour_template.format(c) for c in COLOURS])


def descend(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
    """One optimiser step on `loss` at learning rate `lr`."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def train_clip(images, labels, steps: int, batch: int, seed: int, log) -> torch.nn.Module:
    import open_clip

    torch.manual_seed(seed)
    model = open_clip.create_model(NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(NAME)
    generator = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    n_concepts, n_shapes = len(SHAPES) * len(COLOURS), len(SHAPES)
    size = CONFIG["vision_cfg"]["image_size"]
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=generator)
        x = augmented(images[idx], size, generator)  # [B, 3, S, S]
        shape, colour = labels[idx, 0], labels[idx, 1]
        t = TEMPLATES[int(torch.randint(len(TEMPLATES), (), generator=generator))]
        ct = COLOUR_TEMPLATES[int(torch.randint(len(COLOUR_TEMPLATES), (), generator=generator))]
        f = F.normalize(model.encode_image((x - mean) / std), dim=-1)  # [B, D]
        text = F.normalize(model.encode_text(tokenizer(caption_sets(t, ct))), dim=-1)  # [35, D]
        logits = model.logit_scale.exp().clamp(max=100) * f @ text.T  # [B, 35]
        loss = (F.cross_entropy(logits[:, :n_concepts], shape * len(COLOURS) + colour)
                + 0.5 * F.cross_entropy(logits[:, n_concepts:n_concepts + n_shapes], shape)
                + 0.5 * F.cross_entropy(logits[:, n_concepts + n_shapes:], colour))
        warmup = min(1.0, (step + 1) / 200)
        descend(opt, loss, 1e-3 * warmup * 0.5 * (1 + math.cos(math.pi * step / steps)))
        if step % 50 == 0 or step == steps - 1:
            log(f"concept model step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:.0f} s")
    return model.eval()


def train_judge(images, labels, steps: int, batch: int, seed: int, log) -> torch.nn.Module:
    from .judge import INPUT, Judge

    torch.manual_seed(seed)
    judge = Judge()
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(judge.parameters(), lr=2e-3, weight_decay=1e-4)
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(len(images), (batch,), generator=generator)
        x = augmented(images[idx], INPUT, generator)
        flip = torch.rand(batch, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        shape, colour = judge(x)
        loss = F.cross_entropy(shape, labels[idx, 0]) + F.cross_entropy(colour, labels[idx, 1])
        descend(opt, loss, 2e-3 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        if step % 50 == 0 or step == steps - 1:
            log(f"judge step {step:5d}  loss {loss.item():.3f}  {time.perf_counter() - start:.0f} s")
    return judge.eval()


@torch.no_grad()
def clip_accuracy(model, images, labels) -> tuple[float, float, float]:
    """Zero-shot accuracy of the concept model on whole drawings: (shape, colour, both)."""
    import open_clip

    tokenizer = open_clip.get_tokenizer(NAME)
    text = F.normalize(model.encode_text(tokenizer(caption_sets(TEMPLATES[0], COLOUR_TEMPLATES[0]))), dim=-1)
    size = CONFIG["vision_cfg"]["image_size"]
    x = F.interpolate(images.permute(0, 3, 1, 2).float() / 255, size=(size, size), mode="bilinear",
                      antialias=True, align_corners=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    f = F.normalize(model.encode_image((x - mean) / std), dim=-1)
    guess = (f @ text[:len(SHAPES) * len(COLOURS)].T).argmax(-1)
    shape_ok = guess // len(COLOURS) == labels[:, 0]
    colour_ok = guess % len(COLOURS) == labels[:, 1]
    return shape_ok.float().mean().item(), colour_ok.float().mean().item(), (shape_ok & colour_ok).float().mean().item()


@torch.no_grad()
def judge_accuracy(judge, images, labels) -> tuple[float, float, float]:
    shape, colour = judge.grade(images.float() / 255)
    shape_ok, colour_ok = shape.argmax(-1) == labels[:, 0], colour.argmax(-1) == labels[:, 1]
    return shape_ok.float().mean().item(), colour_ok.float().mean().item(), (shape_ok & colour_ok).float().mean().item()


def save_clip(model, out: Path, tokens_seen: torch.Tensor) -> None:
    from safetensors.torch import save_file

    state = {k: (v.half() if v.is_floating_point() else v).detach().contiguous()
             for k, v in model.state_dict().items()}
    # Rows of tokens no caption contains kept their random init; zeroed, the file compresses well.
    state["token_embedding.weight"][~tokens_seen] = 0
    save_file(state, str(out / f"{NAME}.safetensors"))
    (out / f"{NAME}.json").write_text(json.dumps(CONFIG, indent=1) + "\n", encoding="utf-8")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m clipdraw.concepts.train", description=__doc__.split("\n")[0])
    p.add_argument("--out", default="tests/data/concept", help="folder for the model and judge files")
    p.add_argument("--only", choices=["model", "judge"], help="train just one of the two (default both)")
    p.add_argument("--drawings", type=int, default=6000, help="training drawings for each of the two")
    p.add_argument("--clip-steps", type=int, default=1000)
    p.add_argument("--judge-steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    import open_clip
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = out / f"{NAME}.json"
    config.write_text(json.dumps(CONFIG, indent=1) + "\n", encoding="utf-8")
    open_clip.add_model_config(config)
    log = lambda s: print(s, flush=True)  # noqa: E731
    start = time.perf_counter()
    test_images, test_labels = dataset(500, seed=args.seed + 3)

    if args.only in (None, "model"):
        images, labels = dataset(args.drawings, seed=args.seed + 1)
        log(f"rendered {args.drawings} drawings for the model in {time.perf_counter() - start:.0f} s")
        model = train_clip(images, labels, args.clip_steps, args.batch, args.seed, log)
        tokenizer = open_clip.get_tokenizer(NAME)
        every = [caption_sets(t, c) for t in TEMPLATES for c in COLOUR_TEMPLATES]
        seen = torch.zeros(CONFIG["text_cfg"]["vocab_size"], dtype=torch.bool)
        seen[tokenizer(sum(every, [])).unique()] = True
        save_clip(model, out, seen)
        log("held-out drawings, concept model zero-shot (shape, colour, both): %.3f %.3f %.3f"
            % clip_accuracy(model, test_images, test_labels))
    if args.only in (None, "judge"):
        images, labels = dataset(args.drawings, seed=args.seed + 2)  # other drawings than the model's
        judge = train_judge(images, labels, args.judge_steps, args.batch, args.seed, log)
        save_file({k: v.detach().contiguous() for k, v in judge.state_dict().items()}, str(out / "judge.safetensors"))
        log("held-out drawings, judge (shape, colour, both): %.3f %.3f %.3f"
            % judge_accuracy(judge, test_images, test_labels))
    log(f"wrote {out}/ in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
