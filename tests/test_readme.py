"""The README runs as written: its command and code blocks are read from README.md (whoever adds a
section is covered) and the cheap ones run against a real server (the tiny pose repository):
the Python client example, the model.py example, the clients' command lines, every `make`
target it names, and `--help` of every module it runs with `python -m`."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from backend import cli
from tests.serverproc import ROOT, start_server

README = Path(ROOT) / "README.md"
TEXT = README.read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
SERVED_CLIENTS = ("client.visualize", "client.coco_eval", "client.perf")


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(TEXT) if lang == language]


def commands() -> list[str]:
    """The command lines of the bash blocks: continuations joined, comments and blanks dropped."""
    lines = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#\s.*$", "", line).strip()
            if line:
                lines.append(line)
    return lines


def steps(command: str) -> list[list[str]]:
    """`a && b` -> [[a...], [b...]]"""
    return [shlex.split(part) for part in command.split("&&")]


PYTHON_M = sorted(set(re.findall(r"python -m ([A-Za-z_][\w.]*)", TEXT)))
MAKE_TARGETS = sorted(set(re.findall(r"`make ([a-z][\w-]*)", TEXT))
                      | {words[1] for c in commands() for words in steps(c)
                         if words[:1] == ["make"] and len(words) > 1})


def test_the_environment_is_entered_once_near_the_top():
    top = TEXT.split("\n## ")[0]
    assert "source .venv/bin/activate" in top and ".venv/bin/python -m" in top


def test_the_readme_has_blocks_to_check():
    """Guards the extraction: an empty list would make the tests below pass vacuously."""
    assert len(commands()) >= 5 and blocks("python") and len(PYTHON_M) >= 5 and MAKE_TARGETS


@pytest.mark.parametrize("target", MAKE_TARGETS)
def test_make_target_exists(target):
    makefile = (Path(ROOT) / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"make {target}: no such target"


@pytest.mark.parametrize("module", PYTHON_M)
def test_help_of_every_module(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout


def test_paths_in_command_blocks_exist_from_the_root():
    """Copy-pasteable from the repository root: every repository path a command reads exists."""
    for command in commands():
        for words in steps(command):
            for previous, word in zip([""] + words, words):
                if previous in ("-o", "--out", "-f") or word.startswith(("-", "/", "$")):
                    continue
                if re.fullmatch(r"(data|model_repository|scripts|tests)(/[\w.-]+)*/?", word):
                    assert (Path(ROOT) / word).exists(), f"{word} (in: {command})"


def runnable_here(words: list[str]) -> bool:
    """Not a command for data or placeholders this checkout lacks (/data/coco, <FILE>, ...)."""
    return not any((w.startswith("/") and not Path(w).exists()) or re.search(r"[<>…]", w)
                   for w in words)


def client_command_lines() -> list[list[str]]:
    runs = []
    for command in commands():
        for words in steps(command):
            if words[:2] == ["python", "-m"] and words[2] in SERVED_CLIENTS and runnable_here(words):
                runs.append(words[2:])
    return runs


def test_client_commands_run_against_a_real_server(pose_server, tmp_path):
    """Each client command line of the bash blocks, as written, plus where to reach the server
    and where to write (the last flag wins), and short windows for client.perf."""
    runs = client_command_lines()
    assert {words[0] for words in runs} == set(SERVED_CLIENTS), runs
    for i, (module, *args) in enumerate(runs):
        extra = ["--url", pose_server.url]
        if module == "client.visualize":
            extra += ["-o", str(tmp_path / f"pose{i}.png")]
        elif module == "client.coco_eval":
            extra += ["--out", str(tmp_path / f"results{i}.json")]
        else:
            extra += ["-p", "300", "-r", "3", "-s", "50"]
        done = subprocess.run([sys.executable, "-m", module, *args, *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode in (cli.EXIT_OK, cli.EXIT_UNSTABLE if module == "client.perf"
                                   else cli.EXIT_OK), (module, args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr


def test_python_client_examples(pose_server, monkeypatch):
    """Every Python block that talks to a server, run against the real one (from the root)."""
    examples = [b for b in blocks("python") if "localhost:800" in b]
    assert examples
    monkeypatch.chdir(ROOT)
    for example in examples:
        namespace = {}
        exec(compile(example.replace("localhost:8001", pose_server.url)
                     .replace("localhost:8000", pose_server.http_url), "README", "exec"), namespace)
        if "keypoints" in namespace:
            assert namespace["keypoints"].shape[1:] == (17, 3)
            assert namespace["scores"].shape == namespace["keypoints"].shape[:1]


def test_model_py_example(tmp_path):
    """The Python-backend example, in the repository layout and with the config its first line
    names, loads in a real server and answers as written (OUTPUT0 = 2 * INPUT0)."""
    (example,) = [b for b in blocks("python") if "class TritonPythonModel" in b]
    header = example.splitlines()[0]
    path = re.search(r"# (model_repository/(\w+)/1/model\.py)", header)
    tensors = re.search(r"input (\w+) (\w+) \[(\d+)\], output (\w+) (\w+) \[(\d+)\]", header)
    assert path and tensors, header
    name = path.group(2)
    in_name, in_type, in_dim, out_name, out_type, out_dim = tensors.groups()
    model_dir = tmp_path / name
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "1" / "model.py").write_text(example)
    (model_dir / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 0\n'
        f'input [ {{ name: "{in_name}" data_type: TYPE_{in_type} dims: [ {in_dim} ] }} ]\n'
        f'output [ {{ name: "{out_name}" data_type: TYPE_{out_type} dims: [ {out_dim} ] }} ]\n')
    x = np.arange(int(in_dim), dtype=np.float32) + 0.5
    with start_server(tmp_path) as s:
        client = grpcclient.InferenceServerClient(s.url)
        tensor = grpcclient.InferInput(in_name, [int(in_dim)], in_type)
        tensor.set_data_from_numpy(x)
        out = client.infer(name, [tensor]).as_numpy(out_name)
    np.testing.assert_array_equal(out, 2 * x)


def test_other_python_blocks_compile():
    for block in blocks("python"):
        compile(block, "README", "exec")
