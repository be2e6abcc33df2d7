"""`imgpipe registry ...`: list, show, promote, roll back, repair, migrate.

The registry location comes from IMGPIPE_REGISTRY_URL, else the config's
registry.url, else sqlite:///<output_root>/registry.db (MLflow likewise with
MLFLOW_TRACKING_URI). Every filter is a bound parameter; URLs, and error
texts that may carry one, are printed with passwords masked; expected errors
(database, MLflow, network, a refused move) are one line and exit 1.
"""
from __future__ import annotations

import csv
import datetime as dt
import functools
import json
import sys
from typing import List, Optional, Tuple

import click
from sqlalchemy.exc import SQLAlchemyError

from imgpipe.contract import ImageSpec
from imgpipe.pipeline import cli_options
from imgpipe.pipeline.config import Config
from imgpipe.registry import store
from imgpipe.registry.models import COLUMNS, STATUSES

_TABLE_COLUMNS = [("model_name", 20), ("version", 7), ("status", 11), ("model_uid", 30),
                  ("val_accuracy", 12), ("serving_accuracy", 16), ("mlflow_model_version", 6),
                  ("created_at", 19)]
_TABLE_HEADINGS = {"val_accuracy": "accuracy", "serving_accuracy": "served accuracy",
                   "mlflow_model_version": "mlflow"}


def _config(config_path: Optional[str], sets: Tuple[str, ...]) -> Config:
    return cli_options.load(config_path, sets)


def _common(function):
    return cli_options.config_option(cli_options.set_option(function))


# MLflow's HTTP client retries for minutes by default; a person is waiting
# (the environment's MLFLOW_HTTP_REQUEST_* settings win).
_MLFLOW_WRITE_BOUNDS = {"timeout_s": 30, "retries": 2}
_MLFLOW_CHECK_BOUNDS = {"timeout_s": 10, "retries": 0}


def _engine(config: Config):
    return store.require_schema(config.registry_url)


def _message(error: BaseException) -> str:
    """The one-line, password-masked text of an error."""
    if isinstance(error, (store.RegistryError, click.ClickException)):
        return store.mask_text(str(error))
    return store.describe_error(error)


def _expected(error: BaseException) -> bool:
    """Errors of the registry, its database, MLflow or the network: reported
    in one line. Anything else is a bug and keeps its traceback."""
    return (isinstance(error, (store.RegistryError, SQLAlchemyError, OSError, ValueError))
            or type(error).__module__.split(".")[0] in ("mlflow", "requests", "urllib3"))


def _reported(command):
    """The command's expected errors become one masked line and exit 1."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except click.ClickException as error:
            error.message = store.mask_text(error.message)
            raise
        except Exception as error:  # noqa: BLE001 - filtered by _expected
            if not _expected(error):
                raise
            raise click.ClickException(_message(error)) from None
    return run


def _plain(value):
    """A column value as JSON/CSV carry it."""
    if isinstance(value, dt.datetime):
        # SQLite keeps no time zone; the registry writes UTC.
        return (value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)).isoformat()
    return value


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _print_rows(rows: List[dict], output_format: str) -> None:
    if output_format == "json":
        click.echo(json.dumps([{k: _plain(v) for k, v in row.items()} for row in rows], indent=2))
    elif output_format == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else _plain(v)
                             for k, v in row.items()})
    else:
        click.echo("  ".join(f"{_TABLE_HEADINGS.get(name, name):<{width}}"
                             for name, width in _TABLE_COLUMNS).rstrip())
        for row in rows:
            click.echo("  ".join(f"{_cell(row[name]):<{width}}"
                                 for name, width in _TABLE_COLUMNS).rstrip())
        if not rows:
            click.echo("(no model versions match)")


@click.group()
def registry():
    """Query and manage the model registry (model_registry table + MLflow)."""


@registry.command("list")
@click.option("--model", "model_name", default=None, help="Only this model name.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only this status.")
@click.option("--min-accuracy", type=click.FloatRange(0, 1), default=None,
              help="Only versions with val_accuracy >= X.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True,
              help="json and csv carry every column under its column name.")
@_common
@_reported
def list_command(model_name, status, min_accuracy, output_format, config_path, sets):
    """Model versions, newest first; warns (on stderr) where MLflow's champion
    alias disagrees with the registry's champion."""
    config = _config(config_path, sets)
    engine = _engine(config)
    rows = store.list_versions(engine, model_name=model_name, status=status,
                               min_accuracy=min_accuracy)
    _print_rows([row.as_dict() for row in rows], output_format)
    _warn_disagreements(config, engine, model_name)


def _warn_disagreements(config: Config, engine, model_name: Optional[str]) -> None:
    from imgpipe.registry import mlflow_sync, publish
    tracking = config.mlflow_tracking_uri
    if not mlflow_sync.store_exists(tracking):
        return
    try:
        with mlflow_sync.bounded_requests(**_MLFLOW_CHECK_BOUNDS):
            found = publish.disagreements(engine, tracking, model_name)
    except Exception as error:  # noqa: BLE001 - a check: reported, not fatal
        click.echo(f"note: champion aliases not checked, MLflow at {store.mask_url(tracking)}: "
                   f"{_message(error)}", err=True)
        return
    for line in found:
        click.echo(f"warning: MLflow disagrees with the registry: {line}", err=True)
    if found:
        click.echo("  the registry is the source of truth: imgpipe registry repair", err=True)


@registry.command("show")
@click.argument("uid")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@_common
@_reported
def show_command(uid, output_format, config_path, sets):
    """Every column of one model version."""
    engine = _engine(_config(config_path, sets))
    row = store.get(engine, uid).as_dict()
    if output_format == "json":
        click.echo(json.dumps({k: _plain(v) for k, v in row.items()}, indent=2))
        return
    width = max(len(name) for name in row)
    for name, value in row.items():
        shown = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else _cell(value)
        if name == "fuzz_report" and value:
            shown = _fuzz_summary(value)
        click.echo(f"{name:<{width}}  {shown}")
    try:   # what every image file is brought to, in training and in serving
        spec = ImageSpec.from_record(row.get("training_config") or {})
        click.echo(f"{'image':<{width}}  {spec.describe()} uint8; {spec.describe_policies()}")
    except (KeyError, ValueError, TypeError):
        pass
    normalization = (row.get("training_config") or {}).get("normalization")
    if normalization:  # what the network's first layer makes of the [0, 1] pixels
        click.echo(f"{'network input':<{width}}  {normalization['name']}: {normalization['description']}")


def _fuzz_summary(rows) -> str:
    """Verdict counts, and each silently harmful mistake accepted with its reason."""
    counts = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    parts = [", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))]
    parts += [f"accepted: {row['mistake']} ({row['accepted_reason']})" for row in rows
              if row.get("accepted_reason") and row["verdict"] == "SILENT HARM"]
    return "; ".join(parts) + " (--format json: every row)"


def _moved(config: Config, verb: str, new_champion, previous=None) -> None:
    click.echo(f"{verb}: {new_champion.model_uid} ({new_champion.model_name} version "
               f"{new_champion.version}) is champion"
               + (f"; {previous.model_uid} (version {previous.version}) is {previous.status}"
                  if previous is not None else ""))
    click.echo(f"  registry {store.mask_url(config.registry_url)}; MLflow alias "
               f"{new_champion.model_name}@champion -> version {new_champion.mlflow_model_version} "
               f"({store.mask_url(config.mlflow_tracking_uri)})")


def _follow(config: Config, engine, model_name: str) -> None:
    """MLflow's alias follows the committed champion (no registry lock held)."""
    from imgpipe.registry import mlflow_sync, publish
    with mlflow_sync.bounded_requests(**_MLFLOW_WRITE_BOUNDS):
        publish.follow_champion(engine, config.mlflow_tracking_uri, model_name)


@registry.command("promote")
@click.argument("target", nargs=-1, required=True, metavar="UID | MODEL VERSION")
@click.option("--if-better", is_flag=True,
              help="Only if live labelled answers say it beats the champion by "
                   "monitoring.promote_margin at monitoring.promote_confidence; the decision "
                   "and its numbers are recorded either way.")
@click.option("--since", default=None, help="Window of labelled answers for --if-better "
                                            "(default monitoring.since).")
@_common
@_reported
def promote_command(target, if_better, since, config_path, sets):
    """Make a version its model's champion (the MLflow alias moves with it).

    Refused when its SavedModel is missing or lacks a serving signature; with
    --if-better, also when the evidence is not there (exit 1, with how many
    more labels would decide)."""
    from imgpipe.registry import publish
    config = _config(config_path, sets)
    engine = _engine(config)
    uid = _target_uid(engine, target)
    model_name = store.get(engine, uid).model_name
    before = store.champion(engine, model_name)
    if if_better and not _better(config, engine, model_name, uid, since):
        sys.exit(1)
    store.promote(engine, uid, check=publish.promotable(config.serving_root))
    _follow(config, engine, model_name)
    row = store.get(engine, uid)
    previous = store.get(engine, before.model_uid) if before and before.model_uid != uid else None
    _moved(config, "promoted", row, previous)


def _target_uid(engine, target: Tuple[str, ...]) -> str:
    if len(target) == 1:
        return target[0]
    if len(target) == 2 and target[1].isdigit():
        return store.version_of(engine, target[0], int(target[1])).model_uid
    raise click.UsageError("give a model_uid, or a model name and a version number")


def _better(config: Config, engine, model_name: str, uid: str, since: Optional[str]) -> bool:
    """The evidence for promoting `uid`, printed and recorded; True when it is better."""
    from imgpipe.registry import promotion
    from imgpipe.serving import live_quality, monitor
    settings = config.monitoring
    try:
        start = monitor.parse_since(since or settings.since)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    champion = promotion.champion_uid(engine, model_name)
    if champion == uid:
        raise store.RegistryError(f"{uid} is already the champion of {model_name}")
    found = promotion.evidence(config.prediction_log_url, model_name, champion, uid, start,
                               settings.promote_margin, settings.promote_confidence,
                               settings.min_labels)
    better = found.decision == live_quality.BETTER
    promotion.record(engine, model_name, uid, champion, found, better, start)
    with store.masked_errors("tagging the decision in MLflow"):
        promotion.tag_mlflow(config.mlflow_tracking_uri, model_name,
                             store.get(engine, uid).mlflow_model_version, found, better)
    click.echo(f"{found.decision}: {found.detail}")
    if not better:
        click.echo(f"not promoted: {uid} stays {store.get(engine, uid).status} (decision recorded "
                   "in the registry's promotion_decision table and on its MLflow version)", err=True)
    return better


@registry.command("rollback")
@click.option("--model", "model_name", default=None,
              help="Model name (default: the config's registry.model_name).")
@click.option("--to", "to_uid", default=None,
              help="The version to restore (default: the previous champion).")
@_common
@_reported
def rollback_command(model_name, to_uid, config_path, sets):
    """Mark the champion rolled_back and restore the previous (or given) one."""
    from imgpipe.registry import publish
    config = _config(config_path, sets)
    engine = _engine(config)
    rolled_back, restored = store.rollback(
        engine, model_name or config.registry.model_name, to_uid,
        check=publish.promotable(config.serving_root))
    _follow(config, engine, restored.model_name)
    _moved(config, "rolled back", restored, rolled_back)


@registry.command("repair")
@click.option("--model", "model_name", default=None, help="Only this model name.")
@_common
@_reported
def repair_command(model_name, config_path, sets):
    """Point MLflow's champion alias at the registry's champion (the source of
    truth) wherever they disagree, e.g. after a crash between the two."""
    from imgpipe.registry import mlflow_sync, publish
    config = _config(config_path, sets)
    engine = _engine(config)
    with mlflow_sync.bounded_requests(**_MLFLOW_WRITE_BOUNDS):
        lines = publish.repair(engine, config.mlflow_tracking_uri, model_name)
    for line in lines or ["no champion in the registry: nothing to repair"]:
        click.echo(line)


@registry.command("migrate")
@click.option("--revision", default="head", show_default=True,
              help="Upgrade to this schema revision.")
@click.option("--downgrade-to", default=None, metavar="REVISION",
              help="Downgrade instead, e.g. to 'base' (drops the registry's tables).")
@_common
@_reported
def migrate_command(revision, downgrade_to, config_path, sets):
    """Create or upgrade the registry schema (Alembic migrations), and MLflow's.

    MLflow's own SQLite store breaks when several processes create its schema
    at once: migrating it here, once, makes concurrent pushes safe.
    """
    from imgpipe.registry import mlflow_sync
    config = _config(config_path, sets)
    url = config.registry_url
    try:
        before = store.current_revision(url)
        if downgrade_to:
            after = store.downgrade(url, downgrade_to)
        else:
            after = store.migrate(url, revision)
    except Exception as error:  # noqa: BLE001 - any database error, reported with a masked URL
        raise click.ClickException(f"migrating {store.mask_url(url)} failed: "
                                   f"{_message(error)}") from None
    click.echo(f"registry {store.mask_url(url)}: schema revision {before or 'none'} -> "
               f"{after or 'none'}")
    if not downgrade_to:
        tracking = config.mlflow_tracking_uri
        try:
            with mlflow_sync.bounded_requests(**_MLFLOW_WRITE_BOUNDS):
                mlflow_sync.ensure_store(tracking)
        except Exception as error:  # noqa: BLE001 - reported with a masked URI
            raise click.ClickException(f"MLflow at {store.mask_url(tracking)}: "
                                       f"{_message(error)}") from None
        click.echo(f"MLflow {store.mask_url(tracking)}: store ready")
