"""A short soak in `make test` (the long one is `make soak`): concurrent unary, streaming and
pipeline clients; every answer comes back once, under its request's id, with the right data."""

import asyncio

from .conftest import escaped_exceptions
from .soak import Soak


def test_short_soak(rel_server):
    soak = asyncio.run(Soak(rel_server.url, clients=16, pose_clients=1, stream_clients=4, duration=3,
                            max_requests=3000).run())
    print("\n" + soak.table())
    lost, duplicated = soak.ledger.totals()
    assert len(soak.ledger.sent) > 100
    assert {k for k in soak.ledger.sent.values()} == {"identity", "ensemble_add", "ensemble_add (stream)",
                                                       "hrnet_pose"}
    assert (lost, duplicated, soak.ledger.unmatched) == (0, 0, 0)
    assert soak.ledger.error_count() == 0 and sum(soak.ledger.wrong.values()) == 0
    assert rel_server.alive() and escaped_exceptions(rel_server.log) == []
