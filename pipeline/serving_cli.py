"""`imgpipe predict`, `imgpipe serve`, `imgpipe monitor`: after the push."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys
import time
import uuid
from typing import List, Optional, Tuple

import click
import numpy as np

from imgpipe.contract import ImageSpec, image_files
from imgpipe.pipeline import cli_options
from imgpipe.pipeline.config import Config


def _config(config_path: Optional[str], sets: Tuple[str, ...]) -> Config:
    return cli_options.load(config_path, sets)


def _common(function):
    return cli_options.model_option(cli_options.config_option(cli_options.set_option(function)))


def _load_model(config: Config, model_name: Optional[str], version=None, uid=None):
    from imgpipe.registry import store
    from imgpipe.serving import model as served
    try:
        return served.load(served.resolve(config.registry_url,
                                          model_name or config.registry.model_name, version, uid),
                           config.serving_root)
    except store.RegistryError as error:
        raise click.ClickException(str(error)) from None


def _observed_channel_means(logged, row, minimum: int):
    """Per-channel means of the window's inputs as the graph receives them: every
    array request's, from the log; encoded ones' from their sampled files
    (decoded by the contract's ops). None with fewer than `minimum` of them."""
    from imgpipe.components.fuzzer import fuzz
    per_request = [r.channel_means for r in logged if r.channel_means]
    encoded = []
    for record in logged[::-1]:   # the newest first: enough for a mean, bounded memory
        path = record.sample_path
        if path and not path.endswith(".npy") and os.path.exists(path) and len(encoded) < 1000:
            with open(path, "rb") as handle:
                encoded.append(handle.read())
    if encoded:
        pixels = fuzz.served_pixels(encoded, ImageSpec.from_record(row.training_config))
        per_request += pixels.reshape(len(encoded), -1, pixels.shape[-1]).mean(axis=1).tolist()
    if len(per_request) < minimum:
        return None
    return [float(v) for v in np.mean(np.array(per_request, np.float64), axis=0)]


# -- predict --------------------------------------------------------------------

@dataclasses.dataclass
class _Input:
    name: str                        # as printed: the path, or path[i] inside an .npz
    path: str
    npz_index: Optional[int] = None
    problem: Optional[str] = None    # known before reading (empty folder, bad .npz)


def _expand(paths: Tuple[str, ...]) -> List[_Input]:
    """The inputs in order: files, folders' images (recursively), .npz rows."""
    import numpy as np
    inputs: List[_Input] = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                           for name in names if image_files.is_candidate_image(name))
            inputs.extend(_Input(p, p, problem=_not_a_file(p)) for p in found)
            if not found:
                inputs.append(_Input(path, path, problem="no JPEG or PNG images in this folder"))
        elif path.endswith(".npz") and os.path.isfile(path):
            try:
                with np.load(path) as archive:
                    count = len(archive["x"])
            except Exception as error:  # noqa: BLE001 - reported as this input's problem
                inputs.append(_Input(path, path, problem=f"not an .npz with an `x` array of "
                                                         f"images ({type(error).__name__})"))
                continue
            inputs.extend(_Input(f"{path}[{i}]", path, npz_index=i) for i in range(count))
        else:
            inputs.append(_Input(path, path, problem=_not_a_file(path)))
    return inputs


def _not_a_file(path: str) -> Optional[str]:
    """Why `path` is skipped unread: a FIFO named *.png would block the read forever."""
    if os.path.exists(path) and not os.path.isfile(path):
        return "not a regular file (a FIFO, socket or device); skipped"
    return None


def _read(item: _Input, limits, image_shape, npz_cache):
    """Encoded bytes or uint8 pixels, checked; raises InputRejected or OSError."""
    import numpy as np

    from imgpipe.serving import model as served
    if item.problem:
        raise served.InputRejected(400, f"{item.name}: {item.problem}")
    if item.npz_index is not None:
        if item.path not in npz_cache:
            with np.load(item.path) as archive:
                npz_cache[item.path] = np.asarray(archive["x"])
        return served.check_one_image(npz_cache[item.path][item.npz_index], image_shape, item.name)
    with open(item.path, "rb") as handle:
        data = handle.read()
    served.check_image_bytes(data, limits, item.name)
    return data


def _predict_chunk(model, chunk: List[_Input], limits, top_k: int, npz_cache: dict):
    """Reads and classifies one batch: payloads, results by offset (a str is the error), ms per input."""
    from imgpipe.serving import model as served
    payloads, results = {}, {}
    for offset, item in enumerate(chunk):
        try:
            payloads[offset] = _read(item, limits, model.image_shape, npz_cache)
        except (served.InputRejected, OSError, ValueError) as error:
            results[offset] = str(error) if isinstance(error, served.InputRejected) \
                else f"{item.name}: unreadable ({type(error).__name__}: {error})"
    started = time.perf_counter()
    readable = sorted(payloads)
    predicted = model.predict_each([payloads[o] for o in readable], top_k)
    latency_ms = (time.perf_counter() - started) * 1000 / max(len(readable), 1)
    for offset, result in zip(readable, predicted):
        results[offset] = f"{chunk[offset].name}: {result}" \
            if isinstance(result, served.InputRejected) else result
    return payloads, results, latency_ms


def _open_prediction_log(config: Config):
    from imgpipe.serving import predlog
    try:
        return predlog.PredictionLogger(config.prediction_log_url, config.samples_root,
                                        config.serving.sample_rate)
    except predlog.PredictionLogUnavailable as error:
        raise click.ClickException(f"{error} (or pass --no-log)") from None


def _row(item: _Input, result) -> dict:
    if isinstance(result, str):
        return {"input": item.name, "error": result}
    return {"input": item.name, "class": result.class_name, "class_id": result.class_id,
            "confidence": result.confidence,
            "top_k": [{"class": c, "probability": p} for c, p in result.top_k]}


@click.command("predict")
@click.argument("paths", nargs=-1, required=True)
@click.option("--version", type=int, default=None, help="This registry version instead of the champion.")
@click.option("--uid", default=None, help="This model_uid instead of the champion.")
@click.option("--format", "output_format", type=click.Choice(["table", "json", "csv"]),
              default="table", show_default=True)
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Classes listed per input.")
@click.option("--batch-size", type=click.IntRange(1, 1024), default=64, show_default=True)
@click.option("--log/--no-log", "log_predictions", default=True, show_default=True,
              help="Append the predictions to the prediction log.")
@_common
def predict_command(paths, version, uid, output_format, top_k, batch_size, log_predictions,
                    model_name, config_path, sets):
    """Classify image files, folders or an .npz with the champion (or --version/--uid)."""
    if version is not None and uid is not None:
        raise click.UsageError("give --version or --uid, not both")
    from imgpipe.serving import model as served
    from imgpipe.serving.predlog import LogRecord

    config = _config(config_path, sets)
    model = _load_model(config, model_name, version, uid)
    top_k = min(top_k or config.serving.top_k, len(model.class_names))
    limits = served.Limits(config.serving.max_image_side, tuple(config.serving.allowed_formats))
    inputs = _expand(paths)
    logger = _open_prediction_log(config) if log_predictions else None
    rows: List[dict] = []
    npz_cache: dict = {}
    progress = click.progressbar(length=len(inputs), label="predicting", file=sys.stderr) \
        if len(inputs) > batch_size else None
    try:
        for start in range(0, len(inputs), batch_size):
            chunk = inputs[start:start + batch_size]
            payloads, results, latency_ms = _predict_chunk(model, chunk, limits, top_k, npz_cache)
            for offset, item in enumerate(chunk):
                rows.append(_row(item, results[offset]))
                if logger is not None and not isinstance(results[offset], str):
                    # The id labels are imported with later (`imgpipe feedback import`).
                    rows[-1]["prediction_id"] = str(uuid.uuid4())
                    logger.log(LogRecord.of(model, results[offset], payloads[offset], latency_ms,
                                            "cli", rows[-1]["prediction_id"]), wait=True)
            if progress is not None:
                progress.update(len(chunk))
        if progress is not None:
            progress.render_finish()
    finally:
        if logger is not None:
            logger.close()  # writes what is queued, on an error or Ctrl-C too
    if logger is not None and logger.dropped:
        click.echo(f"warning: {logger.dropped} predictions could not be written to the "
                   "prediction log (see the errors above)", err=True)
    _print_predictions(rows, output_format, model)
    failed = [row for row in rows if "error" in row]
    click.echo(f"{len(rows) - len(failed)} of {len(rows)} inputs classified by {model.name} "
               f"version {model.version} ({model.uid})"
               + (f"; {len(failed)} could not be read" if failed else ""), err=True)
    if failed:
        sys.exit(1)


def _print_predictions(rows: List[dict], output_format: str, model) -> None:
    if output_format == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if output_format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["input", "class", "class_id", "confidence", "top_k", "error", "prediction_id"])
        for row in rows:
            writer.writerow([row["input"], row.get("class", ""), row.get("class_id", ""),
                             f"{row['confidence']:.6f}" if "confidence" in row else "",
                             ";".join(f"{t['class']}:{t['probability']:.4f}" for t in row.get("top_k", [])),
                             row.get("error", ""), row.get("prediction_id", "")])
        return
    width = max([len(r["input"]) for r in rows] + [5])
    click.echo(f"{'input':<{width}}  {'class':<12} {'confidence':>10}  top-k")
    for row in rows:
        if "error" in row:
            click.echo(f"{row['input']:<{width}}  ERROR  {row['error']}")
        else:
            top = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top_k"])
            click.echo(f"{row['input']:<{width}}  {row['class']:<12} {row['confidence']:>10.3f}  {top}")


# -- serve ----------------------------------------------------------------------

def _show_serving_warnings() -> None:
    """The server's own warnings (a failed champion lookup, a failing prediction
    log) reach stderr without --verbose, which quiets only the libraries."""
    import logging
    logger = logging.getLogger("imgpipe.serving")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(min(logging.getLogger().level, logging.WARNING) or logging.WARNING)
    logger.propagate = False   # the root logger, without --verbose, drops all below ERROR


@click.command("serve")
@click.option("--host", default=None, help="Address to listen on (default serving.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default serving.port, 8080).")
@_common
def serve_command(host, port, model_name, config_path, sets):
    """Serve the champion over HTTP (TF Serving's REST shape; /metrics, /healthz)."""
    import uvicorn

    from imgpipe.registry import store
    from imgpipe.serving import app as serving_app
    from imgpipe.serving import auth, http_server
    config = _config(config_path, sets)
    _show_serving_warnings()
    try:
        app = serving_app.build(config, model_name)
    except (store.RegistryError, auth.AuthConfigError) as error:
        raise click.ClickException(str(error)) from None
    model = app.state.holder.current
    host, port = host or config.serving.host, port or config.serving.port
    if app.state.settings.auth_token is None and not auth.is_loopback(host):
        click.echo(f"warning: serving on {host}, beyond this machine, without authentication: "
                   "anyone who can reach the port can use the model; set serving.auth_token_env "
                   "or serving.auth_token_file", err=True)
    click.echo(f"serving {model.name} version {model.version} ({model.uid}) on http://{host}:{port}"
               f"/v1/models/{model.name}:predict; prediction log "
               f"{store.mask_url(config.prediction_log_url)}", err=True)
    uvicorn.Server(http_server.server_config(
        app, host, port, config.serving.read_timeout_seconds)).run()


# -- monitor --------------------------------------------------------------------

@click.command("monitor")
@click.option("--since", default=None, help="Window: 30m, 24h, 7d or an ISO time "
                                            "(default monitoring.since, 24h).")
@click.option("--uid", default=None, help="Watch this model_uid (default: the champion).")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@click.option("--chart", "chart_path", default=None, type=click.Path(dir_okay=False),
              help="Also draw labelled accuracy and confidence per variant over the window (PNG).")
@_common
def monitor_command(since, uid, output_format, chart_path, model_name, config_path, sets):
    """Confidence, class mix and input skew of served predictions, and live quality
    where labels came back (per variant; the challenger against the champion);
    exit 1 on an alert."""
    from imgpipe.registry import store
    from imgpipe.serving import live_quality, monitor

    config = _config(config_path, sets)
    name = model_name or config.registry.model_name
    try:
        start = monitor.parse_since(since or config.monitoring.since)
        variants = _variant_checks(config, name, start, uid)
    except (ValueError, store.RegistryError) as error:
        raise click.ClickException(str(error)) from None
    champion = variants[0]
    alerts = sum(v["alerts"] for v in variants)
    labelled, live = _live_quality(config, name, start, champion["model_uid"])
    if output_format == "json":
        click.echo(json.dumps({**champion, "since": start.isoformat(), "variants": variants,
                               "live_quality": live}, indent=2, default=str))
    else:
        for variant in variants:
            click.echo(monitor.format_checks(
                [monitor.Check(**c) for c in variant["checks"]],
                f"{name} version {variant['model_version']} ({variant['model_uid']}), "
                f"{variant['variant']}: {variant['predictions']} predictions "
                f"since {start:%Y-%m-%d %H:%M} UTC"))
        click.echo(live_quality.format_report(live))
    if chart_path:
        click.echo(f"chart: {live_quality.chart(labelled, chart_path)}", err=True)
    if alerts:
        sys.exit(1)


def _variant_checks(config: Config, name: str, start, uid: Optional[str]) -> List[dict]:
    """The checks of the watched model (default the champion), then of each model
    that answered as the challenger in the window: split traffic is its own
    traffic, and a shadow's confidence and class mix are its own."""
    from imgpipe.serving import monitor, predlog
    row, logged, checks = monitor_checks(config, name, start, uid)
    watched = [("champion" if uid is None else "watched", row, logged, checks)]
    if uid is None:
        watched += [("challenger", *monitor_checks(config, name, start, other))
                    for other in predlog.challenger_uids(config.prediction_log_url, name, start)
                    if other != row.model_uid]
    return [{"variant": variant, "model_uid": row.model_uid, "model_version": row.version,
             "predictions": len(logged), "alerts": sum(c.status == monitor.ALERT for c in checks),
             "checks": [c.__dict__ for c in checks]}
            for variant, row, logged, checks in watched]


def monitor_checks(config: Config, name: str, start, uid: Optional[str] = None):
    """(registry row, logged predictions, checks) of the model (default its
    champion) over the window: what `imgpipe monitor` and `imgpipe watch` judge."""
    import tensorflow_data_validation as tfdv

    from imgpipe.components.validation_gate import inprocess, serving_skew
    from imgpipe.serving import model as served
    from imgpipe.serving import monitor, predlog

    settings = config.monitoring
    row = served.resolve(config.registry_url, name, uid=uid)
    logged = predlog.read(config.prediction_log_url, name, start, row.model_uid)
    class_names = list(row.training_config["class_names"])
    classes = [r.predicted_class for r in logged]
    training_statistics = None
    if row.statistics_path:
        try:
            training_statistics = inprocess.load_statistics_file(row.statistics_path)
        except inprocess.InputError:
            training_statistics = None
    checks = [
        monitor.confidence_check([r.confidence for r in logged], classes, row.serving_baseline,
                                 settings.min_mean_confidence, settings.min_predictions),
        monitor.class_distribution_check(classes, class_names, row.serving_baseline,
                                         settings.class_linf_threshold, settings.min_predictions),
        serving_skew.skew_check([r.sample_path for r in logged], ImageSpec.from_record(row.training_config),
                                tfdv.load_schema_text(config.schema_location), training_statistics,
                                settings.pixel_js_threshold, settings.min_samples),
        monitor.client_mistake_check(_observed_channel_means(logged, row, settings.min_samples),
                                     [r.confidence for r in logged], row.fuzz_report,
                                     settings.min_predictions),
    ]
    return row, logged, checks


def _live_quality(config: Config, model_name: str, start, champion_uid: str):
    """The window's labelled predictions and their report (serving/live_quality.py)."""
    from imgpipe.serving import feedback, live_quality, predlog
    labelled = predlog.read_labelled(config.prediction_log_url, model_name, start)
    settings = config.monitoring
    return labelled, live_quality.report(
        labelled, feedback.registry_class_names(config.registry_url), champion_uid,
        settings.promote_margin, settings.promote_confidence, settings.min_labels)


@click.group("feedback")
def feedback_group():
    """Ground truth for served predictions, joined by the prediction id each answer carried."""


@feedback_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@cli_options.config_option
@cli_options.set_option
def feedback_import(csv_file, config_path, sets):
    """Labels that arrived later, from a CSV file with `prediction_id` and `label`
    columns, into the prediction log's database: all of them, or none with the
    reason for each refused line."""
    from imgpipe.registry import store
    from imgpipe.serving import feedback, predlog

    config = _config(config_path, sets)
    try:
        labels = feedback.read_csv(csv_file)
        predlog.open_log_database(config.prediction_log_url)
        recorded = feedback.record(config.prediction_log_url, labels,
                                   feedback.registry_class_names(config.registry_url), "import")
    except feedback.FeedbackRefused as refused:
        for reason in refused.reasons[:50]:
            click.echo(f"  {reason}", err=True)
        more = len(refused.reasons) - 50
        raise click.ClickException(
            f"{len(refused.reasons)} of the labels in {csv_file} are refused"
            f"{f' ({more} more not shown)' if more > 0 else ''}; nothing was recorded") from None
    except (store.RegistryError, OSError, UnicodeDecodeError) as error:
        raise click.ClickException(f"{csv_file}: {error}") from None
    click.echo(f"recorded {recorded} labels from {csv_file} in the prediction log at "
               f"{store.mask_url(config.prediction_log_url)}")
