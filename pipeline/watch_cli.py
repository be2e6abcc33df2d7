"""`imgpipe watch`: the command; the logic is pipeline/watch.py."""
from __future__ import annotations

import subprocess
import sys
import time
from typing import List, Optional

import click

from imgpipe.pipeline import cli_options

# The pipeline as a child process: a run's memory goes when it ends, and a
# crashed run does not take the watcher with it.
_RUN_CLI = "import sys; from imgpipe.pipeline.cli import main; sys.exit(main())"


@click.command("watch")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron or a CronJob).")
@click.option("--target", type=click.Choice(["local", "kubeflow"]), default=None,
              help="Run the pipeline here, or submit it to Kubeflow (default watch.target).")
@click.option("--package", default=None, help="Compiled PipelineSpec for --target kubeflow "
                                               "(default watch.kubeflow_package).")
@click.option("--host", default=None, help="Kubeflow Pipelines API URL (default watch.kubeflow_host).")
@click.option("--interval", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds between polls (default watch.interval_seconds).")
@cli_options.model_option
@cli_options.config_option
@cli_options.set_option
def watch_command(once, target, package, host, interval, model_name, config_path, sets):
    """Retrain when new data lands or the monitor alerts: one run at a time, with a
    cooldown; every trigger and skip logged to <output root>/watch/events.jsonl."""
    from imgpipe.pipeline import watch
    config = cli_options.load(config_path, sets)
    settings, target = config.watch, target or config.watch.target
    folder = config.output_root / "watch"
    folder.mkdir(parents=True, exist_ok=True)
    name = model_name or config.registry.model_name
    if target == "kubeflow":
        run = _kubeflow_runner(package or settings.kubeflow_package, host or settings.kubeflow_host)
    else:
        run = _local_runner(config_path, sets)
    watcher = watch.Watcher(folder, settings.cooldown_seconds,
                            lambda: _newest_span(config) if settings.on_new_span else None,
                            lambda: _alerts(config, name) if settings.on_alerts else [],
                            run, echo=lambda line: click.echo(line, err=True))
    try:
        with watch.Lock(folder):
            watcher.log("started", target=target, model=name)
            while True:
                watcher.poll()
                if once:
                    return
                time.sleep(interval or settings.interval_seconds)
    except watch.WatchError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        click.echo("[watch] stopped", err=True)


def _newest_span(config) -> Optional[int]:
    from imgpipe.pipeline import watch
    found = watch.spans(config.data.source)
    return found[-1] if found else None


def _alerts(config, name: str) -> List[str]:
    """The champion's monitor alerts over monitoring.since (none without a champion)."""
    from imgpipe.pipeline.serving_cli import monitor_checks
    from imgpipe.registry import store
    from imgpipe.serving import monitor
    try:
        _, _, checks = monitor_checks(config, name, monitor.parse_since(config.monitoring.since))
    except store.RegistryError:
        return []          # nothing served yet: nothing to alert on
    return [f"{check.name}: {check.detail}" for check in checks if check.status == monitor.ALERT]


def _local_runner(config_path: Optional[str], sets):
    def run(span: Optional[int], _reason: str) -> int:
        arguments = ["run", *(["--config", config_path] if config_path else [])]
        arguments += [part for pair in sets for part in ("--set", pair)]
        arguments += ["--span", str(span)] if span is not None else []
        return subprocess.run([sys.executable, "-c", _RUN_CLI, *arguments], check=False).returncode
    return run


def _kubeflow_runner(package: str, host: str):
    from imgpipe.pipeline import kubeflow
    if not package or not host:
        raise click.UsageError("--target kubeflow needs a compiled package and the API host "
                               "(--package/--host or watch.kubeflow_package/kubeflow_host)")

    def run(span: Optional[int], reason: str) -> int:
        try:
            submitted = kubeflow.submit(package, host, token=kubeflow.bearer_token(),
                                        run_name=f"imgpipe watch: {reason}"[:100])
        except kubeflow.KubeflowError as error:
            click.echo(f"[watch] submission failed: {error}", err=True)
            return 1
        click.echo(f"[watch] submitted run {submitted.run_id}: {submitted.url}", err=True)
        return 0
    return run
