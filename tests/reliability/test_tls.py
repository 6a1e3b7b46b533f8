"""TLS for gRPC with tritonserver's flags, certificates made at test time (openssl), clients
with tritonclient's `ssl=True` options: server-only TLS and mutual TLS."""

import shutil
import subprocess

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, both signed
    by the CA; and a second CA nobody trusts."""
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


@pytest.fixture(scope="module")
def tls_repo(test_repo, tmp_path_factory):
    return str(subset_repo(test_repo, tmp_path_factory.mktemp("tls") / "models", "identity"))


def _infer(client) -> np.ndarray:
    x = np.arange(6, dtype=np.float32).reshape(1, 6)
    out = client.infer("identity", [infer_input("INPUT0", x)]).as_numpy("OUTPUT0")
    np.testing.assert_array_equal(out, x)
    return out


def _refused(client):
    with pytest.raises(InferenceServerException) as err:
        client.is_server_live()
    assert "UNAVAILABLE" in str(err.value.status())
    client.close()


def test_tls(tls_repo, certs):
    with start_server(tls_repo, "--grpc-use-ssl", "--grpc-server-cert", certs["server_crt"],
                      "--grpc-server-key", certs["server_key"]) as s:
        url = f"localhost:{s.port}"
        with grpcclient.InferenceServerClient(url, ssl=True, root_certificates=certs["ca_crt"]) as c:
            assert c.is_server_live()
            _infer(c)
        # A plaintext client, and one that does not trust the server's CA, get nowhere.
        _refused(grpcclient.InferenceServerClient(url))
        _refused(grpcclient.InferenceServerClient(url, ssl=True, root_certificates=certs["rogue_ca_crt"]))
        assert s.alive()


def test_mutual_tls(tls_repo, certs):
    with start_server(tls_repo, "--grpc-use-ssl-mutual", "--grpc-server-cert", certs["server_crt"],
                      "--grpc-server-key", certs["server_key"], "--grpc-root-cert", certs["ca_crt"]) as s:
        url = f"127.0.0.1:{s.port}"
        with grpcclient.InferenceServerClient(
                url, ssl=True, root_certificates=certs["ca_crt"], private_key=certs["client_key"],
                certificate_chain=certs["client_crt"]) as c:
            assert c.is_server_live()
            _infer(c)
        # No client certificate, or one from a CA the server does not trust: refused.
        _refused(grpcclient.InferenceServerClient(url, ssl=True, root_certificates=certs["ca_crt"]))
        _refused(grpcclient.InferenceServerClient(
            url, ssl=True, root_certificates=certs["ca_crt"], private_key=certs["rogue_client_key"],
            certificate_chain=certs["rogue_client_crt"]))
        assert s.alive()


def test_tls_without_certificate_does_not_start(tls_repo):
    with pytest.raises(RuntimeError, match="--grpc-use-ssl needs --grpc-server-key"):
        start_server(tls_repo, "--grpc-use-ssl", timeout=60)
