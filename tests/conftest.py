"""Shared fixtures: test model repositories copied to a temp dir (ONNX files built there) and real
server processes on loopback ports."""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "models"))

from tests.serverproc import start_server  # noqa: E402

TEST_MODELS = os.path.join(ROOT, "tests", "models")
POSE_REPO = os.path.join(ROOT, "model_repository")


def copy_test_repo(dest) -> str:
    """tests/models copied to `dest`, with its ONNX files built."""
    import build_onnx
    repo = os.path.join(str(dest), "models")
    shutil.copytree(TEST_MODELS, repo, ignore=shutil.ignore_patterns("__pycache__", "build_onnx.py"))
    build_onnx.add_sub(os.path.join(repo, "add_onnx", "1", "model.onnx"))
    return repo


def subset_repo(test_repo, dest, *names) -> pathlib.Path:
    """A repository at `dest` holding copies of the named models of `test_repo`."""
    repo = pathlib.Path(dest)
    for name in names:
        shutil.copytree(os.path.join(test_repo, name), repo / name)
    return repo


def build_pose_repo(dest) -> str:
    """The model directories of model_repository/ copied into `dest` (created if missing, may
    already hold other models), with a reduced-size random-weight HRNet exported there."""
    from hrnet import export
    repo = str(dest)
    for name in os.listdir(POSE_REPO):
        src = os.path.join(POSE_REPO, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(repo, name), dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.onnx"))
    export.main(["--out", os.path.join(repo, "hrnet_om", "1", "model.onnx"), "--width", "8",
                 "--blocks", "1", "--no-check"])
    return repo


@pytest.fixture(scope="session")
def test_repo(tmp_path_factory):
    return copy_test_repo(tmp_path_factory.mktemp("repo"))


@pytest.fixture(scope="session")
def server(test_repo):
    """A server on the test repository (control mode none): for tests that do not load/unload."""
    with start_server(test_repo) as s:
        yield s


@pytest.fixture(scope="session")
def triton_client(server):
    """tritonclient's gRPC client on the shared `server`."""
    import tritonclient.grpc as grpcclient
    c = grpcclient.InferenceServerClient(server.url)
    yield c
    c.close()


@pytest.fixture(scope="session")
def tiny_pose_repo(tmp_path_factory):
    """model_repository/ with a reduced-size random-weight HRNet (fast on 2 cores)."""
    return build_pose_repo(os.path.join(str(tmp_path_factory.mktemp("pose")), "model_repository"))


@pytest.fixture(scope="session")
def pose_server(tiny_pose_repo):
    with start_server(tiny_pose_repo) as s:
        yield s


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, both signed
    by the CA; and a second CA nobody trusts. Paths by name: ca_crt, server_key, client_crt..."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("certs")
    for ca in ("ca", "rogue_ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=rel test {ca}",
                 "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, ca in (("server", "ca"), ("client", "ca"), ("rogue_client", "rogue_ca")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout", f"{who}.key",
                 "-out", f"{who}.csr", cwd=d)
        ext = "server.ext" if who == "server" else "client.ext"
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", f"{who}.crt", cwd=d)
    return {p.stem + p.suffix.replace(".", "_"): str(p) for p in d.iterdir()}
