"""client.coco_eval over several endpoints (client/endpoints.py) against in-process fake servers:
spreading, a refusal (UNAVAILABLE) sent again elsewhere, an endpoint down from the start.
tests/client/test_failover.py kills a real server in the middle of a run."""

import time

import grpc
import pytest

from client import coco_eval
from tests.client.conftest import read_summary
from tests.client.fake_triton import FakeServer, FakeTriton


def run(urls, tmp_path, *extra):
    out = tmp_path / "results.json"
    code = coco_eval.main(["--url", ",".join(urls), "--out", str(out), *extra])
    return code, out


def test_images_are_spread_over_the_endpoints(truth_answers, tmp_path, capsys):
    with FakeServer(FakeTriton(truth_answers)) as a, FakeServer(FakeTriton(truth_answers)) as b:
        code, out = run([a.url, b.url], tmp_path)   # one at a time: in turns
        assert code == 0
        assert len(a.triton.requests) == len(b.triton.requests) == 2
    summary = read_summary(out)
    assert summary["stats"] == {name: 1.0 for name in summary["stats"]}
    assert summary["retries"] == 0
    assert "2 endpoints, 0 request(s) sent again" in capsys.readouterr().out


def test_a_refusal_goes_to_another_endpoint_and_the_refuser_rests(truth_answers, tmp_path):
    refusing = FakeTriton(truth_answers, reject=set(truth_answers),
                          reject_code=grpc.StatusCode.UNAVAILABLE)
    with FakeServer(refusing) as a, FakeServer(FakeTriton(truth_answers)) as b:
        code, out = run([a.url, b.url], tmp_path)
        assert code == 0
        # The first image went to a, was refused and answered by b; a then rests (5 s).
        assert len(refusing.requests) == 1 and len(b.triton.requests) == 4
    summary = read_summary(out)
    assert summary["retries"] == 1 and summary["failures"] == []
    assert summary["stats"] == {name: 1.0 for name in summary["stats"]}


def test_every_endpoint_refusing_fails_the_image(truth_answers, mini_set, tmp_path):
    bad = next(iter(truth_answers))
    a = FakeTriton(truth_answers, reject={bad}, reject_code=grpc.StatusCode.UNAVAILABLE)
    b = FakeTriton(truth_answers, reject={bad}, reject_code=grpc.StatusCode.UNAVAILABLE)
    with FakeServer(a) as sa, FakeServer(b) as sb:
        code, out = run([sa.url, sb.url], tmp_path)
    assert code == 1   # the image failed (listed); the servers are live, so the run went on
    summary = read_summary(out)
    assert len(summary["failures"]) == 1 and summary["evaluated_images"] == 3
    assert a.requests.count(bad) == b.requests.count(bad) == 1


def test_an_endpoint_down_from_the_start_is_left_out(truth_answers, free_url, tmp_path, capsys):
    with FakeServer(FakeTriton(truth_answers)) as b:
        code, out = run([free_url, b.url], tmp_path)
        assert code == 0 and len(b.triton.requests) == 4
    assert f"no server listens at {free_url}" in capsys.readouterr().err
    assert read_summary(out)["evaluated_images"] == 4


def test_an_endpoint_down_does_not_hold_up_a_ready_one_for_the_wait(truth_answers, free_url, tmp_path, capsys):
    """--wait-ready is how long to wait for *some* endpoint: with one ready, the run starts at once
    rather than after waiting the whole time for the one that is down (listed first)."""
    started = time.monotonic()
    with FakeServer(FakeTriton(truth_answers)) as b:
        code, out = run([free_url, b.url], tmp_path, "--wait-ready", "120")
        assert code == 0 and len(b.triton.requests) == 4
    assert time.monotonic() - started < 60
    assert f"no server listens at {free_url}" in capsys.readouterr().err


def test_no_endpoint_reachable_exits_2_naming_each(free_url, tmp_path, capsys):
    other = free_url.rsplit(":", 1)[0] + ":1"
    with pytest.raises(SystemExit) as exited:
        run([free_url, other], tmp_path)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert free_url in err and other in err
