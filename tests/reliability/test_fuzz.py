"""Hypothesis fuzzing of a running server with random inference, repository and shared-memory
calls: it never dies, never answers UNKNOWN, never hangs, logs no escaped exception, keeps serving
correct requests, and (long run) its resident memory grows less than 10 %.

Short run in `make test`; the long one is `make fuzz`:
    FUZZ_EXAMPLES=10000 [FUZZ_SECONDS=600] pytest -s tests/reliability/test_fuzz.py -m slow
"""

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings

from proto import grpc_service_pb2 as pb

from .conftest import escaped_exceptions
from .fuzzing import Fuzzer, calls, model_specs
from .samples import check_serves
from .wire import OK, Client, ShmRegion, rss_bytes

SHORT_EXAMPLES = 500
CHUNK = 250          # examples between two health checks and RSS samples
MAX_RSS_GROWTH = 0.10


def run_fuzz(server, examples: int, seconds: float):
    """Fuzz until `examples` calls were sent or `seconds` passed. Returns the Fuzzer and the RSS
    samples (bytes) taken after each chunk."""
    deadline = time.monotonic() + seconds
    with Client(server.url) as client, ShmRegion(4096, "relfuzz") as region:
        code, details, _ = client.call("SystemSharedMemoryRegister", pb.SystemSharedMemoryRegisterRequest(
            name="rel_fuzz", key=region.key, offset=0, byte_size=4096))
        assert code == OK, details
        fuzzer = Fuzzer(client, server)
        # The first region name is the fuzzer's own (registered above, never unregistered).
        strategy = calls(model_specs(client), ["rel_fuzz", "ghost"], [region.key])
        rss = []

        @settings(max_examples=min(CHUNK, examples), deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def chunk(call):
            fuzzer.send(call)

        while fuzzer.calls < examples and time.monotonic() < deadline:
            chunk()
            assert client.live()
            check_serves(client, "identity")
            check_serves(client, "ensemble_add")
            rss.append(rss_bytes(server.proc.pid))
        client.call("SystemSharedMemoryUnregister", pb.SystemSharedMemoryUnregisterRequest(name=""))
    return fuzzer, rss


def test_fuzz_short(rel_server):
    fuzzer, _ = run_fuzz(rel_server, SHORT_EXAMPLES, 120)
    print("\nfuzz (short):", fuzzer.summary())
    assert fuzzer.calls >= SHORT_EXAMPLES
    assert escaped_exceptions(rel_server.log) == []


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("FUZZ_EXAMPLES"), reason="long fuzz: set FUZZ_EXAMPLES (make fuzz)")
def test_fuzz_long(rel_server):
    examples = int(os.environ["FUZZ_EXAMPLES"])
    seconds = float(os.environ.get("FUZZ_SECONDS", 600))
    fuzzer, rss = run_fuzz(rel_server, examples, seconds)
    base, end = rss[0], rss[-1]  # after the first chunk: models warmed up, caches filled
    growth = (end - base) / base
    print(f"\nfuzz (long): {fuzzer.summary()}\n"
          f"server RSS: {base / 2**20:.1f} MiB after the first {CHUNK} calls, {end / 2**20:.1f} MiB at the "
          f"end ({growth:+.1%}); peak {max(rss) / 2**20:.1f} MiB\n{fuzzer.top_messages()}")
    assert escaped_exceptions(rel_server.log) == []
    assert growth < MAX_RSS_GROWTH
