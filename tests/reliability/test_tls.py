"""TLS for gRPC with tritonserver's flags, certificates made at test time (openssl; the `certs`
fixture of tests/conftest.py), clients with tritonclient's `ssl=True` options: server-only TLS
and mutual TLS."""

import shutil

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tests.backend.rpc_helpers import infer_input
from tests.conftest import subset_repo
from tests.serverproc import start_server

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


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
