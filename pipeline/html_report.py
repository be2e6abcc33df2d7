"""One HTML page per run: the ingestion, validation and evaluation reports and pictures.

`imgpipe run` writes it at the end of a run, `imgpipe report --html` again
for the latest run under an output root. A run's reports are the newest
ingestion report and the validation and evaluation reports written after it
(a run stopped by a gate has no later ones; the kept `failed/` reports count).
"""
from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Tuple

from imgpipe.components.evaluation_gate import report as evaluation_report
from imgpipe.components.image_example_gen import report as ingestion_report
from imgpipe.components.validation_gate import checks as validation
from imgpipe.components.validation_gate import data_look

PAGE = "report.html"
REPORTS = (("Ingestion", ingestion_report.REPORT_JSON, ingestion_report.REPORT_TEXT),
           ("Validation", validation.REPORT_JSON, validation.REPORT_TEXT),
           ("Evaluation", evaluation_report.REPORT_JSON, evaluation_report.REPORT_TEXT))


def _newest(run_dir: str, file_name: str, not_before: float = 0.0) -> Optional[str]:
    found = [p for p in glob.glob(os.path.join(run_dir, "**", file_name), recursive=True)
             if os.path.getmtime(p) >= not_before]
    return os.path.dirname(max(found, key=os.path.getmtime)) if found else None


def latest_run_reports(run_dir: str, since: float = 0.0) -> Dict[str, Optional[str]]:
    """Report kind -> the folder of the latest run's report of that kind (or
    None); with `since`, only an ingestion report written since then starts one."""
    first = _newest(run_dir, REPORTS[0][1], since)
    if first is None and since:
        return {kind: None for kind, _, _ in REPORTS}   # nothing ingested since then
    started = os.path.getmtime(os.path.join(first, REPORTS[0][1])) if first else 0.0
    return {kind: (first if kind == REPORTS[0][0] else _newest(run_dir, json_name, started))
            for kind, json_name, _ in REPORTS}


def _entries(folder: Optional[str], text_name: str) -> List[Tuple[str, str]]:
    if folder is None:
        return []
    entries = [(f"{text_name} (failed run, kept)" if f"{os.sep}failed{os.sep}" in folder
                else text_name, os.path.join(folder, text_name))]
    for name in sorted(os.listdir(folder)):
        if name.endswith((".png", ".html", ".csv")):   # pictures, TFDV views, quarantine list
            entries.append((name, os.path.join(folder, name)))
    return entries


def write_run_page(run_dir: str, output: Optional[str] = None, since: float = 0.0) -> str:
    """Writes the page (default <run_dir>/report.html); returns its path."""
    folders = latest_run_reports(run_dir, since)
    if not any(folders.values()):
        raise FileNotFoundError(f"{run_dir}: no ingestion, validation or evaluation report "
                                "found (run `imgpipe run` first)")
    sections = [(kind, _entries(folders[kind], text_name)) for kind, _, text_name in REPORTS]
    return data_look.write_index_html(output or os.path.join(run_dir, PAGE),
                                      f"imgpipe run reports: {os.path.abspath(run_dir)}", sections)
