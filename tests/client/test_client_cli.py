"""client.visualize and client.coco_eval as a newcomer meets them: a wrong IMAGE or --limit is
one line and exit 1, random weights are announced with the results, and the COCO table
explains a -1.000."""

import pytest

from backend import cli
from client import coco, coco_eval, visualize


@pytest.mark.parametrize("case, expected", [
    ("missing", "error: {path}: no such file (give a JPEG or PNG image)"),
    ("folder", "error: {path} is a folder: give one JPEG or PNG image"),
    ("not an image", "error: {path} is not an image OpenCV can decode (give a JPEG or PNG)"),
])
def test_visualize_bad_image_is_one_line(fake_server, tmp_path, capsys, case, expected):
    """Each was a traceback (FileNotFoundError, IsADirectoryError, ValueError)."""
    path = {"missing": tmp_path / "nope.jpg", "folder": tmp_path,
            "not an image": tmp_path / "notes.jpg"}[case]
    if case == "not an image":
        path.write_text("hello\n")
    assert visualize.main([str(path), "--url", fake_server.url]) == cli.EXIT_FAILED
    assert capsys.readouterr().err.splitlines() == [expected.format(path=path)]


def test_visualize_says_the_weights_are_random(pose_server, mini_set, tmp_path, capsys):
    """The tiny served network has random weights: the poses are noise, and the output says so
    (it printed only "0 people found" on an image with one person)."""
    out = tmp_path / "pose.png"
    assert visualize.main([str(mini_set.path(785)), "--url", pose_server.url, "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "RANDOM weights (hrnet_om): the poses are noise" in printed.out
    assert "MEANINGLESS" in printed.err


def test_visualize_trained_weights_say_nothing_of_it(fake_server, mini_set, tmp_path, capsys):
    assert visualize.main([str(mini_set.path(785)), "--url", fake_server.url,
                           "-o", str(tmp_path / "p.png")]) == 0
    printed = capsys.readouterr()
    assert "RANDOM" not in printed.out + printed.err


@pytest.mark.parametrize("limit", ["0", "-3"])
def test_coco_eval_limit_below_one_is_refused(fake_server, tmp_path, capsys, limit):
    with pytest.raises(SystemExit) as exit_info:
        coco_eval.main(["--url", fake_server.url, "--limit", limit, "--out", str(tmp_path / "r.json")])
    assert exit_info.value.code == cli.EXIT_FAILED
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and f"--limit {limit}: evaluate at least 1 image" in err[0]
    assert not (tmp_path / "r.json").exists()


def test_minus_one_is_explained(fake_server, tmp_path, capsys):
    """Image 785 holds one large person only: AP (M) and AR (M) have nothing to measure."""
    out = tmp_path / "r.json"
    assert coco_eval.main(["--url", fake_server.url, "--limit", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "AP (M)     -1.000" in printed
    assert coco.NOT_COMPUTED_NOTE in printed
    assert "-1.000 = not computed" in coco.NOT_COMPUTED_NOTE


def test_no_note_without_minus_one():
    table = coco.format_table({name: 0.5 for name in coco.STAT_NAMES})
    assert "not computed" not in table
