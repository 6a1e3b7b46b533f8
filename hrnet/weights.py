"""Weights for `hrnet.net`: strict loading of the mmpose checkpoint, or seeded random init.

Checkpoints are read with `torch.load(weights_only=True)`: a .pth file is a pickle, and the
restricted unpickler only rebuilds tensors and plain containers, so a tampered file cannot run
code at load time. mmcv checkpoints (`{'meta': ..., 'state_dict': ...}`) keep strings and
numbers in `meta`, possibly numpy scalars (e.g. an eval hook's best score), so numpy scalars
are allowlisted too, under both numpy 1.x and 2.x names. `trusted=True` (full unpickling) is
for files whose metadata holds other Python objects, and only for files from a trusted source.
"""
from __future__ import annotations

import hashlib
import logging
import math
import pickle
import re
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hrnet.net import BasicBlock, Bottleneck, HRModule

log = logging.getLogger(__name__)

RANDOM_WEIGHTS = "random-init"
_LISTED_KEYS = 20  # keys shown per category in a mismatch error; the rest are counted
# OpenMMLab publishes checkpoints as `<name>-<first 8 hex of sha256>.pth` (publish_model.py).
_PUBLISHED_NAME = re.compile(r"-([0-9a-f]{8})\.pth$")


# numpy scalar reconstruction: inert (no callables beyond scalar/dtype construction).
_NUMPY_SCALAR_GLOBALS = [
    np._core.multiarray.scalar,
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),  # pickled by numpy 1.x
    np.dtype,
    *(type(np.dtype(t)) for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                  np.uint16, np.uint32, np.uint64, np.float16, np.float32,
                                  np.float64)),
]


class CheckpointMismatch(ValueError):
    """The checkpoint's keys or shapes differ from the network's state dict. str() lists the
    keys; `summary` says it in one line (counts and the first key of each kind)."""

    def __init__(self, message: str, summary: str):
        super().__init__(message)
        self.summary = summary


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: str | Path, trusted: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of an mmcv checkpoint (`state_dict` entry) or of a bare state dict.

    A `module.` prefix on every key (left by DataParallel / DistributedDataParallel) is removed.
    """
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):   # not a refused class: not a checkpoint at all
            raise ValueError(f"{path}: not a PyTorch checkpoint ({_unpickler_reason(e)}); give "
                             "mmpose's hrnet_w32_coco_512x512 .pth file") from e
        raise ValueError(
            f"{path}: not readable by the restricted unpickler (weights_only=True): it is not "
            "a PyTorch checkpoint, or it holds Python objects other than tensors, containers "
            f"and numbers ({_unpickler_reason(e)}). If the file comes from a trusted source, "
            "load it with trusted=True (python -m hrnet.export --trust-checkpoint, "
            "make model CHECKPOINT=... TRUST_CHECKPOINT=1)") from e
    except Exception as e:  # torch.load fails in many ways on non-checkpoints (EOF, zip, ...)
        raise ValueError(f"{path}: not a PyTorch checkpoint ({type(e).__name__}: {e}); give "
                         "mmpose's hrnet_w32_coco_512x512 .pth file") from e
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    state = obj.get("state_dict", obj)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: 'state_dict' entry is a {type(state).__name__}, not a dict")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: not a state dict; non-tensor entries: {not_tensors[:5]}")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _unpickler_reason(err: Exception) -> str:
    """The one sentence of torch's long weights_only message that names what was refused."""
    text = " ".join(str(err).split())
    found = re.search(r"WeightsUnpickler error: (.*?)(?:\. |$)", text)
    return found.group(1) if found else text[:200]


def _listing(title: str, items: list[str]) -> str:
    shown = "\n    ".join(items[:_LISTED_KEYS])
    more = f"\n    ... and {len(items) - _LISTED_KEYS} more" if len(items) > _LISTED_KEYS else ""
    return f"  {title} ({len(items)}):\n    {shown}{more}"


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str = "") -> None:
    """Raise CheckpointMismatch listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        kinds = (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatches", shapes))
        parts = [f"checkpoint {source} does not match the network"]
        parts += [_listing(title, items) for title, items in kinds if items]
        summary = (f"checkpoint {source} does not match the network: "
                   + ", ".join(f"{len(items)} {title} (first: {items[0]})"
                               for title, items in kinds if items)
                   + "; give mmpose's hrnet_w32_coco_512x512 checkpoint")
        raise CheckpointMismatch("\n".join(parts), summary)


def load_checkpoint(model: nn.Module, path: str | Path, trusted: bool = False) -> dict[str, str]:
    """Strictly load an mmpose checkpoint into `model`; returns {'weights', 'sha256'}."""
    path = Path(path)
    digest = sha256_file(path)
    published = _PUBLISHED_NAME.search(path.name)
    if published and not digest.startswith(published.group(1)):
        raise ValueError(f"{path}: sha256 {digest[:8]}... does not match the hash prefix in the "
                         f"file name ({published.group(1)}); the file is corrupt or truncated")
    state = read_state_dict(path, trusted=trusted)
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state, strict=True)
    log.info("loaded %s (sha256 %s)", path.name, digest)
    return {"weights": path.name, "sha256": digest}


def _residual_end_norms(model: nn.Module) -> list[nn.BatchNorm2d]:
    """BNs whose output is added to another path: residual branches and fusion inputs."""
    norms = []
    for m in model.modules():
        if isinstance(m, BasicBlock):
            norms.append(m.bn2)
        elif isinstance(m, Bottleneck):
            norms.append(m.bn3)
        elif isinstance(m, HRModule):
            for fuse in m.fuse_layers:
                for path in fuse:
                    if path is not None:
                        norms.append([b for b in path.modules() if isinstance(b, nn.BatchNorm2d)][-1])
    return norms


# Random-init heatmaps are made to look like a trained network's: mostly well below the
# detection threshold (0.1) with rare peaks. Raw random maps sit above it almost everywhere,
# which makes every pixel a candidate and grouping find hundreds of "people" per image.
_HEAT_MEAN, _HEAT_STD = -0.25, 0.05


def _sparse_heatmaps(model: nn.Module, gen: torch.Generator) -> None:
    """Rescale the heatmap half of the final 1x1 conv so its outputs have mean _HEAT_MEAN and
    std _HEAT_STD on a seeded random image (tag channels are left as they are)."""
    head = getattr(getattr(model, "keypoint_head", None), "final_layer", None)
    if head is None:
        return
    joints = head.out_channels // 2
    was_training = model.training
    model.eval()
    x = torch.randn(1, 3, 128, 128, generator=gen)
    heat = model(x)[0, :joints].reshape(joints, -1)
    model.train(was_training)
    mean, std = heat.mean(1), heat.std(1).clamp_min(1e-6)
    k = (_HEAT_STD / std)
    head.weight[:joints] *= k[:, None, None, None]
    head.bias[:joints] = (head.bias[:joints] - mean) * k + _HEAT_MEAN


def random_init(model: nn.Module, seed: int = 0) -> dict[str, str]:
    """Seeded random weights, for running the pipeline without the real checkpoint.

    He-normal convolutions and non-trivial BN statistics (so BN folding is exercised by export
    checks), with residual/fusion BNs damped so that activations stay O(1) through the ~40
    summed blocks instead of growing by 2x per block.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=gen)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(0.0, 0.1, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.num_batches_tracked.zero_()
        for bn in _residual_end_norms(model):
            bn.weight.mul_(0.2)
        _sparse_heatmaps(model, gen)
    banner = "#" * 78
    message = (f"HRNet weights are RANDOM (seed {seed}), not the trained checkpoint: network "
               "outputs, poses and COCO AP are meaningless.")
    log.warning(message)
    print(f"{banner}\n# WARNING: {message}\n{banner}", file=sys.stderr, flush=True)
    return {"weights": RANDOM_WEIGHTS, "sha256": ""}
