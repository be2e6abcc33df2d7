"""`imgpipe compile` and `imgpipe submit`: the pipeline on Kubeflow Pipelines."""
from __future__ import annotations

from typing import Dict, Tuple

import click

from imgpipe.pipeline import cli_options


def _params(items: Tuple[str, ...]) -> Dict[str, str]:
    params = {}
    for item in items:
        if "=" not in item:
            raise click.UsageError(f"--param {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        params[key.strip()] = value
    return params


@click.command("compile")
@click.option("--target", type=click.Choice(["kubeflow"]), default="kubeflow", show_default=True,
              help="Orchestrator to compile for.")
@click.option("--config", "config_paths", multiple=True, metavar="FILE|builtin:PRESET",
              help="TOML configuration; repeat to layer files (later ones win), e.g. a preset "
                   "and configs/beam/dataflow.toml.")
@click.option("--output", default="pipeline.yaml", show_default=True,
              type=click.Path(dir_okay=False), help="The PipelineSpec to write (.yaml).")
@click.option("--image", default=None,
              help="Component image (default kubeflow.image, built from docker/Dockerfile).")
@click.option("--pipeline-root", default=None,
              help="Cluster artifact root, e.g. gs://bucket/imgpipe (default kubeflow.pipeline_root).")
@click.option("--data", default=None,
              help="Data source URI the pods can read (default data.source); a run-time "
                   "parameter `data_root` can point a run elsewhere.")
@click.option("--env-secret", default=None,
              help="Kubernetes secret whose keys (kubeflow.env_secret_keys) become every "
                   "component's environment (default kubeflow.env_secret).")
@cli_options.set_option
def compile_command(target, config_paths, output, image, pipeline_root, data, env_secret, sets):
    """Compile the pipeline to a PipelineSpec YAML for Kubeflow Pipelines 2.x."""
    from imgpipe.pipeline import kubeflow
    from imgpipe.pipeline.pipeline import PipelineError
    config = cli_options.load(list(config_paths) or None, sets)
    try:
        compiled = kubeflow.compile_pipeline(config, output, image=image,
                                             pipeline_root=pipeline_root, data=data,
                                             env_secret=env_secret)
    except (kubeflow.KubeflowError, PipelineError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {compiled.path}: {len(compiled.components)} components "
               f"({', '.join(compiled.components)}), image {compiled.image}, "
               f"pipeline root {compiled.pipeline_root}")
    for warning in compiled.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"submit it: imgpipe submit {compiled.path} --host https://<kubeflow>/pipeline")


@click.command("submit")
@click.argument("package", type=click.Path(dir_okay=False))
@click.option("--host", required=True, help="Kubeflow Pipelines API URL.")
@click.option("--namespace", default=None, help="Kubeflow profile namespace (multi-user).")
@click.option("--experiment", default=None, help="Experiment name (default imgpipe).")
@click.option("--run-name", default=None, help="Run name (default: the pipeline's name and time).")
@click.option("--pipeline-root", default=None,
              help="Override the compiled pipeline root for KFP's artifacts; drift baselines and "
                   "serving copies stay where they were compiled (recompile to move them).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A run-time parameter, e.g. data_root=gs://bucket/images/2026-12 (repeatable).")
@click.option("--token-env", default="KFP_BEARER_TOKEN", show_default=True,
              help="Environment variable holding a bearer token.")
@click.option("--token-path", default=None,
              help="File holding a (service-account) token; default $KF_PIPELINES_SA_TOKEN_PATH "
                   "or /var/run/secrets/kubeflow/pipelines/token when present.")
@click.option("--no-cache", is_flag=True, help="Disable Kubeflow's step caching for this run.")
@click.option("--schedule", "cron", default=None, metavar="CRON",
              help="Create a recurring run instead, e.g. \"0 3 * * *\" (every day at 03:00; "
                   "one run at a time, missed times not caught up).")
def submit_command(package, host, namespace, experiment, run_name, pipeline_root, params,
                   token_env, token_path, no_cache, cron):
    """Submit a compiled PipelineSpec as a run (or a recurring run); prints its id and UI link."""
    from imgpipe.pipeline import kubeflow
    try:
        token = kubeflow.bearer_token(token_env, token_path)
        arguments = dict(namespace=namespace, experiment=experiment, run_name=run_name,
                         pipeline_root=pipeline_root, params=_params(params), token=token,
                         enable_caching=False if no_cache else None)
        submitted = (kubeflow.schedule(package, host, cron, **arguments) if cron
                     else kubeflow.submit(package, host, **arguments))
    except kubeflow.KubeflowError as error:
        raise click.ClickException(str(error)) from None
    what = f"recurring run {submitted.run_id} ({cron})" if cron else f"run {submitted.run_id}"
    click.echo(f"{what} in experiment {submitted.experiment}")
    click.echo(f"  {submitted.url}")
