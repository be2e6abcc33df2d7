"""The `imgpipe` command line."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Optional, Tuple

import click

from imgpipe.pipeline.config import DEFAULT_CONFIG, Config, ConfigError, load_config, parse_set_options


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
    try:
        overrides = {**overrides, **parse_set_options(list(sets))}
        return load_config(config_path, overrides)
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


def _rel(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("../..") else path


def _echo_stage(stage, event: str) -> None:
    if event == "started":
        click.echo(f"[start] {stage.name}")
    elif event == "finished":
        cached = " (cached)" if stage.cached else ""
        click.echo(f"[done ] {stage.name}  {stage.seconds:.1f}s{cached}")
        for key, uris in sorted(stage.artifacts.items()):
            for uri in uris:
                click.echo(f"          {key}: {_rel(uri)}")
    else:
        click.echo(f"[FAIL ] {stage.name}  after {stage.seconds:.1f}s", err=True)


def _print_ingestion_report(result) -> None:
    from imgpipe.components.image_example_gen import report
    stage = result.stage("ImageExampleGen")
    if not stage or "report" not in stage.artifacts:
        return
    loaded = report.read_report(stage.artifacts["report"][0])
    if loaded:
        click.echo("")
        click.echo(report.format_report(loaded))


def _run(config: Config, until: Optional[str], verbose: bool) -> None:
    from imgpipe.components.image_example_gen.report import IngestionFailed
    from imgpipe.pipeline.local_runner import StageFailed, run_local
    from imgpipe.pipeline.pipeline import PipelineError

    click.echo(f"imgpipe: pipeline {config.pipeline.name!r}, output root {_rel(str(config.output_root))}")
    try:
        result = run_local(config, _echo_stage, until=until)
    except StageFailed as failure:
        error = failure.error
        if isinstance(error, (IngestionFailed, PipelineError)):
            raise click.ClickException(str(error)) from None
        if verbose:
            raise
        where = f" in {failure.stage.name}" if failure.stage else ""
        raise click.ClickException(
            f"pipeline failed{where}: {type(error).__name__}: {error}\n"
            "(run again with --verbose for the full log and traceback)") from None
    except (PipelineError, IngestionFailed, ValueError) as error:
        raise click.ClickException(str(error)) from None
    _print_ingestion_report(result)
    total = sum(s.seconds for s in result.stages)
    click.echo(f"\nimgpipe: {len(result.stages)} stages finished in {total:.1f}s; "
               f"data {_rel(result.source)}; metadata {_rel(str(config.metadata_path))}")


_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    default=None, show_default=str(DEFAULT_CONFIG),
    help="TOML configuration file.")
_set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE",
    help="Override any config key, e.g. --set training.epochs=3 (repeatable).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--verbose", is_flag=True, help="Show TensorFlow, TFX and Beam logs.")
@click.version_option(package_name="imgpipe")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """imgpipe: a TFX pipeline for image classifiers that refuses to ship
    training/serving preprocessing skew."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose
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


if __name__ == "__main__":
    sys.exit(main())
