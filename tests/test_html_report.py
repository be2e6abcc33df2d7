"""The run page: which reports belong to the latest run (no pipeline needed)."""
import os

import pytest

from imgpipe.pipeline import html_report


def _report(root, component, number, name, when):
    folder = root / "pipelines" / "p" / component / number
    folder.mkdir(parents=True)
    (folder / name).write_text("{}")
    (folder / name.replace(".json", ".txt")).write_text("report")
    os.utime(folder / name, (when, when))
    return folder


def test_the_latest_run_is_the_newest_ingestion_and_what_came_after_it(tmp_path):
    _report(tmp_path, "ImageExampleGen/report", "1", "ingestion_report.json", 100)
    old_evaluation = _report(tmp_path, "EvaluationGate/report", "5", "evaluation_report.json", 150)
    ingestion = _report(tmp_path, "ImageExampleGen/report", "7", "ingestion_report.json", 200)
    # The new run stopped at the gate: its report was kept under failed/.
    refused = _report(tmp_path, "ValidationGate/failed", "9", "validation_report.json", 210)
    (refused / "samples.png").write_bytes(b"png")
    found = html_report.latest_run_reports(str(tmp_path))
    assert found == {"Ingestion": str(ingestion), "Validation": str(refused), "Evaluation": None}
    assert str(old_evaluation) not in found.values()   # an earlier run's, not this one's
    page = html_report.write_run_page(str(tmp_path))
    text = open(page).read()
    assert "validation_report.txt (failed run, kept)" in text and 'src="pipelines/p/' in text
    # A run that stopped before ingesting has no page of its own.
    with pytest.raises(FileNotFoundError, match="no ingestion, validation or evaluation report"):
        html_report.write_run_page(str(tmp_path), since=300)
