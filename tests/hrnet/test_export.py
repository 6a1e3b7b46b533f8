"""ONNX export of the (tiny) HRNet: numerics vs PyTorch, interface, metadata, CLI."""
import hashlib
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hrnet import export
from hrnet.net import build_model
from hrnet.weights import random_init

SMALL_SHAPES = ((1, 3, 64, 64), (2, 3, 64, 128))


@pytest.fixture(scope="module")
def tiny():
    model = build_model(width=8, blocks=1)
    return model, random_init(model, seed=0)


@pytest.fixture(scope="module")
def exported(tiny, tmp_path_factory):
    model, weights = tiny
    out = tmp_path_factory.mktemp("export") / "1" / "model.onnx"
    export.export_onnx(model, out, weights, arch=model.spec.arch)
    return out


def test_onnxruntime_matches_torch(tiny, exported):
    model, _ = tiny
    assert export.check_onnx(model, exported, shapes=SMALL_SHAPES) <= 1e-4


def test_check_fails_when_weights_differ(tiny, exported, tmp_path):
    model, _ = tiny
    changed = build_model(width=8, blocks=1)
    changed.load_state_dict(model.state_dict())
    with torch.no_grad():
        changed.keypoint_head.final_layer.bias.add_(1e-2)
    with pytest.raises(AssertionError, match="differs from PyTorch"):
        export.check_onnx(changed, exported, shapes=SMALL_SHAPES[:1])


def test_interface_is_dynamic_with_stride_4(exported):
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type, inp.shape[1]) == ("input", "tensor(float)", 3)
    assert (out.name, out.shape[1]) == ("output1", 34)
    assert all(isinstance(d, str) for d in inp.shape[:1] + inp.shape[2:])
    (y,) = session.run(None, {"input": np.zeros((3, 3, 128, 192), np.float32)})
    assert y.shape == (3, 34, 32, 48)


def test_metadata_and_no_leftover_files(exported):
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    assert meta == {"weights": "random-init", "weights_sha256": "", "arch": "hrnet_w8_ae_b1",
                    "input_size": "512"}
    assert os.listdir(exported.parent) == ["model.onnx"]


def test_graph_has_only_compute_ops(exported):
    # BN folded into Conv, upsampling as Resize with constant scales: no shape arithmetic.
    ops = {n.op_type for n in onnx.load(str(exported)).graph.node}
    assert ops <= {"Conv", "Relu", "Add", "Resize", "Constant"}


def test_export_is_deterministic(tmp_path):
    paths = []
    for name in ("a.onnx", "b.onnx"):
        model = build_model(width=8, blocks=1)
        weights = random_init(model, seed=5)
        paths.append(export.export_onnx(model, tmp_path / name, weights, arch="x"))
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_conv_macs_match_torch_count(tiny, exported):
    model, _ = tiny
    macs = []

    def count(conv, _inputs, output):
        macs.append(output.numel() * conv.weight[0].numel())

    hooks = [m.register_forward_hook(count) for m in model.modules()
             if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.inference_mode():
            model(torch.zeros(1, 3, 128, 192))
    finally:
        for h in hooks:
            h.remove()
    # BN folding keeps one Conv per nn.Conv2d, so the counts agree exactly.
    assert export.conv_macs(onnx.load(str(exported)), (1, 3, 128, 192)) == sum(macs)


def test_cli_with_checkpoint_and_check(tmp_path, capsys):
    source = build_model(width=8, blocks=1)
    random_init(source, seed=1)
    ckpt = tmp_path / "tiny_ckpt.pth"
    torch.save({"meta": {"epoch": 1}, "state_dict": source.state_dict()}, ckpt)
    out = tmp_path / "repo" / "hrnet" / "1" / "model.onnx"
    capsys.readouterr()  # drop the random-init banner of the source model

    rc = export.main(["--checkpoint", str(ckpt), "--out", str(out), "--width", "8",
                      "--blocks", "1", "--opset", "17"])

    assert rc == 0
    printed = capsys.readouterr()
    assert "check 1x3x512x512: max |onnxruntime - torch|" in printed.out
    assert "exported" in printed.out and "MiB" in printed.out
    assert "RANDOM" not in printed.err
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["weights"] == "tiny_ckpt.pth"
    assert meta["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert sorted(os.listdir(out.parent)) == ["model.onnx"]


def test_cli_without_checkpoint_warns(tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert export.main(["--out", str(out), "--width", "8", "--blocks", "1", "--no-check"]) == 0
    err = capsys.readouterr().err
    assert "RANDOM" in err and "meaningless" in err
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["weights"] == "random-init" and meta["weights_sha256"] == ""
