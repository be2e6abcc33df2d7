"""The `imgpipe` command line."""
from __future__ import annotations

import glob
import json
import logging
import os
import sys
import time
import warnings
from typing import Optional, Tuple

import click

from imgpipe.contract import ARTIFACTS, SIGNATURES, ImageSpec
from imgpipe.pipeline import (
    cli_options,
    fuzz_cli,
    kubeflow_cli,
    project_cli,
    registry_cli,
    serving_cli,
    watch_cli,
)
from imgpipe.pipeline.config import Config


def _quiet_libraries(verbose: bool) -> None:
    """TensorFlow, absl and Beam log noise stays off unless --verbose."""
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    warnings.filterwarnings("ignore")
    root = logging.getLogger()
    root.handlers[:] = [logging.NullHandler()]
    root.setLevel(logging.ERROR)
    for name in ("apache_beam", "tensorflow", "absl", "tfx"):
        logging.getLogger(name).setLevel(logging.ERROR)
        logging.getLogger(name).propagate = False


def _load(config_path: Optional[str], overrides: dict, sets: Tuple[str, ...]) -> Config:
    return cli_options.load(config_path, sets, overrides)


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("../..") else path


def _echo_stage(stage, event: str, stream=None) -> None:
    if event == "started":
        click.echo(f"[start] {stage.name}", file=stream)
    elif event == "finished":
        cached = " (cached)" if stage.cached else ""
        click.echo(f"[done ] {stage.name}  {stage.seconds:.1f}s{cached}", file=stream)
        for key, uris in sorted(stage.artifacts.items()):
            for uri in uris:
                click.echo(f"          {key}: {_rel(uri)}", file=stream)
    else:
        click.echo(f"[FAIL ] {stage.name}  after {stage.seconds:.1f}s", file=stream)


class InputProblem(click.ClickException):
    """Bad input to a command: exit code 2, like usage errors."""
    exit_code = 2


def _print_validation_report(result) -> None:
    from imgpipe.components.validation_gate import executor as gate
    stage = result.stage("ValidationGate")
    if not stage or "report" not in stage.artifacts:
        return
    directory = stage.artifacts["report"][0]
    text_path = os.path.join(directory, gate.REPORT_TEXT)
    if os.path.exists(text_path):
        click.echo("")
        with open(text_path, encoding="utf-8") as handle:
            click.echo(handle.read().rstrip())
        for name in (gate.STATISTICS_HTML, gate.PREVIOUS_SPAN_HTML):
            if os.path.exists(os.path.join(directory, name)):
                click.echo(f"  statistics view: {_rel(os.path.join(directory, name))}")
        from imgpipe.components.validation_gate import data_look
        for name in (data_look.SAMPLES_PNG, data_look.LABELS_PNG, data_look.BRIGHTNESS_PNG,
                     data_look.ASPECT_PNG):
            if os.path.exists(os.path.join(directory, name)):
                click.echo(f"  picture: {_rel(os.path.join(directory, name))}")


def _print_training_summary(result) -> None:
    stage = result.stage("Trainer")
    if not stage or "model" not in stage.artifacts:
        return
    model_dir = os.path.join(stage.artifacts["model"][0], ARTIFACTS.serving_model)
    record_path = ARTIFACTS.training_record_path(model_dir)
    if not os.path.exists(record_path):
        return
    with open(record_path, encoding="utf-8") as handle:
        record = json.load(handle)
    history = record.get("history", {})
    best = record.get("best_epoch", 0)
    accuracy = history.get("val_accuracy", [None] * best)[best - 1] if best else None
    model = record["model"]
    user = model.get("user_module") or {}
    name = f"{user['module']}:{user['function']}" if user else model.get("architecture", "cnn")
    phases = record.get("phases") or []
    split = (" (" + ", ".join(f"{p['phase']} {p['epochs_run']}" for p in phases) + ")"
             if len(phases) > 1 else "")
    click.echo(f"\nTrained {model['parameters']:,}-parameter {name} for "
               f"{record['epochs_run']} epochs{split}; best epoch {best}"
               + (f", validation accuracy {accuracy:.3f}" if accuracy is not None else ""))
    shape = ", ".join(str(v) for v in ImageSpec.from_record(record).shape)
    click.echo(f"  SavedModel ({SIGNATURES.pixels}: uint8 [None, {shape}]; {SIGNATURES.bytes}; "
               f"{SIGNATURES.examples}): {_rel(model_dir)}")


def _evaluation_report_dir(result) -> Optional[str]:
    stage = result.stage("EvaluationGate")
    if not stage or "report" not in stage.artifacts:
        return None
    return stage.artifacts["report"][0]


def _print_push(result) -> None:
    stage = result.stage("RegistryPusher")
    if not stage or "pushed_model" not in stage.artifacts:
        return
    path = os.path.join(stage.artifacts["pushed_model"][0], ARTIFACTS.push_record)
    if not os.path.exists(path):
        click.echo("\nPush: nothing pushed (the model is not blessed)")
        return
    with open(path, encoding="utf-8") as handle:
        push = json.load(handle)
    state = "champion" if push["champion"] else "registered, not champion"
    again = "" if push["created"] else " (already registered: nothing new written)"
    click.echo(f"\nPush: {push['model_uid']} = {push['model_name']} version {push['version']} "
               f"({state}){again}\n  serving dir  {_rel(push['serving_dir'])}\n"
               f"  registry     {push['registry']}\n"
               f"  MLflow       {push['mlflow']} (run {push['mlflow_run_id']}, model version "
               f"{push['mlflow_version']})")
    if push.get("note"):
        click.echo(f"  note: {push['note']}")


def _print_evaluation_report(directory: str) -> Optional[dict]:
    from imgpipe.components.evaluation_gate import report
    text_path = os.path.join(directory, report.REPORT_TEXT)
    if not os.path.exists(text_path):
        return None
    click.echo(f"\nEvaluation ({_rel(directory)}):")
    with open(text_path, encoding="utf-8") as handle:
        click.echo(handle.read().rstrip())
    from imgpipe.components.fuzzer import report as fuzz_report
    for name in (report.CONFUSION_PNG, report.F1_PNG, fuzz_report.FUZZ_PNG):
        if os.path.exists(os.path.join(directory, name)):
            click.echo(f"  chart: {_rel(os.path.join(directory, name))}")
    with open(os.path.join(directory, report.REPORT_JSON), encoding="utf-8") as handle:
        return json.load(handle)


def _print_ingestion_report(result) -> None:
    from imgpipe.components.image_example_gen import report
    stage = result.stage("ImageExampleGen")
    if not stage or "report" not in stage.artifacts:
        return
    loaded = report.read_report(stage.artifacts["report"][0])
    if loaded:
        click.echo("")
        click.echo(report.format_report(loaded))


def _quiet_from_context() -> bool:
    context = click.get_current_context(silent=True)
    return bool(context and (context.find_root().obj or {}).get("quiet"))


def _run(config: Config, until: Optional[str], verbose: bool,
         quiet: Optional[bool] = None) -> None:
    """Runs the pipeline here, showing stages (and the Trainer's epochs) as they go.

    `quiet` (default: the main group's --quiet) leaves only errors and the
    summary: what was trained, the push verdict, the closing line.
    """
    import datetime
    quiet = _quiet_from_context() if quiet is None else quiet
    log_path = None
    if not verbose:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        log_path = config.output_root / "logs" / f"{config.pipeline.name}-{stamp}.log"
    if not quiet:
        click.echo(f"imgpipe: pipeline {config.pipeline.name!r}, output root "
                   f"{_rel(str(config.output_root))}"
                   + (f"; log {_rel(str(log_path))}" if log_path else ""))
    started = time.time()
    try:
        result = _run_stages(config, until, verbose, quiet, log_path)
    except click.ClickException:
        # A gate's stop is when the pictures matter most; a run that stopped
        # before ingesting has none of its own.
        _write_run_page(config, quiet, since=started)
        raise
    evaluation = _print_results(result, until, quiet)
    total = sum(s.seconds for s in result.stages)
    click.echo(f"\nimgpipe: {len(result.stages)} stages finished in {total:.1f}s; "
               f"data {_rel(result.source)}; metadata {_rel(str(config.metadata_path))}")
    _write_run_page(config, quiet)
    if evaluation is not None and not evaluation["blessed"]:
        raise click.ClickException("the model is NOT BLESSED; nothing was pushed:\n  "
                                   + "\n  ".join(evaluation["failures"]))


def _write_run_page(config: Config, quiet: bool, since: float = 0.0) -> None:
    from imgpipe.pipeline import html_report
    try:
        page = html_report.write_run_page(str(config.output_root), since=since)
    except FileNotFoundError:
        return
    if not quiet:
        click.echo(f"imgpipe: the run's reports and pictures: {_rel(page)}")


def _run_stages(config: Config, until: Optional[str], verbose: bool, quiet: bool, log_path):
    """run_local with the console callbacks; a stage's failure becomes a readable error."""
    from imgpipe.components.image_example_gen.report import IngestionFailed
    from imgpipe.components.validation_gate.executor import ValidationFailed
    from imgpipe.pipeline.local_runner import StageFailed, run_local
    from imgpipe.pipeline.pipeline import PipelineError

    def echo_stage(stage, event, stream):
        if not quiet or event == "failed":
            _echo_stage(stage, event, stream)

    def echo_progress(message, stream):   # the Trainer's epochs, under `[start] Trainer`
        click.echo(f"          {message}", file=stream)

    try:
        return run_local(config, echo_stage, until=until, log_path=log_path,
                         progress=None if quiet else echo_progress)
    except StageFailed as failure:
        error = failure.error
        if isinstance(error, ValidationFailed):
            _print_ingestion_report(failure.result)
            click.echo("")
            raise click.ClickException(str(error)) from None
        if isinstance(error, (IngestionFailed, PipelineError)):
            raise click.ClickException(str(error)) from None
        if verbose:
            raise
        where = f" in {failure.stage.name}" if failure.stage else ""
        raise click.ClickException(
            f"pipeline failed{where}: {type(error).__name__}: {error}\n"
            f"(the run's log: {_rel(str(log_path))}; --verbose prints it as it runs)") from None
    except (PipelineError, IngestionFailed, ValueError) as error:
        raise click.ClickException(str(error)) from None


def _print_results(result, until: Optional[str], quiet: bool) -> Optional[dict]:
    """Each stage's summary (quiet: training and push only); the evaluation report, if any."""
    if not quiet or until == "ImageExampleGen":   # `imgpipe ingest`: the report is its result
        _print_ingestion_report(result)
    if not quiet:
        _print_validation_report(result)
    _print_training_summary(result)
    evaluation_dir = _evaluation_report_dir(result)
    evaluation = None
    if evaluation_dir and not quiet:
        evaluation = _print_evaluation_report(evaluation_dir)
    elif evaluation_dir:
        from imgpipe.components.evaluation_gate import report
        if os.path.exists(os.path.join(evaluation_dir, report.REPORT_JSON)):
            with open(os.path.join(evaluation_dir, report.REPORT_JSON), encoding="utf-8") as handle:
                evaluation = json.load(handle)
    _print_push(result)
    return evaluation


_config_option = cli_options.config_option
_set_option = cli_options.set_option


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True,
              help="Show the full TensorFlow, TFX and Beam logs on the console (by default "
                   "`run` and `ingest` write them to <output root>/logs/ and print only stages, "
                   "training epochs and the summary).")
@click.option("--quiet", is_flag=True,
              help="`run` and `ingest` print only errors and the final summary/verdict: no "
                   "stage or epoch lines.")
@click.version_option(package_name="imgpipe")
@click.pass_context
def main(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """imgpipe: a TFX pipeline for image classifiers that refuses to ship
    training/serving preprocessing skew."""
    if verbose and quiet:
        raise click.UsageError("--quiet and --verbose cannot be used together", ctx=ctx)
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
    ctx.obj["quiet"] = quiet
    _quiet_libraries(verbose)


@main.command()
@_config_option
@click.option("--data", "data", default=None,
              help="Data source: class-folder tree, .npz or TFRecords; may contain {SPAN}.")
@click.option("--output-root", default=None, type=click.Path(file_okay=False),
              help="Where runs, metadata and generated data go (default ./runs).")
@click.option("--span", type=click.IntRange(min=0), default=None,
              help="Ingest the data as this span (selects it when the source has {SPAN}).")
@_set_option
@click.pass_context
def run(ctx, config_path, data, output_root, span, sets):
    """Run the pipeline locally (TFX LocalDagRunner, Beam DirectRunner)."""
    config = _load(config_path, {"data.source": data, "pipeline.output_root": output_root,
                                 "data.span": span}, sets)
    _run(config, until=None, verbose=ctx.obj["verbose"])


@main.command()
@click.argument("source")
@_config_option
@click.option("--output", "output", default=None, type=click.Path(file_okay=False),
              help="Output root for this ingestion (default: the config's output root).")
@click.option("--max-bad-fraction", type=click.FloatRange(0, 1), default=None,
              help="Fail when more than this fraction of inputs is unreadable (default 0.01).")
@click.option("--span", type=click.IntRange(min=0), default=None,
              help="Ingest the data as this span.")
@_set_option
@click.pass_context
def ingest(ctx, source, config_path, output, max_bad_fraction, span, sets):
    """Run ingestion alone (the pipeline's ImageExampleGen) and print what was read."""
    config = _load(config_path, {"data.source": source, "pipeline.output_root": output,
                                 "data.max_bad_fraction": max_bad_fraction, "data.span": span},
                   sets)
    _run(config, until="ImageExampleGen", verbose=ctx.obj["verbose"])


def _progress(command: str):
    """A batch callback: "<command>: N images read" every 5,000 images, on
    stderr (stdout may be a JSON report)."""
    from imgpipe.components import progress
    return progress.Counter(command + ": {count:,} images read",
                            emit=lambda line: click.echo(line, err=True)).add


def _thresholds(config: Config):
    from imgpipe.components.validation_gate.schema_curation import DriftThresholds
    return DriftThresholds(pixel_js_divergence=config.validation.pixel_drift_threshold,
                           label_linf=config.validation.label_drift_threshold,
                           property_js_divergence=config.validation.property_drift_threshold)


def _load_schema(path: str):
    import tensorflow_data_validation as tfdv
    try:
        return tfdv.load_schema_text(path)
    except Exception as error:
        raise InputProblem(f"{path}: not a readable TFDV text schema ({error})") from None


@main.group()
def schema():
    """Draft and read curated schemas (schemas/*.pbtxt)."""


@schema.command("infer")
@click.argument("source")
@click.option("--output", "output", required=True, type=click.Path(dir_okay=False),
              help="Where to write the schema (text proto).")
@_config_option
@_set_option
def schema_infer(source, output, config_path, sets):
    """Draft a curated schema from SOURCE (folder, .npz or TFRecords).

    TFDV infers the draft; imgpipe then applies its curation (image files:
    encoded bytes, format and size ranges; arrays and records: uint8 pixel
    domain and fixed shape; per-image property ranges, label domain,
    TRAINING/SERVING environments, drift comparators with the config's
    thresholds). Review it before committing.
    """
    import tensorflow_data_validation as tfdv
    from google.protobuf import text_format

    from imgpipe.components.validation_gate import inprocess, schema_curation

    config = _load(config_path, {}, sets)
    try:
        loaded = inprocess.load_source(source, height=config.image.height, width=config.image.width,
                                       channels=config.image.channels, classes=config.data.classes,
                                       max_image_pixels=config.data.max_image_pixels,
                                       policies=config.image.spec)
        class_names = list(config.data.classes) or loaded.class_names
        if len(class_names) < 2:
            raise InputProblem(f"{source}: need at least two class names (from class folders, the "
                               ".npz's class_names, or data.classes in the config)")
        # One pass: the draft's statistics, and the curated schema's view of the
        # same data (the label categorical) for the check below.
        stats, labelled_stats = inprocess.statistics_of(
            loaded.batches, None, schema_curation.label_schema(), on_batch=_progress("schema infer"))
    except inprocess.InputError as error:
        raise InputProblem(str(error)) from None
    draft = tfdv.infer_schema(stats, infer_feature_shape=True)
    curated = schema_curation.curate(
        draft, height=config.image.height, width=config.image.width,
        channels=config.image.channels, class_names=class_names, thresholds=_thresholds(config))
    kept = ("image_encoded holds the file as it arrived (decoded in the model's graph), "
            "per-image properties in range" if schema_curation.is_encoded(curated)
            else "image is uint8 [H, W, C]")
    header = (f"# imgpipe curated schema, drafted from {source} by `imgpipe schema infer`.\n"
              f"# Reviewed like code: {kept}, label a categorical class id.\n")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(header + text_format.MessageToString(curated))
    click.echo(f"wrote {output}\n")
    click.echo(schema_curation.describe(curated))
    verdict = inprocess.validate(labelled_stats, curated, schema_curation.TRAINING)
    if not verdict.passed:
        click.echo("\nWARNING: the data this was drafted from fails the curated schema:")
        for finding in verdict.findings:
            click.echo(f"  {finding.message}")


@schema.command("show")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def schema_show(file):
    """Print a schema readably."""
    from imgpipe.components.validation_gate import schema_curation
    click.echo(schema_curation.describe(_load_schema(file)))


def _print_validation_inputs(loaded, baseline, against, bad) -> None:
    """What `imgpipe validate` read: the baseline, conversions, unreadable inputs."""
    if against:
        click.echo(f"  drift baseline: {baseline} ({against.description}, "
                   f"{against.examples} examples)")
    if loaded.conversions:
        from imgpipe.components.image_example_gen import report
        click.echo("  conversions (as ingestion does them): " + ", ".join(
            f"{name} x{count}" for name, count in
            sorted(report.summarize_conversions(loaded.conversions).items())))
        sizes = report.describe_source_sizes(loaded.conversions)
        if sizes:
            click.echo(f"    {sizes}")
    if bad:
        click.echo(f"  unreadable inputs: {len(bad)}")
        for row in bad[:10]:
            click.echo(f"    {row['path']}: {row['reason']}")


@main.command()
@click.argument("source")
@click.option("--schema", "schema_path", type=click.Path(dir_okay=False), default=None,
              help="Curated schema (default: validation.schema_file of the config).")
@click.option("--environment", type=click.Choice(["training", "serving"]), default="training",
              show_default=True, help="serving: the label is not expected.")
@click.option("--baseline", default=None,
              help="What the drift comparators compare SOURCE with: any source SOURCE may be "
                   "(class-folder tree, .npz, TFRecords), read the same way, or statistics: a "
                   "TFDV statistics file (DatasetFeatureStatisticsList, binary, text or "
                   "TFRecord) or a TFX statistics folder (Split-*/FeatureStats.pb; its train "
                   "split).")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@_config_option
@_set_option
def validate(source, schema_path, environment, baseline, output_format, config_path, sets):
    """Validate SOURCE against a schema in process, without the pipeline.

    A folder of images (class folders, or images alone for serving samples),
    an .npz or TFRecords. Exit code 0 when clean, 1 when anomalies were
    found, 2 on usage or input errors: usable as a CI gate for serving code.
    """
    from imgpipe.components.image_example_gen import sources
    from imgpipe.components.validation_gate import checks, inprocess, schema_curation

    config = _load(config_path, {}, sets)
    schema_file = schema_path or config.schema_location
    if not os.path.isfile(schema_file):
        raise InputProblem(f"{schema_file}: schema file not found")
    curated = _load_schema(schema_file)
    schema_curation.apply_thresholds(curated, _thresholds(config))
    expected = schema_curation.expectations(curated)
    # SOURCE and a data baseline are read alike: same loader, image spec and schema.
    spec = dict(height=expected.height or config.image.height,
                width=expected.width or config.image.width,
                channels=expected.channels or config.image.channels,
                classes=expected.class_names or config.data.classes,
                max_image_pixels=config.data.max_image_pixels, policies=config.image.spec)
    try:
        loaded = inprocess.load_source(source, **spec)
        # Image files are checked in the encoded layout, arrays and records as
        # pixels (the image shape: the config's, when the schema has none).
        curated = schema_curation.for_layout(
            curated, encoded=loaded.format == sources.FOLDERS, height=spec["height"],
            width=spec["width"], channels=spec["channels"])
        [stats] = inprocess.statistics_of(loaded.batches, curated, on_batch=_progress("validate"))
        against = inprocess.load_baseline(baseline, curated, **spec) if baseline else None
    except inprocess.InputError as error:
        raise InputProblem(str(error)) from None
    verdict = inprocess.validate(stats, curated, schema_curation.ENVIRONMENTS[environment],
                                 against.statistics if against else None)
    bad = [row for row in loaded.quarantine if row["kind"] == "bad"]
    if output_format == "json":
        described = {"baseline": {"path": baseline, "kind": against.kind,
                                  "examples": against.examples}} if against else {}
        click.echo(checks.verdicts_json([verdict], source=source, format=loaded.format,
                                        environment=environment, conversions=loaded.conversions,
                                        quarantine=loaded.quarantine, **described))
    else:
        click.echo(f"{source} ({loaded.format}, {environment}) against {schema_file}")
        _print_validation_inputs(loaded, baseline, against, bad)
        click.echo(checks.format_verdicts([verdict]))
    if not verdict.passed or bad:
        sys.exit(1)


@main.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--html", "html_page", is_flag=True,
              help="Write one HTML page linking the latest run's ingestion, validation and "
                   "evaluation reports and pictures (RUN_DIR/report.html) and print its path.")
@_config_option
@_set_option
def report(run_dir, html_page, config_path, sets):
    """Print the evaluation table of the latest run (or of RUN_DIR).

    RUN_DIR: an output root, a pipeline root, or an EvaluationGate report folder.
    Exit code 1 when that model is not blessed. With --html, write the run's
    page of reports and pictures instead.
    """
    from imgpipe.components.evaluation_gate import report as evaluation_report
    if run_dir is None:
        config = _load(config_path, {}, sets)
        run_dir = str(config.output_root)
    if html_page:
        from imgpipe.pipeline import html_report
        try:
            click.echo(html_report.write_run_page(run_dir))
        except FileNotFoundError as error:
            raise InputProblem(str(error)) from None
        return
    candidates = glob.glob(os.path.join(run_dir, evaluation_report.REPORT_JSON)) or glob.glob(
        os.path.join(run_dir, "**", evaluation_report.REPORT_JSON), recursive=True)
    candidates = [c for c in candidates if f"{os.sep}failed{os.sep}" not in c]
    if not candidates:
        raise InputProblem(f"{run_dir}: no evaluation report found (run `imgpipe run` first)")
    latest = max(candidates, key=os.path.getmtime)
    evaluation = _print_evaluation_report(os.path.dirname(latest))
    if evaluation is not None and not evaluation["blessed"]:
        sys.exit(1)


@main.command("to-npz")
@click.argument("source", type=click.Path(exists=True, file_okay=False))
@click.option("--output", "output", required=True, type=click.Path(dir_okay=False),
              help="The .npz to write (arrays x, y, class_names).")
@click.option("--dtype", type=click.Choice(["uint8", "float32", "float64"]), default="uint8",
              show_default=True, help="Pixel dtype of x.")
@click.option("--scale-to-unit", is_flag=True,
              help="Divide pixels by 255 (what a training script does; the trap at serving time).")
@_config_option
@_set_option
def to_npz(source, output, dtype, scale_to_unit, config_path, sets):
    """Decode a class-folder tree into arrays, the way ingestion decodes it.

    Gives keras.datasets-style x (N, H, W, C) and y (N,). With --dtype float32
    --scale-to-unit it makes the already-scaled copy that the validation gate
    exists to refuse.
    """
    import numpy as np

    from imgpipe.components.image_example_gen.sources import NpzArrayWriter
    from imgpipe.components.validation_gate import inprocess

    config = _load(config_path, {}, sets)
    image = config.image
    writer, labels, low, high = NpzArrayWriter(output, "x"), [], None, None
    try:
        folder = inprocess.list_folder_images(source, config.data.classes)
        for decoded, batch_labels, _ in folder.decoded_batches(image.spec,
                                                               config.data.max_image_pixels):
            # A batch at a time: memory holds one batch.
            x = np.stack([d.pixels for d in decoded]).astype(dtype)
            if scale_to_unit:
                x = x / np.array(255, dtype=x.dtype if dtype != "uint8" else np.float32)
            writer.add_rows(x)
            low = x.min() if low is None else min(low, x.min())
            high = x.max() if high is None else max(high, x.max())
            if batch_labels is not None:
                labels.append(batch_labels)
    except inprocess.InputError as error:
        raise InputProblem(str(error)) from None
    writer.add_array("class_names", np.array(folder.class_names))
    if labels:
        writer.add_array("y", np.concatenate(labels))
    writer.close()
    bad = sum(1 for row in folder.quarantine if row["kind"] == "bad")
    click.echo(f"wrote {output}: x ({writer.rows}, {image.height}, {image.width}, {image.channels}) "
               f"{writer.dtype} in [{low:g}, {high:g}], {len(folder.class_names)} classes; "
               f"{bad} unreadable inputs skipped")


main.add_command(project_cli.init_command)
main.add_command(registry_cli.registry)
main.add_command(kubeflow_cli.compile_command)
main.add_command(kubeflow_cli.submit_command)
main.add_command(serving_cli.predict_command)
main.add_command(serving_cli.serve_command)
main.add_command(serving_cli.monitor_command)
main.add_command(serving_cli.feedback_group)
main.add_command(watch_cli.watch_command)
main.add_command(fuzz_cli.fuzz_command)


if __name__ == "__main__":
    sys.exit(main())
