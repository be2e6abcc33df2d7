"""`imgpipe fuzz`: the evaluation gate's client-mistake matrix, on demand."""
from __future__ import annotations

import dataclasses
import glob
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

import click

from imgpipe.contract import ARTIFACTS
from imgpipe.pipeline import cli_options
from imgpipe.pipeline.config import Config


@dataclasses.dataclass
class FuzzTarget:
    model_dir: str         # the SavedModel, as exported
    split_dir: str         # the evaluation split's tf.Examples
    input_base: str        # where the original files are (source ids are relative to it)
    schema_dir: Optional[str] = None        # the run's curated schema (CuratedSchema)
    statistics_dir: Optional[str] = None    # the run's training statistics (StatisticsGen)


def _latest(pattern: str) -> Optional[str]:
    """The newest TFX execution folder matching `pattern` (numbered by execution id)."""
    found = [p for p in glob.glob(pattern) if os.path.basename(p).isdigit()]
    return max(found, key=lambda p: int(os.path.basename(p))) if found else None


def locate(target: Optional[str], config: Config) -> FuzzTarget:
    """A SavedModel folder (evaluated on the config's latest run), an output
    root or a pipeline root: the latest Trainer model and ImageExampleGen split."""
    path = Path(target) if target else config.output_root
    model_dir = str(path) if (path / "saved_model.pb").exists() else None
    pipeline = config.pipeline_root
    if model_dir is None:
        pipeline = path / "pipelines" / config.pipeline.name if (path / "pipelines").is_dir() else path
        trainer = _latest(str(pipeline / "Trainer" / "model" / "*"))
        if trainer is None:
            raise click.ClickException(f"{path}: no trained model found (expected a SavedModel "
                                       "folder, or an output root of `imgpipe run`)")
        model_dir = os.path.join(trainer, ARTIFACTS.serving_model)
    examples = _latest(str(pipeline / "ImageExampleGen" / "examples" / "*"))
    split_dir = os.path.join(examples or "", f"Split-{config.evaluation.split}")
    if examples is None or not os.path.isdir(split_dir):
        raise click.ClickException(f"{pipeline}: no evaluation split '{config.evaluation.split}' "
                                   "of an ingestion run found; run `imgpipe run` first")
    ingestion = os.path.join(pipeline, "ImageExampleGen", "report", os.path.basename(examples),
                             "ingestion_report.json")
    with open(ingestion, encoding="utf-8") as handle:
        source = json.load(handle)["source"]
    return FuzzTarget(model_dir, split_dir, source,
                      _latest(str(pipeline / "CuratedSchema" / "schema" / "*")),
                      _latest(str(pipeline / "StatisticsGen" / "statistics" / "*")))


def monitor_checks(found: FuzzTarget, config: Config):
    """The monitor's checks; its input-skew check when the run left a schema and statistics."""
    from imgpipe.components.fuzzer import flags
    return flags.monitor_checks(config.monitoring.min_mean_confidence,
                                config.monitoring.pixel_js_threshold, found.schema_dir,
                                found.statistics_dir)


def fuzz_target(found: FuzzTarget, config: Config, sample: int):
    """The rows, and the image spec and class names the model was trained with."""
    import tensorflow as tf

    from imgpipe.components.evaluation_gate import parity
    from imgpipe.components.fuzzer import fuzz, scoring
    from imgpipe.contract import ImageSpec
    with open(ARTIFACTS.training_record_path(found.model_dir), encoding="utf-8") as handle:
        record = json.load(handle)
    spec, class_names = ImageSpec.from_record(record), list(record["class_names"])
    inputs = parity.load_inputs(found.split_dir, found.input_base, spec.shape)
    originals, labels = fuzz.originals_of(inputs, spec, sample)
    policy = scoring.Policy(config.fuzz.max_accuracy_drop, config.fuzz.max_class_recall_drop,
                            dict(config.fuzz.accepted), config.fuzz.screen)
    return fuzz.run(tf.saved_model.load(found.model_dir), originals, labels, spec, class_names,
                    policy, progress=_to_stderr, checks=monitor_checks(found, config))


def _to_stderr(line: str) -> None:
    click.echo(line, err=True)


@click.command("fuzz")
@click.argument("target", required=False, type=click.Path(exists=True))
@click.option("--sample", type=click.IntRange(min=1), default=None,
              help="Evaluation inputs per mistake (default: the config's fuzz.sample).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the rows as JSON to this file.")
@cli_options.config_option
@cli_options.set_option
def fuzz_command(target, sample, json_path, config_path, sets: Tuple[str, ...]):
    """Send the evaluation split through every client mistake; say what the model
    refuses, what it accepts harmlessly and what it accepts with SILENT HARM.

    TARGET: a SavedModel folder, or an output root / pipeline root of `imgpipe run`
    (default: the config's output root; its latest model). Exit code 1 when a
    mistake is accepted silently at a cost and not listed in [fuzz.accepted].
    """
    from imgpipe.components.fuzzer import report
    config = cli_options.load(config_path, sets)
    found = locate(target, config)
    click.echo(f"model {found.model_dir}\nevaluation inputs {found.split_dir} (files under "
               f"{found.input_base})", err=True)
    rows: List = fuzz_target(found, config, sample or config.fuzz.sample)
    click.echo(report.format_table(rows))
    if json_path:
        Path(json_path).write_text(report.to_json(rows) + "\n", encoding="utf-8")
    failures = report.failures(rows)
    for failure in failures:
        click.echo(failure)
    if failures:
        sys.exit(1)
