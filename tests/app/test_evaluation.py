"""What Evaluate scores a checkpoint on (rdexpert.app.evaluation): the labelled test split from the checkpoint's
config, or the stored test report.
"""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from helpers import MPDD  # noqa: E402

from .support import GRADIO_WARNINGS, ROOT  # noqa: E402

pytestmark = GRADIO_WARNINGS


def test_test_split_is_found_from_the_checkpoint_config(tmp_path):
    from rdexpert.app.evaluation import NoTestSplit, labelled_samples
    from rdexpert.app.registry import Entry

    if not (MPDD / "metal_plate").is_dir():
        pytest.skip(f"shared MPDD data not found at {MPDD}")
    config = {"model": {"variant": "full"}, "dataset": {"root": "../shared/data/mpdd", "category": "metal_plate"}}
    samples, text = labelled_samples(Entry("k", "ref", "local", config=config), search=[ROOT])
    assert len(samples) == 107 and sum(s.label for s in samples) == 81 and "metal_plate" in text
    missing = {"model": {}, "dataset": {"root": str(tmp_path / "nowhere"), "category": "metal_plate"}}
    with pytest.raises(NoTestSplit, match="not on this machine"):
        labelled_samples(Entry("k", "ref", "local", config=missing), search=[ROOT])


def test_a_report_without_every_score_falls_back_to_the_overlay_names(tmp_path):
    """Reports written before scores.csv existed still give the scores their overlay file names carry."""
    from rdexpert.evaluation.evaluate import read_report_scores

    (tmp_path / "overlays").mkdir()
    for name in ("defect_test_00026_score2.619.png", "good_test_00003_score1.402.png", "notes.png"):
        (tmp_path / "overlays" / name).write_bytes(b"")
    assert read_report_scores(tmp_path) == [("test_00026", 1, 2.619), ("test_00003", 0, 1.402)]
    (tmp_path / "scores.csv").write_text("image,label,score\ngood/a,b.png,0,1.5\n")  # a comma in a name stays
    assert read_report_scores(tmp_path) == [("good/a,b.png", 0, 1.5)]
