"""Kubeflow Pipelines: the same create_pipeline, compiled to a PipelineSpec and submitted.

Compiling uses TFX's KubeflowV2DagRunner with the 2.1 schema (the only one
the open-source KFP 2.x server accepts) and a bare `.yaml` PipelineSpec.
Paths on this machine mean nothing in a pod, so compiling maps them: the
pipeline's artifacts, drift baselines and serving copies go under the
cluster's pipeline root; the curated schema travels inside the compiled
pipeline (CuratedSchema carries its text), so a user's project needs no
image of its own; the built-in dataset is inside the image (docker/Dockerfile);
Transform and Trainer call the functions installed in the image instead of
uploading module files; the registry and MLflow come from the pods'
environment (a Kubernetes secret).
"""
from __future__ import annotations

import dataclasses
import os
import re
import urllib.parse
from typing import Dict, List, Optional, Tuple

import yaml

from imgpipe.components.image_example_gen import sources
from imgpipe.components.image_example_gen.component import ImageExampleGen
from imgpipe.pipeline.config import BUILTIN_PREFIX, Config
from imgpipe.pipeline.local_runner import DEPENDENCY_FLAGS, local_beam_args
from imgpipe.pipeline.pipeline import Locations, create_pipeline

IMAGE_ROOT = "/opt/imgpipe"
IMAGE_QUICKSTART = f"{IMAGE_ROOT}/datasets/quickstart"
TOKEN_ENV = "KFP_BEARER_TOKEN"
SA_TOKEN_PATH_ENV = "KF_PIPELINES_SA_TOKEN_PATH"
DEFAULT_SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"
_PORTABLE_RUNNERS = ("flinkrunner", "flink", "sparkrunner", "spark", "portablerunner")
# Schemes TFX 1.16's tf.io.gfile can write in the image (s3://, minio:// need tensorflow-io).
_WRITABLE_ROOT_SCHEMES = ("gs",)


class KubeflowError(ValueError):
    """Cannot compile or submit; the message says why and what to do."""


def _is_uri(value: str) -> bool:
    return "://" in value


def cluster_locations(config: Config, pipeline_root: str) -> Locations:
    root = pipeline_root.rstrip("/")

    def under(configured: str, name: str) -> str:
        return configured if _is_uri(configured) else f"{root}/{name}"

    return Locations(
        pipeline_root=root,
        baseline_root=under(config.validation.baseline_root, f"baselines/{config.pipeline.name}"),
        serving_root=under(config.registry.serving_root, "serving"),
        mlflow_artifact_root=under(config.registry.mlflow_artifact_root, "mlflow-artifacts"),
        # Empty: the pods' IMGPIPE_REGISTRY_URL / MLFLOW_TRACKING_URI (required there).
        registry_url=config.registry.url, mlflow_tracking_uri=config.registry.mlflow_tracking_uri,
        installed_modules=True, metadata_path=None, data_root_parameter=True)


def cluster_source(config: Config, data: Optional[str]) -> Tuple[str, Optional[sources.SourceLayout]]:
    """The data source as the pods see it (and its layout when not readable from here)."""
    source = data or config.data.source
    if source.startswith(BUILTIN_PREFIX):
        if source != f"{BUILTIN_PREFIX}quickstart":
            raise KubeflowError(f"data.source: unknown built-in dataset {source!r}")
        return IMAGE_QUICKSTART, sources.SourceLayout(
            sources.FOLDERS, IMAGE_QUICKSTART, {"single_split": "*/*"})
    if not _is_uri(source):
        raise KubeflowError(
            f"data.source {source!r} is a path on this machine; the cluster needs a URI its pods "
            "can read (gs://bucket/images/...), or builtin:quickstart (inside the image)")
    return source, None


def unknown_beam_flags(beam_args: List[str]) -> List[str]:
    """Flags Beam's own PipelineOptions do not know (Beam would drop them with a warning)."""
    from apache_beam.options.pipeline_options import PipelineOptions
    known = PipelineOptions(list(beam_args)).get_all_options()
    return [arg for arg in beam_args
            if arg.startswith("--") and arg[2:].split("=", 1)[0].replace("-", "_") not in known]


def cluster_beam_args(beam_args: List[str], image: str) -> List[str]:
    """Beam workers run the component image, which has every package: naming
    it stops TFX from building and staging an sdist of itself per Beam stage.
    Dataflow and portable runners (Flink, Spark) get the image; an EXTERNAL
    worker pool ignores it. The DirectRunner inside a pod as locally."""
    args = list(beam_args)
    runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), "DirectRunner")
    named = any(a.split("=", 1)[0] in DEPENDENCY_FLAGS for a in args)
    if runner.lower() in ("dataflowrunner", "dataflow", *_PORTABLE_RUNNERS):
        return args if named else args + [f"--sdk_container_image={image}"]
    return local_beam_args(args)


def _platform_spec(pipeline_spec: dict, secret: str, keys: List[str]) -> dict:
    """kfp-kubernetes' `use_secret_as_env` for every executor: the secret's
    keys become environment variables of each component's pod."""
    executors = pipeline_spec["deploymentSpec"]["executors"]

    def config() -> dict:  # one copy per executor: no YAML aliases
        return {"secretAsEnv": [{"secretName": secret,
                                 "keyToEnv": [{"secretKey": k, "envVar": k} for k in keys]}]}
    return {"platforms": {"kubernetes": {"deploymentSpec": {
        "executors": {name: config() for name in sorted(executors)}}}}}


@dataclasses.dataclass
class Compiled:
    path: str
    image: str
    pipeline_root: str
    components: List[str]
    warnings: List[str] = dataclasses.field(default_factory=list)


def compile_warnings(config: Config, image: str, secret: str) -> List[str]:
    """What compiles but would fail on the cluster, said before a run is spent on it."""
    warnings = []
    if "/" not in image.split(":", 1)[0]:
        warnings.append(f"image {image!r} names no registry: pods pull from Docker Hub unless the "
                        "nodes already have it (push it and pass --image REGISTRY/imgpipe:TAG)")
    if not secret and not config.registry.url:
        warnings.append("no --env-secret and no registry.url: ChampionResolver and RegistryPusher "
                        "will stop the run unless the pods' environment sets IMGPIPE_REGISTRY_URL")
    return warnings


def checked_pipeline_root(root: str) -> str:
    if not root:
        raise KubeflowError(
            "no pipeline root: pass --pipeline-root gs://bucket/path (or kubeflow.pipeline_root). "
            "TFX components write artifacts with tf.io.gfile, which cannot write KFP's default "
            "minio:// root")
    scheme = urllib.parse.urlparse(root).scheme if _is_uri(root) else ""
    if scheme not in _WRITABLE_ROOT_SCHEMES:
        # KFP's launcher takes gs://, s3://, minio:// roots only (no paths), and
        # TFX writes artifacts through tf.io.gfile, which in TensorFlow 2.16 has
        # no S3/MinIO file system without tensorflow-io (not in the image).
        raise KubeflowError(
            f"--pipeline-root {root!r}: give a gs:// URI. Open-source KFP accepts only "
            "object-store roots, and TFX's tf.io.gfile in the image can write gs:// but not "
            "s3:// or minio:// (that needs tensorflow-io)")
    return root


def _finish_spec(spec: dict, tfx_pipeline, root: str) -> None:
    """What TFX's compiler leaves out for open-source KFP, put into the spec."""
    from tfx.orchestration.data_types import RuntimeParameter
    # TFX leaves run-time parameters without their defaults; put them in the
    # spec, so a run needs no arguments.
    defaults = {value.name: value.default for c in tfx_pipeline.components
                for value in c.exec_properties.values() if isinstance(value, RuntimeParameter)}
    for name, parameter in spec["root"].get("inputDefinitions", {}).get("parameters", {}).items():
        if defaults.get(name) is not None:
            parameter["defaultValue"] = defaults[name]
            parameter["isOptional"] = True
    spec["defaultPipelineRoot"] = root  # what the bare spec keeps of the job's output directory
    # KFP skips ingestion's driver (components/image_example_gen/driver.py), so
    # its cache key would hold data_root's name but not what the folder holds:
    # a rerun on new images under the same root would reuse the old examples.
    ingestion = next(c.id for c in tfx_pipeline.components if isinstance(c, ImageExampleGen))
    spec["root"]["dag"]["tasks"][ingestion]["cachingOptions"] = {"enableCache": False}


def compile_pipeline(config: Config, output: str, image: Optional[str] = None,
                     pipeline_root: Optional[str] = None, data: Optional[str] = None,
                     env_secret: Optional[str] = None) -> Compiled:
    # The import checks the runner's dependencies (tfx.v1's re-export would hide errors).
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    if not output.endswith((".yaml", ".yml")):
        raise KubeflowError(f"--output {output}: open-source KFP takes a .yaml PipelineSpec")
    image = image or config.kubeflow.image
    root = checked_pipeline_root(pipeline_root or config.kubeflow.pipeline_root)
    unknown = unknown_beam_flags(list(config.pipeline.beam_args))
    if unknown:
        raise KubeflowError(f"pipeline.beam_args: Beam does not know {', '.join(unknown)}")
    source, layout = cluster_source(config, data)
    tfx_pipeline = create_pipeline(
        config, source=source, layout=layout, locations=cluster_locations(config, root),
        beam_args=cluster_beam_args(list(config.pipeline.beam_args), image))
    runner = kubeflow_v2_dag_runner.KubeflowV2DagRunner(
        config=kubeflow_v2_dag_runner.KubeflowV2DagRunnerConfig(
            default_image=image, use_pipeline_spec_2_1=True,
            display_name=config.pipeline.name))
    spec = runner.run(tfx_pipeline, write_out=False)["pipelineSpec"]
    _finish_spec(spec, tfx_pipeline, root)
    documents = [spec]
    secret = env_secret if env_secret is not None else config.kubeflow.env_secret
    if secret:
        documents.append(_platform_spec(spec, secret, list(config.kubeflow.env_secret_keys)))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle:
        handle.write(f"# PIPELINE DEFINITION\n# Name: {config.pipeline.name}\n"
                     f"# Compiled by `imgpipe compile` (TFX {spec.get('sdkVersion', '')}) for image "
                     f"{image}\n")
        yaml.safe_dump_all(documents, handle, sort_keys=True)
    return Compiled(output, image, root, [type(c).__name__ for c in tfx_pipeline.components],
                    compile_warnings(config, image, secret))


# -- submission -----------------------------------------------------------------

@dataclasses.dataclass
class Submitted:
    run_id: str
    url: str
    experiment: str


def bearer_token(token_env: str = TOKEN_ENV, token_path: Optional[str] = None) -> Optional[str]:
    """From the environment variable, else a (service-account) token file."""
    if os.environ.get(token_env):
        return os.environ[token_env].strip()
    path = token_path or os.environ.get(SA_TOKEN_PATH_ENV) or DEFAULT_SA_TOKEN_PATH
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    if token_path:
        raise KubeflowError(f"--token-path {token_path}: no such file")
    return None


def _preflight(host: str, token: Optional[str]) -> None:
    """One quick probe with clear errors (kfp.Client retries healthz 5 x 5 s)."""
    import requests
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{host.rstrip('/')}/apis/v2beta1/healthz"
    try:
        # No redirects: a gateway (Dex, oauth2-proxy) sends unauthenticated
        # calls to its HTML login page, which would look healthy.
        response = requests.get(url, headers=headers, timeout=10, allow_redirects=False)
    except requests.RequestException as error:
        raise KubeflowError(f"cannot reach the Kubeflow Pipelines API at {host}: "
                            f"{type(error).__name__}") from None
    if response.is_redirect:
        raise KubeflowError(
            f"{url} redirected to {response.headers.get('location', '?')}: a login page in front "
            f"of the API. Pass a bearer token it accepts ({TOKEN_ENV} or --token-path), or the "
            "in-cluster API URL (http://ml-pipeline.kubeflow:8888)")
    if response.status_code in (401, 403):
        raise KubeflowError(
            f"{host} refused the request ({response.status_code}): "
            + ("the bearer token was not accepted" if token else
               f"no bearer token was sent; set {TOKEN_ENV} or --token-path"))
    if response.status_code >= 400:
        raise KubeflowError(f"{url} answered {response.status_code}; is --host the KFP API "
                            "endpoint (e.g. http://ml-pipeline-ui.kubeflow or the gateway URL)?")


def _api_error(error) -> KubeflowError:
    status = getattr(error, "status", None)
    body = getattr(error, "body", "") or ""
    try:
        import json
        body = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    if status in (401, 403):
        return KubeflowError(f"Kubeflow Pipelines refused the run ({status}): {body}")
    return KubeflowError(f"Kubeflow Pipelines rejected the package ({status}): {body}")


def _client(package: str, host: str, token: Optional[str], namespace: Optional[str]):
    """A kfp.Client for `host`, after the package and the API were checked."""
    import kfp
    from google.protobuf import json_format

    if not os.path.isfile(package):
        raise KubeflowError(f"{package}: no such file (compile it with `imgpipe compile`)")
    try:
        # The reader create_run_from_pipeline_package uses, before any request.
        from kfp.client.client import _extract_pipeline_yaml
        _extract_pipeline_yaml(package)
    except (json_format.ParseError, ValueError, TypeError, yaml.YAMLError) as error:
        raise KubeflowError(f"{package}: not a PipelineSpec kfp can read ({error}); "
                            "compile it with `imgpipe compile`") from None
    parsed = urllib.parse.urlparse(host)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise KubeflowError(f"--host {host!r}: give the API URL, e.g. https://kubeflow.example.com/pipeline")
    _preflight(host, token)
    return kfp.Client(host=host, existing_token=token, **({"namespace": namespace} if namespace else {}))


def submit(package: str, host: str, namespace: Optional[str] = None,
           experiment: Optional[str] = None, run_name: Optional[str] = None,
           pipeline_root: Optional[str] = None, params: Optional[Dict[str, str]] = None,
           token: Optional[str] = None, enable_caching: Optional[bool] = None) -> Submitted:
    from kfp_server_api.exceptions import ApiException
    client = _client(package, host, token, namespace)
    experiment = experiment or "imgpipe"
    try:
        result = client.create_run_from_pipeline_package(
            package, arguments=params or {}, run_name=run_name, experiment_name=experiment,
            namespace=namespace, pipeline_root=pipeline_root, enable_caching=enable_caching)
    except ApiException as error:
        raise _api_error(error) from None
    return Submitted(result.run_id, f"{host.rstrip('/')}/#/runs/details/{result.run_id}", experiment)


_CRON_FIELD = re.compile(r"^[0-9*?/,LW#A-Za-z-]+$")


def kfp_cron(expression: str) -> str:
    """KFP's six-field cron (seconds first) from the usual five fields (or six as given)."""
    fields = expression.split()
    if len(fields) not in (5, 6) or not all(_CRON_FIELD.match(f) for f in fields):
        raise KubeflowError(f"--schedule {expression!r}: expected a cron expression of five fields "
                            "(minute hour day-of-month month day-of-week, e.g. \"0 3 * * *\") "
                            "or KFP's six (seconds first)")
    return " ".join(["0", *fields] if len(fields) == 5 else fields)


def schedule(package: str, host: str, cron: str, namespace: Optional[str] = None,
             experiment: Optional[str] = None, run_name: Optional[str] = None,
             pipeline_root: Optional[str] = None, params: Optional[Dict[str, str]] = None,
             token: Optional[str] = None, enable_caching: Optional[bool] = None) -> Submitted:
    """A recurring run: one at a time (max_concurrency 1), no catch-up of missed times."""
    from kfp_server_api.exceptions import ApiException
    expression = kfp_cron(cron)
    client = _client(package, host, token, namespace)
    experiment = experiment or "imgpipe"
    try:
        found = client.create_experiment(experiment, namespace=namespace)
        result = client.create_recurring_run(
            experiment_id=found.experiment_id, job_name=run_name or f"imgpipe every {cron}",
            cron_expression=expression, max_concurrency=1, no_catchup=True, params=params or {},
            pipeline_package_path=package, pipeline_root=pipeline_root,
            enable_caching=enable_caching)
    except ApiException as error:
        raise _api_error(error) from None
    return Submitted(result.recurring_run_id,
                     f"{host.rstrip('/')}/#/recurringruns/details/{result.recurring_run_id}", experiment)
