"""The CLIP image tower's forward as CLIPDraw needs it: cheap to differentiate w.r.t. the image.

open_clip's VisionTransformer feeds its linears 3-D activations [B, N, D]; their input gradients
then run as a batched matmul against an expanded weight (and in bf16 a strided copy on top), which
makes the backward three times the forward on a CPU. Here the same weights, taken from the loaded
open_clip model (open_clip stays the loader), run through linears on 2-D activations (batch and
tokens folded, [B*N, D]), F.scaled_dot_product_attention, and a patch embedding that is a plain
matmul over non-overlapping patches (its backward is one matmul too). Weights may be held in bf16
or fp16 (the residual stream, layer norms and the output stay fp32).

Served: open_clip's VisionTransformer with standard blocks (nn.MultiheadAttention), GELU or
QuickGELU, optional LayerScale, ln_pre or none, token or average pooling, ln_post before or after
pooling, with or without a projection. Anything else (ResNets, timm towers such as MobileCLIP,
attentional poolers, custom attention blocks) gets None from `fast_image_tower` and is run by
open_clip's own forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class _Block:
    """One residual attention block's weights ([out, in] matrices, as F.linear takes them)."""

    ln_1: tuple  # (weight, bias, eps) of the pre-attention layer norm, fp32
    qkv_w: torch.Tensor  # [3D, D]
    qkv_b: torch.Tensor  # [3D]
    out_w: torch.Tensor  # [D, D]
    out_b: torch.Tensor  # [D]
    ls_1: Optional[torch.Tensor]  # [D] LayerScale or None
    ln_2: tuple
    fc_w: torch.Tensor  # [M, D]
    fc_b: torch.Tensor  # [M]
    proj_w: torch.Tensor  # [D, M]
    proj_b: torch.Tensor  # [D]
    ls_2: Optional[torch.Tensor]


def _norm(ln: nn.Module) -> Optional[tuple]:
    if isinstance(ln, nn.Identity):
        return None
    return (ln.weight.detach().float(), ln.bias.detach().float(), ln.eps)


def _activation(module: nn.Module) -> Optional[str]:
    if type(module).__name__ == "QuickGELU":
        return "quickgelu"
    if type(module) is nn.GELU:
        return "gelu_" + module.approximate  # gelu_none | gelu_tanh
    return None


def unserved_reason(visual: nn.Module) -> Optional[str]:
    """Why `fast_image_tower` cannot run this image tower (None if it can)."""
    from open_clip.transformer import LayerNorm, LayerNormFp32, ResidualAttentionBlock, VisionTransformer

    if type(visual) is not VisionTransformer:
        return f"{type(visual).__name__} is not open_clip's VisionTransformer"
    if visual.attn_pool is not None:
        return "attentional pooling"
    if visual.output_tokens:
        return "output_tokens"
    if visual.pool_type not in ("tok", "avg"):
        return f"pool_type {visual.pool_type!r}"
    if not isinstance(visual.patch_dropout, nn.Identity):
        return "patch dropout"
    if visual.conv1.bias is not None or visual.conv1.kernel_size != visual.conv1.stride:
        return "a patch embedding that is not a plain non-overlapping projection"
    norms = [visual.ln_pre, visual.ln_post]
    for block in visual.transformer.resblocks:
        if type(block) is not ResidualAttentionBlock or hasattr(block, "ln_1_kv"):
            return f"{type(block).__name__} blocks"
        attn = block.attn
        if not attn._qkv_same_embed_dim or attn.in_proj_bias is None or attn.bias_k is not None \
                or attn.add_zero_attn or attn.dropout:
            return "a non-standard attention layer"
        if _activation(block.mlp.gelu) is None:
            return f"activation {type(block.mlp.gelu).__name__}"
        if list(block.mlp._modules) != ["c_fc", "gelu", "c_proj"]:
            return "a non-standard MLP"
        norms += [block.ln_1, block.ln_2]
    for ln in norms:
        if not isinstance(ln, nn.Identity) and type(ln) not in (LayerNorm, LayerNormFp32, nn.LayerNorm):
            return f"norm layer {type(ln).__name__}"
    return None


class FastImageTower:
    """images [B, 3, S, S] (already normalised) -> image features [B, E] in fp32, the same function
    as open_clip's `visual(images)` for the architectures listed in the module docstring.

    dtype: what the linear and attention weights (and their inputs) are held in: float32, or
    bfloat16 / float16 where the hardware runs those fast."""

    def __init__(self, visual: nn.Module, dtype: torch.dtype = torch.float32):
        reason = unserved_reason(visual)
        if reason is not None:
            raise ValueError(f"the fast image tower does not serve {reason}")
        cast = lambda t: t.detach().to(dtype).contiguous()  # noqa: E731
        self.dtype = dtype
        conv = visual.conv1.weight  # [D, 3, p, p]
        self.patch = conv.shape[-1]
        self.patch_w = cast(conv.reshape(conv.shape[0], -1))  # [D, 3*p*p]
        self.class_embedding = visual.class_embedding.detach().float()  # [D]
        self.positional_embedding = visual.positional_embedding.detach().float()  # [N, D]
        self.ln_pre = _norm(visual.ln_pre)
        self.ln_post = _norm(visual.ln_post)
        self.pool = visual.pool_type
        self.ln_after_pool = visual.final_ln_after_pool
        self.proj = None if visual.proj is None else visual.proj.detach().float()  # [D, E]
        self.heads = visual.transformer.resblocks[0].attn.num_heads
        self.activation = _activation(visual.transformer.resblocks[0].mlp.gelu)
        # QuickGELU(h) = h * sigmoid(1.702 h) = silu(1.702 h) / 1.702: one fused op instead of three
        # on the widest activations, with 1.702 folded into the small tensors around it (ln_2's
        # affine and c_fc's bias before, c_proj's bias and the output scale after).
        k = 1.702 if self.activation == "quickgelu" else 1.0
        self.blocks = []
        for b in visual.transformer.resblocks:
            if _activation(b.mlp.gelu) != self.activation:
                raise ValueError("the fast image tower needs one activation for all blocks")
            gamma = lambda ls: None if isinstance(ls, nn.Identity) else ls.gamma.detach().float()  # noqa: E731
            w2, b2, eps2 = _norm(b.ln_2)
            ls_2 = gamma(b.ls_2)
            if k != 1.0:
                ls_2 = torch.tensor(1 / k) if ls_2 is None else ls_2 / k
            self.blocks.append(_Block(
                _norm(b.ln_1), cast(b.attn.in_proj_weight), cast(b.attn.in_proj_bias),
                cast(b.attn.out_proj.weight), cast(b.attn.out_proj.bias), gamma(b.ls_1),
                (w2 * k, b2 * k, eps2), cast(b.mlp.c_fc.weight), cast(b.mlp.c_fc.bias * k),
                cast(b.mlp.c_proj.weight), cast(b.mlp.c_proj.bias * k), ls_2))

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation == "quickgelu":
            return F.silu(x)  # x is 1.702 h here (see __init__)
        return F.gelu(x, approximate=self.activation[len("gelu_"):])

    def _linear_in(self, x: torch.Tensor, ln: Optional[tuple]) -> torch.Tensor:
        """The fp32 residual stream x [T, D], layer-normed, in the weights' dtype."""
        if ln is not None:
            x = F.layer_norm(x, x.shape[-1:], *ln)
        return x.to(self.dtype)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        p = self.patch
        gh, gw = h // p, w // p
        # Non-overlapping patches as rows: [B*gh*gw, 3*p*p] in the conv weight's (c, i, j) order.
        patches = images[:, :, : gh * p, : gw * p].reshape(b, c, gh, p, gw, p)
        patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c * p * p)
        x = (patches.to(self.dtype) @ self.patch_w.T).float().view(b, gh * gw, -1)  # [B, G, D]
        x = torch.cat([self.class_embedding.expand(b, 1, -1), x], 1) + self.positional_embedding
        n, d = x.shape[1], x.shape[2]
        x = x.reshape(b * n, d)  # [T = B*N, D]: every linear below sees 2-D rows
        if self.ln_pre is not None:
            x = F.layer_norm(x, (d,), *self.ln_pre)
        heads, hd = self.heads, d // self.heads
        for blk in self.blocks:
            qkv = F.linear(self._linear_in(x, blk.ln_1), blk.qkv_w, blk.qkv_b)  # [T, 3D]
            q, k, v = qkv.view(b, n, 3, heads, hd).permute(2, 0, 3, 1, 4)  # each [B, H, N, hd]
            a = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, hd]
            a = a.transpose(1, 2).reshape(b * n, d)
            y = F.linear(a, blk.out_w, blk.out_b).float()  # [T, D]
            x = x + (y * blk.ls_1 if blk.ls_1 is not None else y)
            hidden = self._act(F.linear(self._linear_in(x, blk.ln_2), blk.fc_w, blk.fc_b))  # [T, M]
            y = F.linear(hidden, blk.proj_w, blk.proj_b).float()
            x = x + (y * blk.ls_2 if blk.ls_2 is not None else y)
        x = x.view(b, n, d)
        if self.ln_post is not None and not self.ln_after_pool:
            x = F.layer_norm(x, (d,), *self.ln_post)
        pooled = x[:, 0] if self.pool == "tok" else x[:, 1:].mean(1)  # [B, D]
        if self.ln_post is not None and self.ln_after_pool:
            pooled = F.layer_norm(pooled, (d,), *self.ln_post)
        return pooled if self.proj is None else pooled @ self.proj  # [B, E]


def fast_image_tower(visual: nn.Module, dtype: torch.dtype = torch.float32) -> Optional[FastImageTower]:
    """The efficient path for this open_clip image tower, or None where open_clip's forward must run."""
    return None if unserved_reason(visual) is not None else FastImageTower(visual, dtype)
