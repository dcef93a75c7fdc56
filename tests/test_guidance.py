"""Augmentations and the CLIP loss (no renderer needed)."""
import math

import pytest
import torch

from clipdraw.guidance import ClipLoss, augment, augment_grid, label_probabilities


def checker(h=64, w=64):
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([((xs // 8 + ys // 8) % 2).float(), xs / (w - 1), ys / (h - 1)], -1)  # [H, W, 3]




# ---- augmentations --------------------------------------------------------------------------


def test_identity_parameters_give_the_image_back():
    img = checker()
    grid = augment_grid(2, 64, 64, 64, distortion=0.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = torch.nn.functional.grid_sample(img.permute(2, 0, 1)[None].expand(2, -1, -1, -1), grid,
                                          align_corners=False)
    assert torch.allclose(out, img.permute(2, 0, 1).expand(2, -1, -1, -1), atol=1e-4)


def test_augment_is_batched_random_white_filled_and_differentiable():
    img = (checker() * 0.5).requires_grad_()  # nothing in the image is white
    g = torch.Generator().manual_seed(0)
    out = augment(img, 4, 224, g)
    assert out.shape == (4, 3, 224, 224)
    # perspective pulls the corners in: the fill shows at the borders
    assert (out[:, :, 0, 0] > 0.99).any()
    assert not torch.allclose(out[0], out[1])  # each copy has its own parameters
    out.mean().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    again = augment(img.detach(), 4, 224, torch.Generator().manual_seed(0))
    assert torch.equal(again, out.detach())  # the generator decides


def test_augment_shrinks_big_renders_before_sampling():
    img = checker(512, 512)
    out = augment(img, 2, 224, torch.Generator().manual_seed(1))
    assert out.shape == (2, 3, 224, 224)
    assert out.min() >= -1e-5 and out.max() <= 1 + 1e-5


# ---- loss -----------------------------------------------------------------------------------


def test_clip_loss_is_minus_the_mean_cosine(tiny_clip):
    img = checker().requires_grad_()
    g = torch.Generator().manual_seed(3)
    loss = ClipLoss(tiny_clip, ["a cat"], augmentations=4, generator=g)(img)
    copies = augment(img.detach(), 4, 224, torch.Generator().manual_seed(3))
    f = tiny_clip.encode_image(copies)
    want = -(f @ tiny_clip.encode_text(["a cat"]).T).mean()
    assert torch.allclose(loss, want, atol=1e-5)
    loss.backward()
    assert img.grad.abs().sum() > 0


def test_negatives_add_their_weighted_similarity(tiny_clip):
    img = checker()
    plain = ClipLoss(tiny_clip, ["a cat"], generator=torch.Generator().manual_seed(5))(img)
    neg = ClipLoss(tiny_clip, ["a cat"], ["a dog"], 0.3, generator=torch.Generator().manual_seed(5))(img)
    copies = augment(img, 4, 224, torch.Generator().manual_seed(5))
    sim = (tiny_clip.encode_image(copies) @ tiny_clip.encode_text(["a dog"]).T).mean()
    assert torch.allclose(neg - plain, 0.3 * sim, atol=1e-5)


def test_each_negative_counts_in_full(tiny_clip):
    """CLIPDraw sums the negatives: [N, N] at 0.3 is [N] at 0.6, and a second negative adds its own."""
    img = checker()

    def loss(negatives, weight):
        return ClipLoss(tiny_clip, ["a cat"], negatives, weight, generator=torch.Generator().manual_seed(5))(img)

    assert torch.allclose(loss(["a dog", "a dog"], 0.3), loss(["a dog"], 0.6), atol=1e-6)
    both = loss(["a dog", "a blurry photo"], 0.3)
    parts = loss(["a dog"], 0.3) + loss(["a blurry photo"], 0.3) - loss([], 0.3)
    assert torch.allclose(both, parts, atol=1e-6)


def test_similarity_judges_every_image_on_the_same_copies(tiny_clip):
    """The fair measure: a fixed set of augmentations, whatever the loss's generator has drawn."""
    img, other = checker(), checker().flip(0)
    loss = ClipLoss(tiny_clip, ["a cat"], ["a dog", "a blurry photo"], generator=torch.Generator().manual_seed(1))
    first = loss.similarity(img)
    loss(img)  # the loss's own random copies move on; the measure's do not
    assert loss.similarity(img) == first
    copies = augment(img, 16, 224, torch.Generator().manual_seed(0))
    f = tiny_clip.encode_image(copies)
    assert first[0] == pytest.approx(float((f @ tiny_clip.encode_text(["a cat"]).T).mean()), abs=1e-6)
    want = (f @ tiny_clip.encode_text(["a dog", "a blurry photo"]).T).mean(0)
    assert first[1] == pytest.approx(want.tolist(), abs=1e-6)
    assert loss.similarity(other) != first


def test_image_prompt_pulls_toward_its_own_embedding(tiny_clip):
    img = checker()
    loss = ClipLoss(tiny_clip, image_prompts=[img], augmentations=2,
                    generator=torch.Generator().manual_seed(0))
    other = torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(9))
    assert loss(img) < loss(other)  # the prompt image itself matches best
    with pytest.raises(ValueError):
        ClipLoss(tiny_clip)


def test_label_probabilities_are_a_sorted_softmax(tiny_clip):
    labels = ["cat", "dog", "stitch"]
    ranked = label_probabilities(tiny_clip, checker(), labels)
    assert sorted(l for l, _ in ranked) == sorted(labels)
    ps = [p for _, p in ranked]
    assert ps == sorted(ps, reverse=True) and math.isclose(sum(ps), 1.0, rel_tol=1e-5)
    f = tiny_clip.encode_image(tiny_clip.preprocess(checker()))
    t = tiny_clip.encode_text(labels)
    scale = float(tiny_clip.model.logit_scale.exp())  # the model's own: 1 / 0.07 at open_clip's init
    assert abs(scale - 100) > 50
    want = (scale * f @ t.T).softmax(-1)[0]
    assert math.isclose(dict(ranked)["dog"], float(want[1]), rel_tol=1e-4)


def test_a_model_with_a_logit_bias_scores_each_label_by_its_sigmoid(tiny_clip):
    """SigLIP-style models (open_clip's logit_bias): each label's probability stands on its own."""
    import copy
    import dataclasses

    model = copy.deepcopy(tiny_clip.model)
    model.logit_bias = torch.nn.Parameter(torch.tensor([-2.0]))
    siglip = dataclasses.replace(tiny_clip, model=model)
    labels = ["cat", "dog", "stitch"]
    ranked = dict(label_probabilities(siglip, checker(), labels))
    f = tiny_clip.encode_image(tiny_clip.preprocess(checker()))
    want = (model.logit_scale.exp() * f @ tiny_clip.encode_text(labels).T - 2.0).sigmoid()[0]
    assert [ranked[l] for l in labels] == pytest.approx(want.tolist(), rel=1e-4)
    assert abs(sum(ranked.values()) - 1) > 0.05  # not a softmax
