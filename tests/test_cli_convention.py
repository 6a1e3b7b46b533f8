"""One convention for every command-line entry point a newcomer meets (backend/cli.py): a usage
error is one line on stderr, `error: <what> (see <prog> --help)`, and exit 1; each --help lists
its exit codes, and what it says of 1 and 2 is what the commands do."""

import re
import subprocess
import sys

import pytest

from backend import cli
from tests.serverproc import ROOT

# Each entry point with the arguments it requires, so that the flag below is the one mistake.
ENTRY_POINTS = {"backend.server": ["--model-repository", "model_repository"],
                "client.coco_eval": [], "client.perf": ["-m", "identity"],
                "client.visualize": ["image.jpg"], "hrnet.export": []}


def run(module, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def exit_codes(help_text: str) -> dict[int, str]:
    """The 'Exit codes:' paragraph of a --help text as {code: meaning}."""
    paragraph = " ".join(help_text.split("Exit codes:")[1].split())
    return {int(code): meaning for code, meaning in re.findall(r"(\d+) ([^;]+)", paragraph)}


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_usage_error_is_one_line_and_exit_1(module):
    done = run(module, *ENTRY_POINTS[module], "--no-such-flag")
    assert done.returncode == cli.EXIT_FAILED == 1
    assert done.stderr.splitlines() == [
        f"error: unrecognized arguments: --no-such-flag (see python -m {module} --help)"]


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_lists_the_exit_codes_the_command_uses(module):
    done = run(module, "--help")
    assert done.returncode == 0 and done.stderr == ""
    codes = exit_codes(done.stdout)
    assert codes[0] and "usage error" in codes[1]
    if module.startswith("client."):
        assert "unreachable" in codes[2], "the clients' 2: no server (not argparse's usage error)"
    else:
        assert 2 not in codes


def test_make_eval_script_reports_a_server_that_cannot_start(tmp_path):
    """scripts/eval.sh (make eval) with a repository that does not exist: the server's one line,
    exit 1, at once (not after waiting for a port)."""
    done = subprocess.run(["bash", "scripts/eval.sh"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable,
                                            "REPO": str(tmp_path / "nowhere"),
                                            "OUT": str(tmp_path / "out")})
    assert done.returncode == 1
    assert "the server did not start" in done.stdout
    assert f"error: --model-repository {tmp_path / 'nowhere'}: no such folder" in done.stdout
