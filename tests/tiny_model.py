"""Small random-weight CLIP models for tests, loaded the way a user loads real ones.

    from tiny_model import make_tiny_model
    model_spec, checkpoint = make_tiny_model(tmp_path)
    # CLI:    clipdraw draw "a cat" --model MODEL_SPEC --pretrained CHECKPOINT ...
    # engine: {"model": model_spec, "pretrained": checkpoint, ...} or the environment
    #         CLIPDRAW_MODEL=model_spec CLIPDRAW_PRETRAINED=checkpoint (works in subprocesses)

`model_spec` is the path (str) of an open_clip model config JSON (`--model` accepts such a path; the
model's name is the file's stem) and `checkpoint` the path (str) of its weights, a plain state dict
saved with torch.save. The model is a ViT with 64-wide, 2-layer towers, patch 32, input 224, the
standard tokenizer (vocab 49408, context 77) and 64-d embeddings: it loads and runs a forward +
backward in well under a second on a CPU. Weights are random but fixed by `seed`, so the same call
gives the same file.
"""
from __future__ import annotations

import json
from pathlib import Path

TINY_NAME = "clipdraw-tiny"
TINY_CONFIG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "patch_size": 32, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def make_tiny_model(directory, seed: int = 0) -> tuple[str, str]:
    """Write clipdraw-tiny.json and clipdraw-tiny.pt into `directory`; return (model_spec, checkpoint)."""
    import open_clip
    import torch

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / f"{TINY_NAME}.json"
    checkpoint = directory / f"{TINY_NAME}.pt"
    if not (config.exists() and checkpoint.exists()):
        config.write_text(json.dumps(TINY_CONFIG, indent=1), encoding="utf-8")
        open_clip.add_model_config(config)
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_NAME, pretrained=None)
        torch.save(model.state_dict(), checkpoint)
    return str(config), str(checkpoint)


def make_random_vit_b32(directory, seed: int = 0) -> tuple[str, str]:
    """OpenAI's ViT-B/32 architecture (`ViT-B-32-quickgelu`) with random weights saved in fp16
    (about 300 MB) to `directory`; return (model name, checkpoint path)."""
    import open_clip
    import torch

    checkpoint = Path(directory) / "vit-b-32-random.pt"
    if not checkpoint.exists():
        torch.manual_seed(seed)
        model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
        torch.save({k: v.half() for k, v in model.state_dict().items()}, checkpoint)
    return "ViT-B-32-quickgelu", str(checkpoint)
