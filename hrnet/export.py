"""Export HRNet + AE head to ONNX for the model repository, and check it against PyTorch.

    python -m hrnet.export --checkpoint hrnet_w32_coco_512x512-bcb8c247_20200816.pth
    python -m hrnet.export            # seeded RANDOM weights (said loudly) when there is none

Input `input` [N,3,H,W] float32 (normalised RGB), output `output1` [N,34,H/4,W/4]; batch, H and
W are dynamic (H, W multiples of 64 in practice, at least multiples of 32). Uses the TorchScript
exporter: it needs no extra package (the dynamo exporter needs onnxscript), folds BatchNorm into
the convolutions and gives a graph of only Conv/Relu/Add/Resize with constant scales.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from backend import cli
from hrnet.net import build_model
from hrnet.weights import RANDOM_WEIGHTS, CheckpointMismatch, load_checkpoint, random_init

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output1"
INPUT_SIZE = 512  # the config's image_size: the short side of every network input
DEFAULT_OUT = Path("model_repository/hrnet_om/1/model.onnx")
# One square and one batched non-square input, both real test-time shapes (multiples of 64).
CHECK_SHAPES = ((1, 3, 512, 512), (2, 3, 512, 576))
CHECK_ATOL = 1e-4
_TRACE_SHAPE = (1, 3, 128, 128)  # only traced; small keeps tracing fast, dims stay symbolic


def to_onnx_bytes(model: nn.Module, opset: int = 17) -> bytes:
    """Serialized ONNX model with dynamic batch/height/width axes."""
    model.eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The deprecation notice for the TorchScript exporter: chosen on purpose (see above).
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, (torch.zeros(_TRACE_SHAPE),), buf, dynamo=False, opset_version=opset,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True,
            dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                          OUTPUT_NAME: {0: "batch", 2: "height_div4", 3: "width_div4"}})
    return buf.getvalue()


def add_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        entry = existing.get(key) or proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def write_atomically(data: bytes, out: Path) -> None:
    """Write via a temp file in the target directory, so a crash never leaves half a model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")  # open() keeps umask permissions
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def export_onnx(model: nn.Module, out: str | Path, weights: dict[str, str], arch: str,
                opset: int = 17, input_size: int = INPUT_SIZE) -> Path:
    """Export `model` to `out` with metadata_props weights/weights_sha256/arch/input_size."""
    proto = onnx.load_from_string(to_onnx_bytes(model, opset))
    add_metadata(proto, {"weights": weights["weights"], "weights_sha256": weights["sha256"],
                         "arch": arch, "input_size": str(input_size)})
    onnx.checker.check_model(proto)
    out = Path(out)
    write_atomically(proto.SerializeToString(), out)
    return out


def check_onnx(model: nn.Module, path: str | Path, shapes=CHECK_SHAPES, atol: float = CHECK_ATOL,
               seed: int = 0) -> float:
    """Max |ORT - PyTorch| over random inputs of `shapes`; raises AssertionError above atol."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for shape in shapes:
        x = rng.standard_normal(shape, dtype=np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
        if got.shape != expected.shape:
            raise AssertionError(f"{shape}: ONNX output {got.shape} vs PyTorch {expected.shape}")
        diff = float(np.abs(got - expected).max())
        print(f"check {'x'.join(map(str, shape))}: max |onnxruntime - torch| = {diff:.3g}")
        worst = max(worst, diff)
    if not worst <= atol:  # also catches NaN
        raise AssertionError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {atol:g}")
    return worst


def conv_macs(proto: onnx.ModelProto, shape=(1, 3, INPUT_SIZE, INPUT_SIZE)) -> int:
    """Multiply-accumulates of all Conv nodes for one input shape (the rest is negligible)."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for dim, value in zip(proto.graph.input[0].type.tensor_type.shape.dim, shape):
        dim.dim_value = value
    inferred = onnx.shape_inference.infer_shapes(proto)
    dims = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    macs = 0
    for node in proto.graph.node:
        if node.op_type == "Conv":
            cout, cin_per_group, kh, kw = weights[node.input[1]]
            n, _, h, w = dims[node.output[0]]
            macs += n * cout * h * w * cin_per_group * kh * kw
    return macs


def _parse_args(argv):
    p = cli.ArgumentParser(prog="python -m hrnet.export", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog=cli.exit_codes_help(details={
                               cli.EXIT_OK: "exported and checked",
                               cli.EXIT_FAILED: "a usage error (bad flag, missing or unusable "
                                                "checkpoint, unwritable --out: one line on "
                                                "stderr) or ONNX Runtime differs from PyTorch"}))
    p.add_argument("--checkpoint", type=Path,
                   help="mmpose checkpoint (.pth); without it the weights are RANDOM")
    p.add_argument("--trust-checkpoint", action="store_true",
                   help="unpickle arbitrary objects in the checkpoint: only for a file from a "
                        "trusted source whose metadata the safe loader refuses")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--blocks", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="random-init seed (no checkpoint)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="compare ONNX Runtime with PyTorch (default: on)")
    return p.parse_args(argv)


def weights_of(model: nn.Module, args: argparse.Namespace) -> dict[str, str]:
    """Random or the checkpoint's; a checkpoint that cannot be used is a UserError (one line)."""
    if args.checkpoint is None:
        return random_init(model, seed=args.seed)
    path = args.checkpoint
    try:
        return load_checkpoint(model, path, trusted=args.trust_checkpoint)
    except FileNotFoundError:
        raise cli.UserError(f"--checkpoint {path}: no such file (give the path of "
                            f"hrnet_w32_coco_512x512-bcb8c247_20200816.pth)") from None
    except IsADirectoryError:
        raise cli.UserError(f"--checkpoint {path} is a folder: give the .pth file") from None
    except CheckpointMismatch as err:
        raise cli.UserError(err.summary) from None
    except (ValueError, OSError) as err:
        raise cli.UserError(str(err)) from None


def main(argv: list[str] | None = None) -> int:
    return cli.run(_main, argv)


def _main(argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parse_args(argv)
    model = build_model(width=args.width, blocks=args.blocks)
    weights = weights_of(model, args)

    start = time.perf_counter()
    try:
        out = export_onnx(model, args.out, weights, arch=model.spec.arch, opset=args.opset)
    except OSError as err:
        raise cli.UserError(f"--out {args.out}: cannot write it ({err.strerror or err})") from None
    took = time.perf_counter() - start
    size_mb = out.stat().st_size / 2**20
    gflop = 2 * conv_macs(onnx.load(str(out))) / 1e9
    print(f"exported {out} ({size_mb:.1f} MiB) in {took:.1f} s; weights={weights['weights']}; "
          f"{gflop:.1f} GFLOP (2 x conv MACs) per 1x3x{INPUT_SIZE}x{INPUT_SIZE}")
    if args.check:
        try:
            check_onnx(model, out)
        except AssertionError as e:
            print(f"CHECK FAILED: {e}", file=sys.stderr)
            return 1
    if weights["weights"] == RANDOM_WEIGHTS:
        print(f"WARNING: {out} has RANDOM weights (seed {args.seed}); its outputs are "
              "meaningless. Pass --checkpoint for the trained model.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
