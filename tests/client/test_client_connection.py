"""The clients reach every server the project can start: TLS and mutual TLS (tritonclient's
options), the header of --grpc-restricted-protocol, a server that is still starting
(--wait-ready); and when they cannot, one line says why (exit 2). Real server processes."""

import socket
import subprocess
import sys
import time

import pytest

from backend import cli
from client import coco_eval, perf, visualize
from tests.serverproc import ROOT, start_server

HEADER = ("x-pose-key", "s3cret")
# Every API group the clients use needs the header, health included (so connecting finds out).
RESTRICTED = f"health,metadata,model-config,inference,statistics,shared-memory:{HEADER[0]}={HEADER[1]}"


@pytest.fixture(scope="module")
def guarded_server(tiny_pose_repo, certs):
    """Mutual TLS and a restricted protocol: the most demanding server the project starts."""
    with start_server(tiny_pose_repo, "--model-control-mode", "explicit",
                      "--load-model", "hrnet_pose", "--grpc-use-ssl-mutual",
                      "--grpc-server-cert", certs["server_crt"],
                      "--grpc-server-key", certs["server_key"],
                      "--grpc-root-cert", certs["ca_crt"],
                      "--grpc-restricted-protocol", RESTRICTED) as s:
        yield s


def tls_options(certs, client=True) -> list[str]:
    options = ["--ssl", "--root-certificates", certs["ca_crt"]]
    if client:
        options += ["--private-key", certs["client_key"], "--certificate-chain", certs["client_crt"]]
    return options


def header_option() -> list[str]:
    return ["-H", f"{HEADER[0]}:{HEADER[1]}"]


def test_every_client_reaches_a_mutual_tls_restricted_server(guarded_server, certs, mini_set,
                                                             tmp_path, capsys):
    url = ["--url", f"localhost:{guarded_server.port}"]   # the certificate names localhost
    options = [*url, *tls_options(certs), *header_option()]
    picture = tmp_path / "pose.png"
    assert visualize.main([str(mini_set.path(785)), *options, "-o", str(picture)]) == 0
    assert picture.is_file()
    out = tmp_path / "results.json"
    assert coco_eval.main([*options, "--limit", "1", "--out", str(out)]) == 0
    assert perf.main(["-m", "hrnet_pose", *options, "-p", "300", "-r", "3", "-s", "90"]) in (
        cli.EXIT_OK, cli.EXIT_UNSTABLE)
    capsys.readouterr()


@pytest.mark.parametrize("case, expected", [
    ("plain", "closed the connection: it probably requires TLS (use --ssl"),
    ("untrusted", "the server's certificate is not trusted (give its CA with --root-certificates"),
    ("no client certificate", "probably requires a client certificate (--private-key"),
    ("no header", f"expecting header '{HEADER[0]}' (pass it with --header NAME:VALUE)"),
])
def test_why_the_guarded_server_cannot_be_used(guarded_server, certs, capsys, case, expected):
    url = ["--url", f"localhost:{guarded_server.port}"]
    options = {"plain": header_option(),
               "untrusted": ["--ssl", *header_option()],
               "no client certificate": [*tls_options(certs, client=False), *header_option()],
               "no header": tls_options(certs)}[case]
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["-m", "hrnet_pose", *url, *options])
    assert exit_info.value.code == cli.EXIT_UNAVAILABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def test_tls_client_on_a_plain_server(server, certs, capsys):
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["-m", "identity", "-u", server.url, *tls_options(certs, client=False)])
    assert exit_info.value.code == cli.EXIT_UNAVAILABLE
    assert "the server does not speak TLS (drop --ssl)" in capsys.readouterr().err


def test_bad_connection_flags_are_usage_errors(tmp_path, capsys):
    assert perf.main(["-m", "identity", "--root-certificates", str(tmp_path / "ca.pem")]) == 1
    assert f"--root-certificates {tmp_path / 'ca.pem'}: no such file" in capsys.readouterr().err
    assert perf.main(["-m", "identity", "-H", "no-colon"]) == 1
    assert "--header 'no-colon': expected NAME:VALUE" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wait_ready_waits_for_a_server_still_starting(test_repo):
    port = free_port()
    client = subprocess.Popen(
        [sys.executable, "-m", "client.perf", "-m", "identity", "--shape", "INPUT0:4",
         "-u", f"127.0.0.1:{port}", "--wait-ready", "60", "-p", "200", "-r", "3", "-s", "90"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)   # the client is waiting; the server starts only now
        assert client.poll() is None, client.communicate()
        with start_server(test_repo, "--grpc-port", port, "--model-control-mode", "explicit",
                          "--load-model", "identity"):
            out, err = client.communicate(timeout=120)
    finally:
        client.kill()
    assert client.returncode in (cli.EXIT_OK, cli.EXIT_UNSTABLE), err
    assert "Request concurrency: 1" in out


def test_wait_ready_is_bounded(free_url, capsys):
    start = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        perf.main(["-m", "identity", "-u", free_url, "--wait-ready", "1"])
    assert 0.9 <= time.monotonic() - start < 10
    assert exit_info.value.code == cli.EXIT_UNAVAILABLE
    err = capsys.readouterr().err
    assert f"no server listens at {free_url}" in err and "(after waiting 1 s)" in err
