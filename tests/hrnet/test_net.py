"""HRNet network definition and checkpoint loading."""
import datetime
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import hrnet
from hrnet.net import build_model
from hrnet.weights import CheckpointMismatch, load_checkpoint, random_init

SHAPES_JSON = Path(hrnet.__file__).parent / "state_dict_shapes.json"


@pytest.fixture(scope="module")
def w32():
    return build_model()


def tiny(seed=0):
    model = build_model(width=8, blocks=1)
    random_init(model, seed=seed)
    return model


def test_default_state_dict_matches_checkpoint_spec(w32):
    spec = json.loads(SHAPES_JSON.read_text())
    state = w32.state_dict()
    assert list(state) == list(spec)  # same keys in the same order
    assert {k: list(v.shape) for k, v in state.items()} == spec


def test_default_parameter_count(w32):
    assert len(w32.state_dict()) == 1754
    assert sum(p.numel() for p in w32.parameters()) == 28_536_674
    assert sum(p.numel() for p in w32.keypoint_head.parameters()) == 34 * 32 + 34
    assert w32.spec.arch == "hrnet_w32_ae"


def test_output_has_stride_4_on_non_square_batch():
    model = tiny()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, 64, 160))
    assert out.shape == (2, 34, 16, 40)
    assert torch.isfinite(out).all()
    assert out.std() > 0.1  # random weights still give a non-degenerate signal


def test_every_branch_reaches_the_output():
    # Perturbing the lowest-resolution branch must change the stride-4 output (fusion works).
    model = tiny()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        before = model(x)
        model.backbone.stage4[-1].branches[3][0].bn2.bias.add_(1.0)
        after = model(x)
    assert (before - after).abs().max() > 1e-3


def test_random_init_is_seeded_and_loud(caplog, capsys):
    with caplog.at_level(logging.WARNING):
        a, b, c = tiny(seed=3), tiny(seed=3), tiny(seed=4)
    b_state = b.state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, b_state[key])
    assert not torch.equal(a.backbone.conv1.weight, c.backbone.conv1.weight)
    assert "RANDOM" in caplog.text and "meaningless" in caplog.text
    assert "#####" in capsys.readouterr().err


def _save(obj, path):
    torch.save(obj, path)
    return path


@pytest.mark.parametrize("layout", ["mmcv", "bare", "module_prefix", "mmcv_module_prefix"])
def test_load_checkpoint_layouts(tmp_path, layout):
    source = tiny(seed=1).state_dict()
    if "module_prefix" in layout:
        source = {f"module.{k}": v for k, v in source.items()}
    if layout.startswith("mmcv"):
        obj = {"meta": {"epoch": 300, "mmcv_version": "1.0.5", "config": "model = dict()"},
               "state_dict": source}
    else:
        obj = source
    path = _save(obj, tmp_path / "tiny.pth")

    model = build_model(width=8, blocks=1)
    info = load_checkpoint(model, path)

    assert info == {"weights": "tiny.pth",
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    loaded = model.state_dict()
    for key, value in tiny(seed=1).state_dict().items():
        assert torch.equal(loaded[key], value), key


def test_load_checkpoint_lists_missing_and_unexpected_keys(tmp_path):
    state = tiny().state_dict()
    del state["keypoint_head.final_layer.bias"]
    state["keypoint_head.final_layers.0.weight"] = torch.zeros(34, 8, 1, 1)
    path = _save({"state_dict": state}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointMismatch) as err:
        load_checkpoint(build_model(width=8, blocks=1), path)
    message = str(err.value)
    assert "missing keys (1)" in message and "keypoint_head.final_layer.bias" in message
    assert "unexpected keys (1)" in message and "keypoint_head.final_layers.0.weight" in message


def test_load_checkpoint_reports_shape_mismatch_of_other_variant(tmp_path):
    # A W8 checkpoint into a W16 network: same key names for the head, different shapes.
    path = _save(tiny().state_dict(), tmp_path / "w8.pth")
    with pytest.raises(CheckpointMismatch, match=r"shape mismatches .*\n.*"
                       r"checkpoint \(\d+, \d+, 3, 3\) vs model"):
        load_checkpoint(build_model(width=16, blocks=1), path)


def test_load_checkpoint_rejects_non_state_dicts(tmp_path):
    with pytest.raises(ValueError, match="not a state dict"):
        load_checkpoint(tiny(), _save({"epoch": 3}, tmp_path / "meta_only.pth"))


def test_load_checkpoint_rejects_files_that_are_not_checkpoints(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a pickle" * 8)
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint(tiny(), path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_checkpoint(tiny(), path)


def test_load_checkpoint_unpickles_only_safe_types_unless_trusted(tmp_path):
    state = tiny(seed=2).state_dict()
    # numpy scalars in mmcv meta (eval hooks store them) are fine without trusting the file.
    numpy_meta = _save({"meta": {"hook_msgs": {"best_score": np.float64(0.654)}, "iter": np.int64(7)},
                        "state_dict": state}, tmp_path / "numpy_meta.pth")
    load_checkpoint(build_model(width=8, blocks=1), numpy_meta)
    # Anything else needs an explicit opt-in.
    other = _save({"meta": {"time": datetime.date(2020, 8, 16)}, "state_dict": state},
                  tmp_path / "other_meta.pth")
    with pytest.raises(ValueError, match="trusted=True"):
        load_checkpoint(build_model(width=8, blocks=1), other)
    assert load_checkpoint(build_model(width=8, blocks=1), other, trusted=True)["weights"] == "other_meta.pth"


def test_load_checkpoint_verifies_published_hash_prefix(tmp_path):
    path = _save(tiny().state_dict(), tmp_path / "tiny.pth")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    good = path.rename(tmp_path / f"tiny-{digest[:8]}.pth")
    assert load_checkpoint(build_model(width=8, blocks=1), good)["sha256"] == digest
    wrong_prefix = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    bad = good.rename(tmp_path / f"tiny-{wrong_prefix}.pth")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(build_model(width=8, blocks=1), bad)


def test_random_init_keeps_activations_bounded():
    # Depth of the real network matters here: 4+4+16+12 residual blocks plus 8 fusions.
    model = build_model(width=8, blocks=4)
    random_init(model, seed=0)
    with torch.inference_mode():
        out = model(torch.randn(1, 3, 64, 64))
    assert torch.isfinite(out).all() and out.abs().max() < 1e3
