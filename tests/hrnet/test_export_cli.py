"""`python -m hrnet.export` and `make model CHECKPOINT=...` with a checkpoint that cannot be used:
one line naming the file and what to do, exit 1 (make: its own trailer line and exit 2), no
model written; --trust-checkpoint for a trusted file the safe loader refuses."""

import argparse
import re
import shutil
import subprocess

import pytest
import torch

from hrnet import export as export_cli
from hrnet.net import build_model
from tests.serverproc import ROOT

TINY = ["--width", "8", "--blocks", "1", "--no-check"]


def export(capsys, *args) -> tuple[int, str, str]:
    """python -m hrnet.export's exit code, stdout and stderr (run in process: torch loads once)."""
    code = export_cli.main([*TINY, *map(str, args)])
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    d = tmp_path_factory.mktemp("checkpoints")
    (d / "garbage.pth").write_bytes(bytes(range(256)) * 20)
    torch.save({"state_dict": {"conv.weight": torch.zeros(2)}}, d / "other.pth")
    # The right tensors, but metadata the restricted unpickler refuses (an argparse Namespace).
    state = build_model(width=8, blocks=1).state_dict()
    torch.save({"meta": {"args": argparse.Namespace(lr=0.1)}, "state_dict": state},
               d / "with_objects.pth")
    return d


@pytest.mark.parametrize("name, expected", [
    ("missing.pth", "--checkpoint {path}: no such file (give the path of "
                    "hrnet_w32_coco_512x512-bcb8c247_20200816.pth)"),
    ("garbage.pth", "{path}: not a PyTorch checkpoint"),
    ("other.pth", "checkpoint {path} does not match the network: 1706 missing keys (first: "),
    ("with_objects.pth", "--trust-checkpoint"),
])
def test_unusable_checkpoint_is_one_line(checkpoints, tmp_path, capsys, name, expected):
    path, out = checkpoints / name, tmp_path / "model.onnx"
    code, _, err = export(capsys, "--checkpoint", path, "--out", out)
    assert code == 1
    line = error_line(err)
    if name == "other.pth":
        expected = expected.replace("1706", str(len(build_model(width=8, blocks=1).state_dict())))
    assert expected.format(path=path) in line, line
    assert not out.exists()


def test_trust_checkpoint_loads_a_trusted_file(checkpoints, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code, printed, err = export(capsys, "--checkpoint", checkpoints / "with_objects.pth",
                                "--trust-checkpoint", "--out", out)
    assert code == 0, err
    assert out.is_file() and "weights=with_objects.pth" in printed


def test_folder_checkpoint_and_unwritable_out(checkpoints, tmp_path, capsys):
    code, _, err = export(capsys, "--checkpoint", checkpoints, "--out", tmp_path / "m.onnx")
    assert code == 1
    assert error_line(err) == f"error: --checkpoint {checkpoints} is a folder: give the .pth file"
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, _, err = export(capsys, "--out", blocker / "m.onnx")
    assert code == 1
    assert error_line(err).startswith(f"error: --out {blocker / 'm.onnx'}: cannot write it")


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_model_with_a_garbage_checkpoint(checkpoints, tmp_path):
    """make prints the export's one line, then its own 'Error 1' trailer, and exits 2 (make's
    code for a failed recipe); the repository is left without a model."""
    repo = tmp_path / "repo"
    done = subprocess.run(["make", "-s", "-o", ".venv/.installed", "model", f"REPO={repo}",
                           f"CHECKPOINT={checkpoints / 'garbage.pth'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert "not a PyTorch checkpoint" in error_line(done.stderr)
    # (make's own trailer: "make: ***", or "make[1]: ***" when the suite itself runs under make)
    assert [line for line in done.stderr.splitlines() if not line.startswith("error: ")] == [
        line for line in done.stderr.splitlines() if re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert not (repo / "hrnet_om" / "1" / "model.onnx").exists()
