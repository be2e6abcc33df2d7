"""`imgpipe predict`, `imgpipe serve`, `imgpipe monitor`: after the push."""
from __future__ import annotations

import csv
import json
import os
import sys
import time
from typing import List, Optional, Tuple

import click

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
                                          model_name or config.registry.model_name, version, uid))
    except store.RegistryError as error:
        raise click.ClickException(str(error)) from None


# -- predict --------------------------------------------------------------------

def _expand(paths: Tuple[str, ...]) -> List[Tuple[str, str, Optional[int]]]:
    """(display name, path, index in an .npz or None), in input order."""
    from imgpipe.components.image_example_gen import encoding
    inputs = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(root, name) for root, _, names in os.walk(path)
                           for name in names if encoding.is_candidate_image(name))
            if not found:
                inputs.append((path, path, -1))   # reported: no images in it
            inputs.extend((p, p, None) for p in found)
        elif path.endswith(".npz") and os.path.isfile(path):
            import numpy as np
            try:
                with np.load(path) as archive:
                    count = len(archive["x"]) if "x" in archive else 0
            except Exception:  # noqa: BLE001 - reported as that input's error below
                count = 0
            inputs.extend((f"{path}[{i}]", path, i) for i in range(count)) if count else \
                inputs.append((path, path, -2))
        else:
            inputs.append((path, path, None))
    return inputs


def _read(item, limits, image_shape, npz_cache):
    """('bytes', data) or ('pixels', uint8 array), or raises InputRejected/OSError."""
    import numpy as np
    from imgpipe.serving import model as served
    name, path, index = item
    if index == -1:
        raise served.InputRejected(400, "no JPEG or PNG images in this folder")
    if index == -2:
        raise served.InputRejected(400, "not an .npz with an `x` array of images")
    if index is not None:
        if path not in npz_cache:
            with np.load(path) as archive:
                npz_cache[path] = np.asarray(archive["x"])
        return "pixels", served.check_pixels(npz_cache[path][index], image_shape, name)[0]
    with open(path, "rb") as handle:
        data = handle.read()
    served.check_image_bytes(data, limits, name)
    return "bytes", data


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
    import numpy as np
    from imgpipe.serving import model as served
    from imgpipe.serving.predlog import LogRecord, PredictionLogger

    config = _config(config_path, sets)
    model = _load_model(config, model_name, version, uid)
    top_k = min(top_k or config.serving.top_k, len(model.class_names))
    limits = served.Limits(config.serving.max_image_side, tuple(config.serving.allowed_formats))
    inputs = _expand(paths)
    logger = (PredictionLogger(config.prediction_log_url, config.samples_root,
                               config.serving.sample_rate) if log_predictions else None)
    rows: List[dict] = []
    npz_cache: dict = {}
    progress = click.progressbar(length=len(inputs), label="predicting", file=sys.stderr) \
        if len(inputs) > batch_size else None
    for start in range(0, len(inputs), batch_size):
        chunk = inputs[start:start + batch_size]
        read, errors = [], {}
        for offset, item in enumerate(chunk):
            try:
                read.append((offset, *_read(item, limits, model.image_shape, npz_cache)))
            except (served.InputRejected, OSError, ValueError) as error:
                errors[offset] = str(error) if isinstance(error, served.InputRejected) \
                    else f"{item[0]}: unreadable ({type(error).__name__}: {error})"
        started = time.perf_counter()
        probabilities = np.zeros((len(chunk), len(model.class_names)), np.float32)
        encoded = [(o, d) for o, kind, d in read if kind == "bytes"]
        arrays = [(o, d) for o, kind, d in read if kind == "pixels"]
        if encoded:
            probabilities[[o for o, _ in encoded]] = model.probabilities_from_bytes([d for _, d in encoded])
        if arrays:
            probabilities[[o for o, _ in arrays]] = model.probabilities_from_pixels(
                np.stack([d for _, d in arrays]))
        latency_ms = (time.perf_counter() - started) * 1000 / max(len(read), 1)
        predictions = model.predictions(probabilities, top_k)
        payloads = {o: d for o, _, d in read}
        for offset, item in enumerate(chunk):
            if offset in errors:
                rows.append({"input": item[0], "error": errors[offset]})
                continue
            prediction = predictions[offset]
            rows.append({"input": item[0], "class": prediction.class_name,
                         "class_id": prediction.class_id, "confidence": prediction.confidence,
                         "top_k": [{"class": c, "probability": p} for c, p in prediction.top_k]})
            if logger is not None:
                payload = payloads[offset]
                is_bytes = isinstance(payload, bytes)
                logger.log(LogRecord(
                    model_name=model.name, model_uid=model.uid, model_version=model.version,
                    input_hash=served.input_hash(payload if is_bytes else payload.tobytes()),
                    predicted_class=prediction.class_name, class_id=prediction.class_id,
                    confidence=prediction.confidence, latency_ms=latency_ms, source="cli",
                    data=payload if is_bytes else None, pixels=None if is_bytes else payload))
        if progress is not None:
            progress.update(len(chunk))
    if progress is not None:
        progress.render_finish()
    if logger is not None:
        logger.close()
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
        writer.writerow(["input", "class", "class_id", "confidence", "top_k", "error"])
        for row in rows:
            writer.writerow([row["input"], row.get("class", ""), row.get("class_id", ""),
                             f"{row['confidence']:.6f}" if "confidence" in row else "",
                             ";".join(f"{t['class']}:{t['probability']:.4f}" for t in row.get("top_k", [])),
                             row.get("error", "")])
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
    config = _config(config_path, sets)
    try:
        app = serving_app.build(config, model_name)
    except store.RegistryError as error:
        raise click.ClickException(str(error)) from None
    model = app.state.holder.current
    host, port = host or config.serving.host, port or config.serving.port
    click.echo(f"serving {model.name} version {model.version} ({model.uid}) on http://{host}:{port}"
               f"/v1/models/{model.name}:predict; prediction log "
               f"{store.mask_url(config.prediction_log_url)}", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


# -- monitor --------------------------------------------------------------------

@click.command("monitor")
@click.option("--since", default=None, help="Window: 30m, 24h, 7d or an ISO time "
                                            "(default monitoring.since, 24h).")
@click.option("--uid", default=None, help="Watch this model_uid (default: the champion).")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_common
def monitor_command(since, uid, output_format, model_name, config_path, sets):
    """Confidence, class mix and input skew of served predictions; exit 1 on an alert."""
    from imgpipe.components.validation_gate import inprocess
    from imgpipe.registry import store
    from imgpipe.serving import model as served
    from imgpipe.serving import monitor, predlog
    import tensorflow_data_validation as tfdv

    config = _config(config_path, sets)
    name = model_name or config.registry.model_name
    settings = config.monitoring
    try:
        start = monitor.parse_since(since or settings.since)
        row = served.resolve(config.registry_url, name, uid=uid)
        logged = predlog.read(config.prediction_log_url, name, start, row.model_uid)
    except (ValueError, store.RegistryError) as error:
        raise click.ClickException(str(error)) from None
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
        monitor.skew_check([r.sample_path for r in logged], row.training_config["image_shape"],
                           tfdv.load_schema_text(str(config.schema_path)), training_statistics,
                           settings.pixel_js_threshold, settings.min_samples),
    ]
    alerts = [c for c in checks if c.status == monitor.ALERT]
    if output_format == "json":
        click.echo(json.dumps({"model_uid": row.model_uid, "model_version": row.version,
                               "since": start.isoformat(), "predictions": len(logged),
                               "alerts": len(alerts),
                               "checks": [c.__dict__ for c in checks]}, indent=2, default=str))
    else:
        click.echo(monitor.format_checks(
            checks, f"{name} version {row.version} ({row.model_uid}): {len(logged)} predictions "
                    f"since {start:%Y-%m-%d %H:%M} UTC"))
    if alerts:
        sys.exit(1)
