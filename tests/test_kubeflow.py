"""Compiling for Kubeflow Pipelines and submitting to a stand-in KFP API server.

The server in kfp_standin.py is a STAND-IN for a cluster (none can run here):
it speaks the v2beta1 endpoints kfp.Client uses and records what it is sent.
"""
import json
import socket

import pytest
import yaml
from click.testing import CliRunner
from google.protobuf import json_format

from conftest import REPO
from imgpipe.pipeline import cli
from kfp_standin import KfpStandIn

STAGES = {"ImageExampleGen", "ImportSchemaGen", "StatisticsGen", "ValidationGate", "Transform",
          "Trainer", "ChampionResolver", "Evaluator", "EvaluationGate", "RegistryPusher"}
IMAGE = "europe-docker.pkg.dev/acme/ml/imgpipe:1.2.3"


def invoke(*args, env=None):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    result = invoke("compile", "--target", "kubeflow", "--output", out, "--image", IMAGE,
                    "--pipeline-root", "gs://acme-ml/imgpipe", "--env-secret", "imgpipe-env")
    assert result.exit_code == 0, result.output
    assert f"wrote {out}: 10 components" in result.output
    documents = list(yaml.safe_load_all(out.read_text()))
    return {"path": out, "spec": documents[0], "documents": documents}


def test_compiled_yaml_is_a_kfp_2_1_pipeline_spec(compiled):
    from kfp.client.client import _extract_pipeline_yaml
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(compiled["spec"], pipeline_spec_pb2.PipelineSpec())
    assert spec.schema_version == "2.1.0"
    assert spec.default_pipeline_root == "gs://acme-ml/imgpipe"
    assert set(spec.root.dag.tasks) == STAGES
    # The kfp client's own reader (what create_run_from_pipeline_package uses).
    document = _extract_pipeline_yaml(str(compiled["path"]))
    assert document.pipeline_spec == spec
    assert set(document.platform_spec.platforms) == {"kubernetes"}


def test_every_component_runs_the_configured_image_and_no_resolver(compiled):
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    assert len(executors) == len(STAGES)
    assert {e["container"]["image"] for e in executors.values()} == {IMAGE}
    assert not [name for name, e in executors.items() if "resolver" in e or "importer" in e]
    secrets = compiled["documents"][1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(secrets) == set(executors)
    [binding] = secrets["RegistryPusher_executor"]["secretAsEnv"]
    assert binding["secretName"] == "imgpipe-env"
    assert {k["envVar"] for k in binding["keyToEnv"]} == {"IMGPIPE_REGISTRY_URL", "MLFLOW_TRACKING_URI"}


def _constant(compiled, task, name):
    return compiled["spec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]["runtimeValue"]["constant"]


def test_parameters_and_paths_round_trip(compiled):
    from imgpipe.pipeline.config import load_config
    from imgpipe.pipeline.pipeline import trainer_config
    config = load_config(REPO / "configs" / "quickstart.toml")
    root = compiled["spec"]["root"]
    data_root = root["inputDefinitions"]["parameters"]["data_root"]
    assert data_root["defaultValue"] == "/opt/imgpipe/datasets/quickstart"
    assert root["dag"]["tasks"]["ImageExampleGen"]["inputs"]["parameters"]["input_base"] == \
        {"componentInputParameter": "data_root"}
    custom = json.loads(_constant(compiled, "Trainer", "custom_config"))
    assert custom == json.loads(json.dumps(trainer_config(config, ["circle", "cross", "square", "triangle"])))
    assert _constant(compiled, "Trainer", "run_fn") == "imgpipe.modules.training.run_fn"
    assert _constant(compiled, "Transform", "preprocessing_fn") == \
        "imgpipe.modules.preprocessing.preprocessing_fn"
    assert _constant(compiled, "ImportSchemaGen", "schema_file") == "/opt/imgpipe/schemas/quickstart.pbtxt"
    assert _constant(compiled, "ValidationGate", "baseline_root") == \
        "gs://acme-ml/imgpipe/baselines/imgpipe-quickstart"
    pusher = json.loads(_constant(compiled, "RegistryPusher", "settings"))
    # Registry and MLflow come from the pods' environment (the secret).
    assert pusher["registry_url"] == "" and pusher["mlflow_tracking_uri"] == ""
    assert pusher["serving_root"] == "gs://acme-ml/imgpipe/serving"
    assert "/work/" not in compiled["path"].read_text()   # nothing from this machine


def test_dataflow_layer_hands_beam_work_to_dataflow_workers_running_the_image(tmp_path):
    from apache_beam.options.pipeline_options import (GoogleCloudOptions, PipelineOptions,
                                                      StandardOptions, WorkerOptions)
    out = tmp_path / "p.yaml"
    result = invoke("compile", "--config", REPO / "configs" / "quickstart.toml",
                    "--config", REPO / "configs" / "beam" / "dataflow.toml", "--output", out,
                    "--image", IMAGE, "--pipeline-root", "gs://acme-ml/imgpipe")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(out.read_text())
    args = spec["deploymentSpec"]["executors"]["StatisticsGen_executor"]["container"]["args"]
    beam_args = [a for a in args if a.startswith("--") and "=" in a and not a.startswith("--executor")]
    options = PipelineOptions(beam_args)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert options.view_as(GoogleCloudOptions).region == "us-central1"
    assert options.view_as(WorkerOptions).sdk_container_image == IMAGE


@pytest.mark.parametrize("name, check", [
    ("dataflow", lambda o: o.view_as(__import__("apache_beam.options.pipeline_options", fromlist=["x"])
                                     .GoogleCloudOptions).temp_location == "gs://my-bucket/imgpipe/tmp"),
    ("flink", lambda o: o.view_as(__import__("apache_beam.options.pipeline_options", fromlist=["x"])
                                  .FlinkRunnerOptions).flink_master == "flink-jobmanager.flink.svc:8081"),
    ("spark", lambda o: o.view_as(__import__("apache_beam.options.pipeline_options", fromlist=["x"])
                                  .SparkRunnerOptions).spark_master_url == "spark://spark-master.spark.svc:7077"),
])
def test_beam_runner_configs_parse_with_beams_own_options(name, check):
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from imgpipe.pipeline import kubeflow
    from imgpipe.pipeline.config import load_config
    config = load_config([REPO / "configs" / "quickstart.toml", REPO / "configs" / "beam" / f"{name}.toml"])
    args = list(config.pipeline.beam_args)
    assert kubeflow.unknown_beam_flags(args) == []
    options = PipelineOptions(args)
    assert options.view_as(StandardOptions).runner.lower().startswith(name)
    assert check(options)
    assert config.pipeline.name == "imgpipe-quickstart"    # the preset underneath is kept
    assert kubeflow.unknown_beam_flags(["--runner=FlinkRunner", "--flink_mastr=x"]) == ["--flink_mastr=x"]


@pytest.mark.parametrize("args, message", [
    (["--pipeline-root", "gs://b/r", "--data", "/home/me/images"], "is a path on this machine"),
    ([], "no pipeline root: pass --pipeline-root"),
    (["--pipeline-root", "gs://b/r", "--set", "pipeline.beam_args=['--runner=FlinkRunner','--flink_mastr=x']"],
     "Beam does not know --flink_mastr=x"),
    (["--pipeline-root", "gs://b/r", "--set", "validation.schema_file='/tmp/mine.pbtxt'"],
     "is a file on this machine"),
])
def test_compile_errors_say_what_to_do(tmp_path, args, message):
    result = invoke("compile", "--output", tmp_path / "p.yaml", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "p.yaml").exists()
    json_out = invoke("compile", "--output", tmp_path / "p.json", "--pipeline-root", "gs://b/r")
    assert json_out.exit_code == 1 and "takes a .yaml PipelineSpec" in json_out.output


def test_submit_posts_the_compiled_spec_root_and_parameters(compiled):
    with KfpStandIn(token="t0ken") as server:
        result = invoke("submit", compiled["path"], "--host", server.url, "--namespace", "team-a",
                        "--experiment", "shapes", "--run-name", "nightly",
                        "--pipeline-root", "gs://acme-ml/other-root",
                        "--param", "data_root=gs://acme-ml/images/2026-12",
                        env={"KFP_BEARER_TOKEN": "t0ken"})
        assert result.exit_code == 0, result.output
        [run] = server.runs
        [experiment] = server.experiments
    assert f"run {run['run_id']} in experiment shapes" in result.output
    assert f"{server.url}/#/runs/details/{run['run_id']}" in result.output
    assert experiment["display_name"] == "shapes" and experiment["namespace"] == "team-a"
    assert run["experiment_id"] == experiment["experiment_id"] and run["display_name"] == "nightly"
    assert run["pipeline_spec"]["pipeline_spec"] == compiled["spec"]
    assert run["pipeline_spec"]["platform_spec"] == compiled["documents"][1]
    assert run["runtime_config"]["pipeline_root"] == "gs://acme-ml/other-root"
    assert run["runtime_config"]["parameters"] == {"data_root": "gs://acme-ml/images/2026-12"}


def test_submit_error_paths(compiled, tmp_path):
    with KfpStandIn(token="t0ken") as server:
        missing = invoke("submit", compiled["path"], "--host", server.url, env={"KFP_BEARER_TOKEN": ""})
        assert missing.exit_code == 1 and "refused the request (401)" in missing.output
        assert "set KFP_BEARER_TOKEN" in missing.output
        wrong = invoke("submit", compiled["path"], "--host", server.url, env={"KFP_BEARER_TOKEN": "nope"})
        assert wrong.exit_code == 1 and "(403): the bearer token was not accepted" in wrong.output
        token_file = tmp_path / "token"
        token_file.write_text("t0ken\n")
        rejected = invoke("submit", compiled["path"], "--host", server.url, "--token-path", token_file,
                          "--param", "epochs=3", env={"KFP_BEARER_TOKEN": ""})
        assert rejected.exit_code == 1
        assert "rejected the package (400)" in rejected.output and "['epochs']" in rejected.output
        assert server.runs == []
    with socket.socket() as probe:   # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    unreachable = invoke("submit", compiled["path"], "--host", f"http://127.0.0.1:{closed}")
    assert unreachable.exit_code == 1 and "cannot reach the Kubeflow Pipelines API" in unreachable.output
    no_file = invoke("submit", tmp_path / "absent.yaml", "--host", "http://127.0.0.1:1")
    assert no_file.exit_code == 1 and "no such file" in no_file.output
    bad_host = invoke("submit", compiled["path"], "--host", "kubeflow.example.com")
    assert bad_host.exit_code == 1 and "give the API URL" in bad_host.output
