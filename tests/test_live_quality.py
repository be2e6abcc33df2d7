"""Live quality from labelled answers: intervals, the challenger test, labels needed. No TensorFlow."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from imgpipe.serving import live_quality as lq


def test_the_wilson_interval_holds_the_estimate_and_narrows_with_labels():
    low, high = lq.wilson_interval(45, 50)
    assert low < 0.9 < high and high <= 1.0
    wide, narrow = lq.wilson_interval(9, 10), lq.wilson_interval(900, 1000)
    assert wide[1] - wide[0] > 5 * (narrow[1] - narrow[0])
    assert lq.wilson_interval(0, 0) == (0.0, 1.0)


def rows(variant, uid, outcomes, prefix=""):
    return [lq.Labelled(variant, uid, "cat" if right else "dog", "cat", 0.8,
                        dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc), f"{prefix}{i}")
            for i, right in enumerate(outcomes)]


def test_quality_per_class_with_intervals():
    found = lq.quality(rows("champion", "a", [True] * 8 + [False] * 2), ["cat", "dog"])
    assert found.labelled == 10 and found.accuracy == pytest.approx(0.8)
    cat = found.per_class["cat"]
    assert cat["recall"] == pytest.approx(0.8) and cat["precision"] == 1.0
    assert cat["f1"] == pytest.approx(2 * 0.8 / 1.8)
    assert cat["recall_interval"][0] < 0.8 < cat["recall_interval"][1]
    assert cat["f1_interval"][0] <= cat["f1"] <= cat["f1_interval"][1]
    assert found.per_class["dog"]["support"] == 0 and found.per_class["dog"]["recall"] is None
    assert found.predicted_share == {"cat": 0.8, "dog": 0.2}


def test_better_not_better_and_undecided_say_why():
    rng = np.random.default_rng(0)
    champion, better = rng.random(400) < 0.70, rng.random(400) < 0.85
    found = lq.compare(champion, better, margin=0.0)
    assert found.decision == lq.BETTER and found.p_value < 0.05 and "better at 95% confidence" in found.detail
    worse = lq.compare(better, champion, margin=0.0)
    assert worse.decision == lq.NOT_BETTER and worse.labels_needed is None
    close = lq.compare(champion[:60], (rng.random(60) < 0.78), margin=0.0)
    assert close.decision == lq.UNDECIDED and close.labels_needed > 60
    assert f"about {close.labels_needed} labels per variant" in close.detail
    few = lq.compare(champion[:10], better[:10], minimum=30)
    assert few.decision == lq.UNDECIDED and "at least 30 of each are needed" in few.detail
    # Better by a margin the evidence does not clear is not better.
    assert lq.compare(champion, better, margin=0.2).decision != lq.BETTER


def test_labels_needed_follows_the_textbook_two_proportion_formula():
    # 0.70 vs 0.80, one-sided 5%, 80% power: (1.645 + 0.842)^2 (0.21 + 0.16) / 0.01 = 229
    assert lq.labels_needed(0.70, 0.80, 0.0, 0.05) == 229
    assert lq.labels_needed(0.80, 0.70, 0.0, 0.05) is None


def test_a_shadow_challenger_is_compared_on_the_requests_it_shadowed():
    champion = rows("champion", "a", [True] * 50 + [False] * 50, prefix="c")
    shadowed_ids = {r.prediction_id for r in champion[40:60]}        # 10 right, 10 wrong
    challenger = [lq.Labelled("challenger", "b", "cat", "cat", 0.9, r.created_at, f"s{i}", r.prediction_id)
                  for i, r in enumerate(champion) if r.prediction_id in shadowed_ids]
    mine, theirs = lq.paired_outcomes(champion + challenger, "a", "b")
    assert len(mine) == len(theirs) == 20 and sum(mine) == 10 and all(theirs)
    report = lq.report(champion + challenger, lambda uid: ["cat", "dog"], "a", 0.0, 0.95, 10)
    assert [m["variant"] for m in report["models"]] == ["challenger", "champion"]
    assert report["comparison"]["champion_labelled"] == 20
    assert "challenger vs champion" in lq.format_report(report)


def test_the_chart_is_a_png(tmp_path):
    start = dt.datetime(2026, 12, 3, tzinfo=dt.timezone.utc)
    labelled = [lq.Labelled(v, v, "cat", "cat" if i % 3 else "dog", 0.8, start + dt.timedelta(minutes=i))
                for i in range(60) for v in ("champion", "challenger")]
    path = lq.chart(labelled, str(tmp_path / "live.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"
