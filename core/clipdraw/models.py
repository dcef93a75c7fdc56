"""CLIP models: load an open_clip model and its weights once per process, safely.

Weights come from an open_clip pretrained tag (downloaded through open_clip's hub client) or a
local file: an open_clip checkpoint, a plain state dict, a .safetensors file, or OpenAI's own
TorchScript .pt, each read without executing code from the file.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import pickle
import socket
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional, Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

DEFAULT_MODEL = "ViT-B-32-quickgelu"  # OpenAI's ViT-B/32, the model CLIPDraw used
DEFAULT_PRETRAINED = "openai"


class ModelError(RuntimeError):
    """The model cannot be had (download failed, unknown name): one sentence, exit status 1."""


class ModelFileError(ModelError):
    """A local model or weights file that cannot be read: the caller's mistake, exit status 2."""


# ---- model loading ------------------------------------------------------------------------


@dataclass
class Clip:
    """A loaded CLIP model in eval mode with gradients off for its weights."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    pretrained: str
    image_size: int
    mean: torch.Tensor  # [3, 1, 1]
    std: torch.Tensor  # [3, 1, 1]
    # The image tower's weights' dtype, and the efficient path that runs them (image_tower.py);
    # None where open_clip's own forward runs (under autocast when dtype is not fp32).
    dtype: torch.dtype = torch.float32
    image_tower: Optional[Callable[[torch.Tensor], torch.Tensor]] = None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings [N, D] (no gradient: prompts are constants of the optimisation)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        return F.normalize(self.model.encode_text(tokens).float(), dim=-1)

    def dropped_tokens(self, text: str) -> int:
        """How many of text's tokens do not fit the model's context (its tokenizer cuts them off)."""
        tok = self.tokenizer
        if hasattr(tok, "sot_token_id"):  # open_clip's BPE tokenizer: start + tokens + end
            used = len(tok.encode(text)) + 2
        elif hasattr(tok, "tokenizer"):  # a Hugging Face tokenizer inside open_clip's wrapper
            used = len(tok.tokenizer(tok.clean_fn(text)).input_ids)
        else:
            return 0
        return max(0, used - tok.context_length)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Unit image embeddings [B, D] of images [B, 3, S, S] in 0..1 (normalised here)."""
        x = (images - self.mean) / self.std
        if self.image_tower is not None:
            return F.normalize(self.image_tower(x), dim=-1)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            return F.normalize(self.model.encode_image(x).float(), dim=-1)

    def describe(self, threads: Optional[int] = None) -> str:
        """How the image tower runs, for status lines: its precision, which forward, and on how
        many CPU threads when given."""
        dtype = str(self.dtype).removeprefix("torch.")
        how = "clipdraw's image tower" if self.image_tower is not None else "open_clip's forward"
        on = "" if threads is None else f", {threads} thread{'s' * (threads != 1)}"
        return f"image tower in {dtype} ({how}){on}"

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        """[H, W, 3] in 0..1 -> [1, 3, S, S]: the whole image, resized (for scoring, no augmentation)."""
        x = image.permute(2, 0, 1)[None]
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bicubic",
                             antialias=True, align_corners=False).clamp(0, 1)


_CACHE: dict = {}


def pick_device(name: str = "auto") -> torch.device:
    """"auto" is CUDA if there is one, else Apple's MPS, else the CPU; others must be available."""
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}: choose auto, cpu, cuda or mps")
    if (name == "cuda" and not cuda) or (name == "mps" and not mps):
        raise ValueError(f"device {name} is not available to this torch; use --device cpu or auto")
    return torch.device(name)


def resolve(model: Optional[str] = None, pretrained: Optional[str] = None) -> tuple[str, str]:
    """The model and weights to use: the arguments, else CLIPDRAW_MODEL / CLIPDRAW_PRETRAINED, else
    OpenAI's ViT-B/32. An empty pretrained ("" or "none") means random weights (tests, benchmarks)."""
    model = model or os.environ.get("CLIPDRAW_MODEL") or DEFAULT_MODEL
    if pretrained is None:
        pretrained = os.environ.get("CLIPDRAW_PRETRAINED")
    if pretrained is None:  # a built-in model's OpenAI (else first) weights; a config file's: none
        import open_clip
        tags = [] if model.endswith(".json") else open_clip.list_pretrained_tags_by_model(model)
        pretrained = DEFAULT_PRETRAINED if DEFAULT_PRETRAINED in tags else (tags[0] if tags else "")
    return model, pretrained


def load_clip(model: Optional[str] = None, pretrained: Optional[str] = None, device="cpu",
              precision: str = "auto") -> Clip:
    """Load (once per process) an open_clip model.

    model: an open_clip model name, or a path to an open_clip model config JSON (its name is then
    the file's stem). pretrained: an open_clip tag (downloaded), a local file (an open_clip
    checkpoint, a plain state dict, a .safetensors file, or OpenAI's TorchScript .pt from
    ~/.cache/clip), or "" / "none" for random weights. Files are read without executing code.
    precision: auto | fp32 | bf16, the image tower's weights' precision (hardware.pick_dtype); the
    image tower runs on image_tower.py's efficient path where that serves the architecture.
    """
    from .hardware import pick_dtype
    from .image_tower import fast_image_tower

    model, pretrained = resolve(model, pretrained)
    device = torch.device(device)
    dtype = pick_dtype(precision, device)
    key = (model, pretrained, str(device))
    if key not in _CACHE:
        _CACHE[key] = _load(model, pretrained, device)
    base = _CACHE[key]
    tower = fast_image_tower(base.model.visual, dtype)
    if tower is None and precision == "auto" and device.type == "cpu":
        # A tower image_tower.py does not serve would run bf16 through CPU autocast, which is
        # slower than fp32 (benchmarks/iteration.md): auto means fp32 there.
        dtype = torch.float32
        tower = fast_image_tower(base.model.visual, dtype)
    if (key, dtype) not in _CACHE:
        _CACHE[key, dtype] = replace(base, dtype=dtype, image_tower=tower)
    return _CACHE[key, dtype]


def _load(model: str, pretrained: str, device: torch.device) -> Clip:
    import open_clip

    name = model
    if model.endswith(".json"):
        path = Path(model)
        if not path.is_file():
            raise ModelFileError(f"model config file {model} does not exist")
        try:
            cfg = json.loads(path.read_text(encoding="utf-8"))
            assert isinstance(cfg, dict) and "vision_cfg" in cfg and "text_cfg" in cfg
        except Exception:
            raise ModelFileError(f"{model} is not an open_clip model config (JSON with "
                                 f"embed_dim, vision_cfg and text_cfg)") from None
        open_clip.add_model_config(path)
        name = path.stem
    if ":" not in name and name not in open_clip.list_models():
        raise ModelFileError(f"unknown model {name!r}: give an open_clip model name such as "
                             f"{DEFAULT_MODEL} or a path to a model config JSON file")

    local = pretrained and pretrained.lower() != "none" and (
        os.path.exists(pretrained) or os.sep in pretrained or "/" in pretrained
        or pretrained.endswith((".pt", ".pth", ".bin", ".safetensors")))
    tag = pretrained if pretrained and pretrained.lower() != "none" and not local else None
    if tag is not None and not open_clip.get_pretrained_cfg(name, tag):
        raise ModelFileError(f"{tag!r} is neither a file nor a pretrained tag of {name} "
                             f"(known tags: {', '.join(open_clip.list_pretrained_tags_by_model(name)) or 'none'})")
    try:
        # open_clip logs "initialized randomly" warnings on the root logger; the engine's stderr
        # must carry JSON lines only, and the weights come right after.
        logging.disable(logging.CRITICAL)
        with _offline_if_hub_unreachable(tag is not None):
            net = open_clip.create_model(name, pretrained=tag, device="cpu", weights_only=True)
    except Exception as e:
        if tag is None:
            raise
        from open_clip.pretrained import has_hf_hub

        cfg = open_clip.get_pretrained_cfg(name, tag)
        hub, url = cfg.get("hf_hub", "").rstrip("/"), cfg.get("url", "")
        where = f"the Hugging Face hub ({hub})" if hub and has_hf_hub() else (url or "the internet")
        example = f" (for example {url})" if url and url != where else ""
        raise ModelError(
            f"could not download the {tag!r} weights of {name} from {where} ({type(e).__name__}); "
            f"download them where there is internet{example} and pass the file with "
            f"--pretrained FILE or CLIPDRAW_PRETRAINED=FILE") from None
    finally:
        logging.disable(logging.NOTSET)
    if local:
        load_weights(net, pretrained)

    net = net.to(device).eval().requires_grad_(False)
    cfg = open_clip.get_model_preprocess_cfg(net)
    size = cfg.get("size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=device).view(3, 1, 1)
    std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=device).view(3, 1, 1)
    return Clip(net, open_clip.get_tokenizer(name), name, pretrained or "random", int(size), mean, std)


@contextlib.contextmanager
def _offline_if_hub_unreachable(downloading: bool):
    """Without a network the hub client retries for ~25 s per file before giving up; when the
    hub's name does not even resolve, ask it for the local cache only, which answers at once."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    was = constants.HF_HUB_OFFLINE
    if downloading and not was:
        try:
            socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        except (OSError, UnicodeError):
            constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


def load_weights(net: torch.nn.Module, path: str) -> None:
    """Load a weights file into `net`, strictly, without executing code from the file."""
    if os.path.isdir(path):
        raise ModelFileError(f"weights file {path} is a folder; give the .pt file")
    if not os.path.isfile(path):
        raise ModelFileError(f"weights file {path} does not exist")
    try:
        state = read_state_dict(path)
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"cannot read weights file {path} ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:120] if str(e) else 'unreadable'})") from None
    from open_clip.factory import convert_to_custom_text_state_dict
    from open_clip.model import resize_pos_embed

    for k in [k for k in state if k.startswith("module.")]:
        state[k[7:]] = state.pop(k)
    if "positional_embedding" in state and not hasattr(net, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    expected = net.state_dict()
    if "logit_scale" in state:
        state["logit_scale"] = state["logit_scale"].reshape(expected["logit_scale"].shape)
    resize_pos_embed(state, net)
    missing = [k for k in expected if k not in state]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or wrong:
        bad = (missing + wrong)[0]
        raise ModelFileError(f"weights file {path} does not fit the model: {len(missing)} tensors "
                             f"missing and {len(wrong)} of another shape (first: {bad})")
    # Extra entries (TorchScript attributes such as attn_mask or input_resolution) are ignored.
    net.load_state_dict({k: state[k].float() for k in expected}, strict=True)


def read_state_dict(path: str) -> dict:
    """A flat {name: tensor} from safetensors, a weights_only torch file, or a TorchScript zip."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file
        return dict(load_file(path, device="cpu"))
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
        if any(n.endswith("/constants.pkl") for n in names):  # TorchScript: OpenAI's own .pt files
            return _read_torchscript_weights(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelFileError(f"cannot read weights file {path}: it is not a safetensors file, a PyTorch "
                             f"file of plain tensors, or a TorchScript archive (files that would need "
                             f"code to load are refused)") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelFileError(f"weights file {path} is not a state dict of tensors")
    return dict(obj)


# TorchScript archives hold the module tree in data.pkl: objects of classes named __torch__.*,
# tensors rebuilt from storages in data/. torch.jit.load would run the archive's code; instead a
# restricted unpickler turns every object into a plain attribute bag and allows only the few
# functions that rebuild tensors and containers.
_STORAGE_DTYPES = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Bag:
    def __setstate__(self, state):
        self.__dict__["state"] = state if isinstance(state, dict) else {}


def _rebuild_tensor(storage, offset, size, stride, *_):
    return storage.as_strided(size, stride, offset).clone()


def _read_torchscript_weights(path: str) -> dict:
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1)
        prefix = pkl[: -len("data.pkl")]
        storages: dict = {}

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if module.startswith("__torch__"):
                    return _Bag
                if module == "torch" and name in _STORAGE_DTYPES:
                    return _STORAGE_DTYPES[name]
                if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                    return _rebuild_tensor
                if (module, name) == ("torch._utils", "_rebuild_parameter"):
                    return lambda data, *_: data
                if (module, name) == ("collections", "OrderedDict"):
                    import collections
                    return collections.OrderedDict
                if module == "torch.jit._pickle" and name.startswith(("build_", "restore_type_tag")):
                    return lambda *a: a[0] if a else None
                raise ModelFileError(f"{path} refers to {module}.{name}, which a weights file "
                                     f"should not need; it is not loaded, so that no code in it runs")

            def persistent_load(self, pid):
                kind, dtype, key, _location, numel = pid
                if kind != "storage" or not isinstance(dtype, torch.dtype):
                    raise ModelFileError(f"{path}: unexpected storage record {kind!r}")
                if key not in storages:
                    raw = bytearray(z.read(f"{prefix}data/{key}"))
                    storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
                return storages[key]

        root = Unpickler(io.BytesIO(z.read(pkl))).load()

    flat: dict = {}

    def walk(obj, name):
        if isinstance(obj, torch.Tensor):
            flat[name] = obj
        elif isinstance(obj, _Bag):
            for k, v in obj.__dict__.get("state", {}).items():
                walk(v, f"{name}.{k}" if name else k)

    walk(root, "")
    if not flat:
        raise ModelFileError(f"{path} is a TorchScript archive without tensors")
    return flat
