"""The efficient image tower (image_tower.py) against open_clip's own forward, and its precision."""
import logging

import pytest
import torch
import torch.nn.functional as F

from clipdraw.image_tower import FastImageTower, fast_image_tower, unserved_reason
from clipdraw.models import load_clip


def vision_tower(name=None, quick_gelu=False, seed=0, cast_dtype=None, **vision_cfg):
    """An open_clip image tower with random weights: a built-in model's, or one from vision_cfg."""
    import open_clip
    from open_clip.model import _build_vision_tower

    torch.manual_seed(seed)
    embed_dim = 64
    if name is not None:
        cfg = open_clip.get_model_config(name)
        embed_dim, vision_cfg, quick_gelu = cfg["embed_dim"], {**cfg["vision_cfg"], **vision_cfg}, cfg.get("quick_gelu", False)
    logging.disable(logging.CRITICAL)
    try:
        visual = _build_vision_tower(embed_dim, vision_cfg, quick_gelu=quick_gelu, cast_dtype=cast_dtype)
    finally:
        logging.disable(logging.NOTSET)
    # Random LayerNorm / LayerScale parameters too, so that a skipped or misplaced one shows.
    with torch.no_grad():
        for m in visual.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
            if hasattr(m, "gamma"):
                m.gamma.uniform_(0.5, 1.5)
    return visual.eval().requires_grad_(False)


def output_and_image_gradient(tower, images, direction):
    """tower(images) [B, E] and d(sum(features @ direction))/d images [B, 3, S, S]."""
    x = images.clone().requires_grad_()
    f = tower(x).float()
    (f @ direction).sum().backward()
    return f.detach(), x.grad


SMALL = dict(image_size=64, layers=2, width=64, head_width=32, patch_size=16)
SERVED = {
    # open_clip's own configurations (their full towers, random weights)
    "ViT-B-32": dict(name="ViT-B-32"),
    "ViT-B-32-quickgelu": dict(name="ViT-B-32-quickgelu"),
    "ViT-B-16": dict(name="ViT-B-16", layers=3),  # 12 layers as 3: the same blocks, a faster test
    "ViT-S-32": dict(name="ViT-S-32"),
    "ViT-S-16": dict(name="ViT-S-16", layers=3),
    # the variants open_clip's VisionTransformer has
    "quickgelu": dict(quick_gelu=True, **SMALL),
    "gelu, average pooling": dict(pool_type="avg", **SMALL),
    "norm after pooling": dict(final_ln_after_pool=True, **SMALL),
    "no ln_pre, LayerScale": dict(no_ln_pre=True, ls_init_value=0.5, **SMALL),
    "sin-cos positions, tanh GELU": dict(pos_embed_type="sin_cos_2d", act_kwargs={"approximate": "tanh"}, **SMALL),
    "LayerNormFp32 (models cast to bf16)": dict(cast_dtype=torch.bfloat16, **SMALL),
}


@pytest.mark.parametrize("case", SERVED)
def test_fast_tower_is_open_clips_forward_in_fp32_and_close_in_bf16(case):
    visual = vision_tower(**SERVED[case])
    assert unserved_reason(visual) is None
    size = visual.image_size[0]
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 3, size, size, generator=g)
    direction = torch.randn(visual.output_dim, generator=g)
    want, want_grad = output_and_image_gradient(visual, images, direction)
    got, got_grad = output_and_image_gradient(FastImageTower(visual), images, direction)
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert (got - want).abs().max() <= 2e-5 * want.abs().max()
    assert (got_grad - want_grad).abs().max() <= 2e-5 * want_grad.abs().max()
    got, got_grad = output_and_image_gradient(FastImageTower(visual, torch.bfloat16), images, direction)
    assert F.cosine_similarity(got, want, dim=-1).min() > 0.999
    assert F.cosine_similarity(got_grad.flatten(), want_grad.flatten(), dim=0) > 0.995


@pytest.mark.parametrize("case, cfg", [
    ("ResNet (RN50)", dict(name="RN50", layers=[1, 1, 1, 1])),
    ("attentional pooler", dict(attentional_pool=True, attn_pooler_queries=4, attn_pooler_heads=2, **SMALL)),
    ("custom attention blocks (qk-norm)", dict(block_type="custom", qk_norm=True, **SMALL)),
])
def test_other_towers_fall_back_to_open_clips_forward(case, cfg):
    visual = vision_tower(**cfg)
    assert unserved_reason(visual) is not None
    assert fast_image_tower(visual) is None
    with pytest.raises(ValueError, match="does not serve"):
        FastImageTower(visual)


def test_timm_towers_such_as_mobileclip_fall_back():
    pytest.importorskip("timm")
    import open_clip

    logging.disable(logging.CRITICAL)
    try:
        model = open_clip.create_model("MobileCLIP-S1")
    finally:
        logging.disable(logging.NOTSET)
    assert "not open_clip's VisionTransformer" in unserved_reason(model.visual)


def test_load_clip_runs_the_fast_tower_and_open_clips_forward_agrees(tiny_model):
    clip = load_clip(*tiny_model, precision="fp32")
    assert isinstance(clip.image_tower, FastImageTower) and clip.dtype == torch.float32
    images = torch.rand(3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    want = F.normalize(clip.model.encode_image((images - clip.mean) / clip.std), dim=-1)
    assert (clip.encode_image(images) - want).abs().max() < 1e-5
    assert load_clip(*tiny_model, precision="fp32") is clip  # cached per precision
    assert load_clip(*tiny_model, precision="bf16").model is clip.model  # one open_clip model


def test_bf16_image_gradients_agree_with_fp32_on_vit_b32(vit_b32_random):
    fp32 = load_clip(*vit_b32_random, precision="fp32")
    bf16 = load_clip(*vit_b32_random, precision="bf16")
    assert bf16.dtype == torch.bfloat16 and bf16.image_tower.patch_w.dtype == torch.bfloat16
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 224, 224, generator=g)  # CLIPDraw's batch: 4 augmented copies
    text = F.normalize(torch.randn(512, generator=g), dim=0)

    def open_clip_forward(x):  # what Clip.encode_image computed before the fast tower
        return F.normalize(fp32.model.encode_image((x - fp32.mean) / fp32.std), dim=-1)

    reference, reference_grad = output_and_image_gradient(open_clip_forward, images, text)
    for clip, least in ((fp32, 0.99999), (bf16, 0.999)):
        f, grad = output_and_image_gradient(clip.encode_image, images, text)
        assert F.cosine_similarity(f, reference, dim=-1).min() > least
        assert F.cosine_similarity(grad.flatten(), reference_grad.flatten(), dim=0) > least
