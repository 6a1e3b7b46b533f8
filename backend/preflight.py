"""The server's command line checked before any model loads: a mistake costs a second, not a
minute of loading. Each check raises UserError with one line naming the flag and what to do
(backend.cli's convention); `check` runs them all."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import ssl

from .cli import UserError

MAX_PORT = 65535


def check(args) -> None:
    check_repository(args.model_repository)
    check_tls(args)
    check_ports(args.host, endpoint_ports(args))


def check_repository(path: str) -> None:
    if not os.path.exists(path):
        raise UserError(f"--model-repository {path}: no such folder (give the folder that holds "
                        f"one sub-folder per model, e.g. model_repository)")
    if not os.path.isdir(path):
        raise UserError(f"--model-repository {path} is a file: give the folder that holds one "
                        f"sub-folder per model")
    if not os.access(path, os.R_OK | os.X_OK):
        raise UserError(f"--model-repository {path}: permission denied (the server must be "
                        f"able to list it)")


def check_tls(args) -> None:
    """Files present, certificate and key a pair, root certificate readable."""
    if not (args.grpc_use_ssl or args.grpc_use_ssl_mutual):
        return
    flag = "--grpc-use-ssl-mutual" if args.grpc_use_ssl_mutual else "--grpc-use-ssl"
    for option, path in (("--grpc-server-key", args.grpc_server_key),
                         ("--grpc-server-cert", args.grpc_server_cert)):
        _need_file(flag, option, path)
    if args.grpc_use_ssl_mutual and not args.grpc_root_cert:
        raise UserError("--grpc-use-ssl-mutual needs --grpc-root-cert (the CA that signed the "
                        "clients' certificates)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(args.grpc_server_cert, args.grpc_server_key)
    except ssl.SSLError as err:
        what = ("are not a pair (the key does not belong to the certificate)"
                if "KEY_VALUES_MISMATCH" in str(err) else "cannot be read as PEM")
        raise UserError(f"--grpc-server-cert {args.grpc_server_cert} and --grpc-server-key "
                        f"{args.grpc_server_key} {what}: {err.reason or err}") from None
    if args.grpc_root_cert:
        _need_file(flag, "--grpc-root-cert", args.grpc_root_cert)
        try:
            context.load_verify_locations(args.grpc_root_cert)
        except ssl.SSLError as err:
            raise UserError(f"--grpc-root-cert {args.grpc_root_cert}: not a PEM certificate "
                            f"({err.reason or err})") from None


def _need_file(flag: str, option: str, path: str) -> None:
    if not path:
        raise UserError(f"{flag} needs {option} FILE (PEM)")
    if not os.path.isfile(path):
        raise UserError(f"{option} {path}: no such file")
    if not os.access(path, os.R_OK):
        raise UserError(f"{option} {path}: permission denied")


def endpoint_ports(args) -> list[tuple[str, int]]:
    """(flag, port) of every endpoint this server will open."""
    return [(flag, port) for enabled, flag, port in ((args.allow_grpc, "--grpc-port", args.grpc_port),
                                                     (args.allow_http, "--http-port", args.http_port),
                                                     (args.allow_metrics, "--metrics-port", args.metrics_port))
            if enabled]


def check_ports(host: str, ports: list[tuple[str, int]]) -> None:
    """Each fixed port free on `host` (port 0 is always free), no port given twice. A test
    bind: the endpoints bind for real only after the models loaded."""
    seen: dict[int, str] = {}
    for flag, port in ports:
        if port == 0:
            continue
        if port in seen:
            raise UserError(f"{seen[port]} and {flag} are both {port}: give each endpoint its "
                            f"own port")
        seen[port] = flag
        _try_bind(host, flag, port)


def _try_bind(host: str, flag: str, port: int) -> None:
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise UserError(f"--host {host}: cannot resolve it ({err.strerror})") from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC and aiohttp bind: a port in TIME_WAIT is free for them.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as err:
                raise UserError(_bind_error(host, flag, port, err)) from None


def _bind_error(host: str, flag: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return (f"{flag} {port}: the port is already in use on {host} (another server "
                f"running?): stop it, or give another port (0 = any free port)")
    if err.errno == errno.EACCES:
        return f"{flag} {port}: permission denied (ports below 1024 need privileges)"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"--host {host}: not an address of this machine"
    return f"{flag} {port}: cannot listen on {host}:{port} ({err.strerror})"


def port(text: str) -> int:
    """argparse type of a port flag: 0..65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a port number") from None
    if not 0 <= value <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0..{MAX_PORT}; "
                                         f"0 = any free port)")
    return value
