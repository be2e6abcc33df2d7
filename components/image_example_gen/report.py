"""The ingestion report: what was read, converted and quarantined, and the verdict.

Pure functions over plain data; the executor feeds them what the Beam job
wrote, the CLI prints their text.
"""
from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from typing import Dict, Iterable, List, Optional

from imgpipe.components.image_example_gen.sources import FOLDERS

REPORT_JSON = "ingestion_report.json"
REPORT_TEXT = "ingestion_report.txt"
QUARANTINE_CSV = "quarantine.csv"

BAD = "bad"
IGNORED = "ignored"
EMPTY_CLASS = "empty class folder"


class IngestionFailed(RuntimeError):
    """Ingestion refused the data; the message says why and where to look."""


def label_name(label: int, class_names: List[str]) -> str:
    if label < 0:
        return "(no label)"
    if label < len(class_names):
        return class_names[label]
    return f"label {label} (outside the {len(class_names)} known classes)"


def _errors(examples: int, bad: int, candidates: int, max_bad_fraction: float,
            all_labels: Counter, class_names: List[str]) -> List[str]:
    """Why the ingested data is refused (empty, too many bad inputs, one class)."""
    errors = []
    bad_fraction = bad / candidates if candidates else 0.0
    if examples == 0:
        errors.append(f"the source produced no examples ({bad} inputs could not be read)"
                      if bad else "the source is empty: no images or records were found")
    elif bad_fraction > max_bad_fraction:
        errors.append(
            f"{bad} of {candidates} inputs ({bad_fraction:.2%}) could not be read, above the "
            f"allowed fraction {max_bad_fraction:.2%} (--max-bad-fraction)")
    labelled = [label for label in all_labels if label >= 0]
    if examples and len(labelled) == 1:
        errors.append(f"all examples have one class ({label_name(labelled[0], class_names)}); "
                      "a classifier needs at least two")
    return errors


def _warnings(all_labels: Counter, class_names: List[str], unknown_classes: List[str],
              quarantine: List[dict]) -> List[str]:
    warnings = []
    if unknown_classes:
        warnings.append(
            f"class folders not in the configured classes: {', '.join(unknown_classes)}; "
            f"they were labelled {len(class_names) - len(unknown_classes)} and up, outside the "
            "configured label domain")
    empty = [row["path"] for row in quarantine if row["kind"] == EMPTY_CLASS]
    if empty:
        warnings.append(f"empty class folders: {', '.join(empty)}")
    unlabelled = all_labels.get(-1, 0)
    if unlabelled:
        warnings.append(f"{unlabelled} examples carry no label")
    return warnings


def build_report(*, source: str, source_format: str, span: int, image_shape: List[int],
                 class_names: List[str], unknown_classes: List[str],
                 split_label_counts: Dict[str, Dict[int, int]],
                 quarantine: List[dict], conversions: Dict[str, int],
                 max_bad_fraction: float) -> dict:
    """Assembles the report and decides whether ingestion succeeded."""
    quarantine = sorted(quarantine, key=lambda row: (row["kind"], row["path"]))
    bad = sum(1 for row in quarantine if row["kind"] == BAD)
    examples = sum(sum(counts.values()) for counts in split_label_counts.values())
    candidates = examples + bad
    bad_fraction = bad / candidates if candidates else 0.0

    splits = {}
    all_labels: Counter = Counter()
    for split, counts in sorted(split_label_counts.items()):
        per_class = {label_name(label, class_names): count
                     for label, count in sorted(counts.items())}
        splits[split] = {"examples": sum(counts.values()), "per_class": per_class}
        all_labels.update(counts)

    errors = _errors(examples, bad, candidates, max_bad_fraction, all_labels, class_names)
    warnings = _warnings(all_labels, class_names, unknown_classes, quarantine)
    return {
        "status": "failed" if errors else "ok",
        "errors": errors,
        "warnings": warnings,
        "source": source,
        "format": source_format,
        "span": span,
        "image_shape": list(image_shape),
        "class_names": class_names,
        "examples": examples,
        "bad": bad,
        "ignored": sum(1 for row in quarantine if row["kind"] == IGNORED),
        "bad_fraction": bad_fraction,
        "max_bad_fraction": max_bad_fraction,
        "splits": splits,
        "conversions": dict(sorted(conversions.items(), key=lambda kv: (-kv[1], kv[0]))),
        "quarantine": quarantine,
    }


def summarize_conversions(conversions: Dict[str, int]) -> Dict[str, int]:
    """Folds 'resized from HxW' variants into one line per conversion kind."""
    folded: Counter = Counter()
    for name, count in conversions.items():
        folded["resized" if name.startswith("resized from") else name] += count
    return dict(folded)


def describe_source_sizes(conversions: Dict[str, int], most_common: int = 3) -> str:
    """One line for the sizes images were resized from, however many there are:
    "source sizes resized: 212 sizes, 120-500 wide, 93-500 high; most common
    500x375 x84, 375x500 x19, 500x333 x12" ('' when nothing was resized)."""
    sizes = Counter()
    for name, count in conversions.items():
        if name.startswith("resized from "):
            sizes[name[len("resized from "):]] += count
    if not sizes:
        return ""
    top = ", ".join(f"{size} x{count}" for size, count in
                    sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))[:most_common])
    if len(sizes) <= most_common:
        return f"source sizes resized: {top}"
    dims = [tuple(int(v) for v in size.split("x")) for size in sizes]
    # HxW, as ops name them ("resized from 48x64" is 48 high, 64 wide)
    heights, widths = [d[0] for d in dims], [d[1] for d in dims]
    return (f"source sizes resized: {len(sizes)} sizes, {min(widths)}-{max(widths)} wide, "
            f"{min(heights)}-{max(heights)} high; most common {top}")


def format_report(report: dict, max_quarantine_lines: int = 20) -> str:
    lines = []
    shape = "x".join(str(v) for v in report["image_shape"])
    kept = (f"files kept encoded, checked at {shape}" if report["format"] == FOLDERS
            else f"{shape} images")
    lines.append(f"Ingestion of {report['source']} ({report['format']}, span {report['span']}) "
                 f"-> {kept}: {report['status'].upper()}")
    for split, info in report["splits"].items():
        lines.append(f"  split {split}: {info['examples']} examples")
        for name, count in info["per_class"].items():
            lines.append(f"    {name:<40} {count:>8}")
    if report["conversions"]:
        lines.append("  conversions (same TensorFlow ops as the serving signature):")
        for name, count in summarize_conversions(report["conversions"]).items():
            lines.append(f"    {name:<40} {count:>8}")
        sizes = describe_source_sizes(report["conversions"])
        if sizes:
            lines.append(f"    {sizes}")
    else:
        lines.append("  conversions: none")
    lines.append(f"  quarantined: {report['bad']} bad ({report['bad_fraction']:.2%}, allowed "
                 f"{report['max_bad_fraction']:.2%}), {report['ignored']} ignored non-image files")
    for row in report["quarantine"][:max_quarantine_lines]:
        lines.append(f"    [{row['kind']}] {row['path']}: {row['reason']}")
    hidden = len(report["quarantine"]) - max_quarantine_lines
    if hidden > 0:
        lines.append(f"    ... and {hidden} more (see {QUARANTINE_CSV})")
    for warning in report["warnings"]:
        lines.append(f"  WARNING: {warning}")
    for error in report["errors"]:
        lines.append(f"  ERROR: {error}")
    return "\n".join(lines)


def quarantine_csv(rows: Iterable[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["kind", "path", "reason"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row[k] for k in ("kind", "path", "reason")})
    return buffer.getvalue()


def write_report(report: dict, directory: str, writer=None) -> Dict[str, str]:
    """Writes JSON, text and CSV; returns their paths."""
    if writer is None:
        def writer(path: str, text: str) -> None:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    paths = {
        "json": os.path.join(directory, REPORT_JSON),
        "text": os.path.join(directory, REPORT_TEXT),
        "quarantine": os.path.join(directory, QUARANTINE_CSV),
    }
    writer(paths["json"], json.dumps(report, indent=2) + "\n")
    writer(paths["text"], format_report(report, max_quarantine_lines=len(report["quarantine"])) + "\n")
    writer(paths["quarantine"], quarantine_csv(report["quarantine"]))
    return paths


def read_report(directory: str) -> Optional[dict]:
    path = os.path.join(directory, REPORT_JSON)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)
