"""Model loading: local files of every kind, read without running code; clear errors."""
import zipfile

import pytest
import torch

from clipdraw import models
from clipdraw.models import ModelError, ModelFileError, load_clip, read_state_dict, resolve


# ---- loading ---------------------------------------------------------------------------------


def test_tiny_model_loads_once_and_embeds(tiny_model, tiny_clip):
    assert load_clip(*tiny_model) is tiny_clip  # once per process
    t = tiny_clip.encode_text(["a cat", "a dog"])
    assert t.shape == (2, 64)
    assert torch.allclose(t.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not any(p.requires_grad for p in tiny_clip.model.parameters())


def test_weights_come_from_the_file(tiny_model, tmp_path):
    """The model's tensors are the checkpoint's, not a fresh random init."""
    config, checkpoint = tiny_model
    state = torch.load(checkpoint, weights_only=True)
    clip = load_clip(config, checkpoint)
    assert torch.equal(clip.model.state_dict()["visual.conv1.weight"], state["visual.conv1.weight"])
    # the same weights as safetensors, and wrapped the way open_clip training checkpoints are
    from safetensors.torch import save_file

    save_file(state, tmp_path / "w.safetensors")
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": {"module." + k: v for k, v in state.items()}}, wrapped)
    for path in (tmp_path / "w.safetensors", wrapped):
        other = load_clip(config, str(path))
        assert torch.equal(other.model.state_dict()["text_projection"], state["text_projection"])


def test_environment_variables_are_the_defaults(monkeypatch, tiny_model):
    monkeypatch.setenv("CLIPDRAW_MODEL", tiny_model[0])
    monkeypatch.setenv("CLIPDRAW_PRETRAINED", tiny_model[1])
    assert resolve() == tiny_model
    assert resolve("ViT-B-32", "laion2b_s34b_b79k") == ("ViT-B-32", "laion2b_s34b_b79k")
    monkeypatch.delenv("CLIPDRAW_MODEL")
    monkeypatch.delenv("CLIPDRAW_PRETRAINED")
    assert resolve() == ("ViT-B-32-quickgelu", "openai")


def test_pickled_code_is_refused_not_run(tiny_model, tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    torch.save({"visual.conv1.weight": Evil()}, bad)
    with pytest.raises(ModelFileError, match="refused"):
        load_clip(tiny_model[0], str(bad))
    assert not marker.exists()


def test_unreadable_files_and_names_are_clear(tiny_model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights")
    with pytest.raises(ModelFileError, match="junk.pt"):
        load_clip(tiny_model[0], str(junk))
    with pytest.raises(ModelFileError, match="does not exist"):
        load_clip(tiny_model[0], str(tmp_path / "missing.pt"))
    with pytest.raises(ModelFileError, match=r"is a folder; give the \.pt file"):
        load_clip(tiny_model[0], str(tmp_path))
    with pytest.raises(ModelFileError, match="unknown model"):
        load_clip("no-such-model", "")
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3)}, wrong)
    with pytest.raises(ModelFileError, match="does not fit"):
        load_clip(tiny_model[0], str(wrong))


def test_download_failure_is_one_sentence(monkeypatch, tiny_model):
    """No network here: an open_clip tag fails with a message naming the fix, no traceback text."""
    import open_clip

    def offline(*a, **k):
        raise RuntimeError("Failed to download weights: no connection")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(ModelError) as e:
        models._load("ViT-B-32-quickgelu", "openai", torch.device("cpu"))
    msg = str(e.value)
    assert "--pretrained FILE" in msg and "CLIPDRAW_PRETRAINED" in msg and "\n" not in msg
    assert not isinstance(e.value, ModelFileError)  # not the user's mistake: exit status 1


def test_unresolvable_hub_means_cache_only_instead_of_a_minute_of_retries(monkeypatch, tmp_path):
    """Offline, the hub client would retry for ~25 s per file: with the hub's name unresolvable
    the download asks the local cache only (the real hub client, no network needed)."""
    import socket

    from huggingface_hub import constants

    def no_dns(*a, **k):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    import open_clip.pretrained

    real_download, offline_during_download = open_clip.pretrained.hf_hub_download, []

    def download(*a, **k):
        offline_during_download.append(constants.HF_HUB_OFFLINE)
        return real_download(*a, **k)

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", download)
    with pytest.raises(ModelError, match="--pretrained FILE"):
        models._load("ViT-B-32-quickgelu", "openai", torch.device("cpu"))
    assert offline_during_download and all(offline_during_download)
    assert constants.HF_HUB_OFFLINE is False  # restored for the rest of the process


@pytest.mark.filterwarnings("ignore")
def test_torchscript_archive_is_read_without_running_it(tiny_model, tmp_path):
    """OpenAI's .pt files are TorchScript: their tensors are read from the zip, the code is not run."""
    config, checkpoint = tiny_model
    import open_clip

    open_clip.add_model_config(config)
    net = open_clip.create_model("clipdraw-tiny")
    net.load_state_dict(torch.load(checkpoint, weights_only=True))
    net.eval()
    image, text = torch.rand(1, 3, 224, 224), open_clip.tokenize(["a cat"], context_length=77)
    traced = torch.jit.trace(net, (image, text), check_trace=False, strict=False)
    path = tmp_path / "ViT-tiny.pt"
    traced.save(str(path))
    with zipfile.ZipFile(path) as z:
        assert any(n.endswith("constants.pkl") for n in z.namelist())
    state = read_state_dict(str(path))
    assert torch.equal(state["visual.conv1.weight"], net.state_dict()["visual.conv1.weight"])
    clip = load_clip(config, str(path))
    with torch.no_grad():
        want = net.encode_image(image)
        got = clip.model.encode_image(image)
    assert torch.allclose(want, got, atol=1e-5)


def test_a_tower_without_the_fast_path_runs_bf16_only_when_asked():
    """The concept model's ResNet tower is served by open_clip's forward: 'auto' keeps it in fp32
    (CPU autocast is slower), an explicit bf16 runs it under autocast, and describe() says which."""
    from pathlib import Path

    data = Path(__file__).parent / "data" / "concept"
    spec = (str(data / "clipdraw-concept.json"), str(data / "clipdraw-concept.safetensors"))
    auto, bf16 = load_clip(*spec, precision="auto"), load_clip(*spec, precision="bf16")
    assert auto.image_tower is None and auto.dtype == torch.float32
    assert auto.describe() == "image tower in float32 (open_clip's forward)"
    assert bf16.dtype == torch.bfloat16 and bf16.describe() == "image tower in bfloat16 (open_clip's forward)"
    images = torch.rand(2, 3, auto.image_size, auto.image_size, generator=torch.Generator().manual_seed(0))
    f32, half = auto.encode_image(images), bf16.encode_image(images)
    assert half.dtype == torch.float32 and (f32 * half).sum(-1).min() > 0.99
