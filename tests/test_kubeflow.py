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

STAGES = {"ImageExampleGen", "CuratedSchema", "StatisticsGen", "ValidationGate", "Transform",
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
    assert f"wrote {out}: 10 components" in result.output and "warning" not in result.output
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


def test_every_artifact_type_resolves_to_its_class_in_the_pod(compiled):
    """TFX's container entrypoint imports custom artifact classes by their
    schema title; a title that is not importable fails every task using it."""
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils as entrypoint
    from tfx.utils import import_utils
    titles = {}
    for component in compiled["spec"]["components"].values():
        for side in ("inputDefinitions", "outputDefinitions"):
            for artifact in component.get(side, {}).get("artifacts", {}).values():
                schema = json_format.ParseDict(artifact["artifactType"],
                                               pipeline_spec_pb2.ArtifactTypeSchema())
                titles[yaml.safe_load(schema.instance_schema)["title"]] = schema
    assert {"imgpipe.IngestionReport", "imgpipe.ValidationReport", "imgpipe.EvaluationReport",
            "imgpipe.Champion", "tfx.Examples", "tfx.Model"} <= set(titles)
    for title, schema in titles.items():
        cls = import_utils.import_class_by_path(entrypoint._retrieve_class_path(schema))  # pylint: disable=protected-access
        assert cls.TYPE_NAME == title.replace("tfx.", ""), title


def _as_spec(document):
    from kfp.pipeline_spec import pipeline_spec_pb2
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())


def _constant(compiled, task, name):
    parameters = compiled["spec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
    return parameters[name]["runtimeValue"]["constant"]


def test_parameters_and_paths_round_trip(compiled):
    from imgpipe.pipeline.config import load_config
    from imgpipe.pipeline.pipeline import trainer_settings
    config = load_config(REPO / "configs" / "quickstart.toml")
    root = compiled["spec"]["root"]
    data_root = root["inputDefinitions"]["parameters"]["data_root"]
    assert data_root["defaultValue"] == "/opt/imgpipe/datasets/quickstart"
    assert root["dag"]["tasks"]["ImageExampleGen"]["inputs"]["parameters"]["input_base"] == \
        {"componentInputParameter": "data_root"}
    custom = json.loads(_constant(compiled, "Trainer", "custom_config"))
    assert custom == trainer_settings(config, ["circle", "cross", "square", "triangle"]).to_dict()
    assert _constant(compiled, "Trainer", "run_fn") == "imgpipe.components.trainer.module_files.run.run_fn"
    assert _constant(compiled, "Transform", "preprocessing_fn") == \
        "imgpipe.components.trainer.module_files.preprocessing.preprocessing_fn"
    # The schema travels inside the spec: its text, not a path in an image.
    schema = json.loads(_constant(compiled, "CuratedSchema", "settings"))
    assert schema["schema_text"] == (REPO / "schemas" / "quickstart.pbtxt").read_text()
    assert schema["origin"] == "builtin:quickstart"
    gate = json.loads(_constant(compiled, "ValidationGate", "settings"))
    assert gate["baseline_root"] == "gs://acme-ml/imgpipe/baselines/imgpipe-quickstart"
    pusher = json.loads(_constant(compiled, "RegistryPusher", "settings"))
    # Registry and MLflow come from the pods' environment (the secret).
    assert pusher["registry_url"] == "" and pusher["mlflow_tracking_uri"] == ""
    assert pusher["serving_root"] == "gs://acme-ml/imgpipe/serving"
    text = compiled["path"].read_text()
    import os
    assert str(REPO) not in text and os.path.expanduser("~") + "/" not in text   # nothing from this machine


def test_ingestion_is_never_cached_by_kfp(compiled):
    """Without ingestion's driver KFP cannot see new files under the same data_root."""
    tasks = compiled["spec"]["root"]["dag"]["tasks"]
    assert tasks["ImageExampleGen"]["cachingOptions"] == {"enableCache": False}
    assert all(t["cachingOptions"] == {"enableCache": True}
               for n, t in tasks.items() if n != "ImageExampleGen")


def test_dataflow_layer_hands_beam_work_to_dataflow_workers_running_the_image(tmp_path):
    from apache_beam.options.pipeline_options import (
        GoogleCloudOptions,
        PipelineOptions,
        StandardOptions,
        WorkerOptions,
    )
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
                                  .FlinkRunnerOptions).flink_master == "http://flink-jobmanager.flink.svc:8081"),
    ("spark", lambda o: o.view_as(__import__("apache_beam.options.pipeline_options", fromlist=["x"])
                                  .SparkRunnerOptions).spark_rest_url == "http://spark-master.spark.svc:6066"),
])
def test_beam_runner_configs_parse_with_beams_own_options(name, check):
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, WorkerOptions
    from apache_beam.runners.portability import flink_runner, spark_runner

    from imgpipe.pipeline import kubeflow
    from imgpipe.pipeline.config import load_config
    config = load_config([REPO / "configs" / "quickstart.toml", REPO / "configs" / "beam" / f"{name}.toml"])
    args = list(config.pipeline.beam_args)
    assert kubeflow.unknown_beam_flags(args) == []
    options = PipelineOptions(args)
    assert options.view_as(StandardOptions).runner.lower().startswith(name)
    assert check(options)
    if name != "dataflow":
        # Beam's own choice of job server: the uber-jar one needs no Java in the pod.
        runner = {"flink": flink_runner.FlinkRunner, "spark": spark_runner.SparkRunner}[name]()
        assert type(runner.default_job_server(PipelineOptions(args))).__name__.endswith("UberJarJobServer")
    # What compile gives Beam: workers have the packages, so TFX stages no sdist of itself.
    cluster = PipelineOptions(kubeflow.cluster_beam_args(args, IMAGE))
    assert cluster.view_as(WorkerOptions).sdk_container_image == IMAGE
    assert config.pipeline.name == "imgpipe-quickstart"    # the preset underneath is kept
    assert kubeflow.unknown_beam_flags(["--runner=FlinkRunner", "--flink_mastr=x"]) == ["--flink_mastr=x"]


@pytest.mark.parametrize("args, message", [
    (["--pipeline-root", "gs://b/r", "--data", "/home/me/images"], "is a path on this machine"),
    ([], "no pipeline root: pass --pipeline-root"),
    (["--pipeline-root", "/mnt/artifacts"], "give a gs:// URI"),
    (["--pipeline-root", "minio://mlpipeline/v2/artifacts"], "but not s3:// or minio://"),
    (["--pipeline-root", "gs://b/r",
      "--set", "pipeline.beam_args=['--runner=FlinkRunner','--flink_mastr=x']"],
     "Beam does not know --flink_mastr=x"),
    (["--pipeline-root", "gs://b/r", "--set", "validation.schema_file='/tmp/absent.pbtxt'"],
     "validation.schema_file: /tmp/absent.pbtxt does not exist"),
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
    # As protos: kfp drops proto3 defaults (ingestion's enableCache: false) on the way.
    assert _as_spec(run["pipeline_spec"]["pipeline_spec"]) == _as_spec(compiled["spec"])
    assert run["pipeline_spec"]["platform_spec"] == compiled["documents"][1]
    assert run["runtime_config"]["pipeline_root"] == "gs://acme-ml/other-root"
    assert run["runtime_config"]["parameters"] == {"data_root": "gs://acme-ml/images/2026-12"}


def test_submit_with_a_schedule_creates_one_recurring_run_at_a_time(compiled):
    # STAND-IN API server (kfp_standin.py): it records the recurring-run request.
    with KfpStandIn(token="t0ken") as server:
        result = invoke("submit", compiled["path"], "--host", server.url, "--experiment", "nightly",
                        "--schedule", "0 3 * * *", "--param", "data_root=gs://acme-ml/images/{SPAN}",
                        env={"KFP_BEARER_TOKEN": "t0ken"})
        assert result.exit_code == 0, result.output
        [recurring] = server.recurring_runs
        assert server.runs == []
        bad = invoke("submit", compiled["path"], "--host", server.url, "--schedule", "at 3am",
                     env={"KFP_BEARER_TOKEN": "t0ken"})
    assert f"recurring run {recurring['recurring_run_id']} (0 3 * * *) in experiment nightly" \
        in result.output
    assert recurring["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"    # KFP: seconds first
    assert recurring["max_concurrency"] == "1" or recurring["max_concurrency"] == 1
    assert recurring["no_catchup"] is True and recurring["mode"] == "ENABLE"
    assert recurring["runtime_config"]["parameters"] == {"data_root": "gs://acme-ml/images/{SPAN}"}
    assert _as_spec(recurring["pipeline_spec"]["pipeline_spec"]) == _as_spec(compiled["spec"])
    assert bad.exit_code == 1 and "expected a cron expression of five fields" in bad.output


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
    with KfpStandIn(token="t0ken", namespaces=["team-a"], login_gateway=True) as gateway:
        login = invoke("submit", compiled["path"], "--host", gateway.url, env={"KFP_BEARER_TOKEN": ""})
        assert login.exit_code == 1 and "redirected to /dex/auth" in login.output, login.output
        # The token is fine (healthz passes) but not for this profile's namespace.
        other = invoke("submit", compiled["path"], "--host", gateway.url, "--namespace", "team-b",
                       env={"KFP_BEARER_TOKEN": "t0ken"})
        assert other.exit_code == 1 and "refused the run (403)" in other.output
        assert "namespace 'team-b'" in other.output
        assert gateway.runs == []
    garbage = tmp_path / "garbage.yaml"
    garbage.write_text("just: [a, list]\n")
    with KfpStandIn() as server:
        unreadable = invoke("submit", garbage, "--host", server.url)
    assert unreadable.exit_code == 1 and "not a PipelineSpec kfp can read" in unreadable.output
    no_file = invoke("submit", tmp_path / "absent.yaml", "--host", "http://127.0.0.1:1")
    assert no_file.exit_code == 1 and "no such file" in no_file.output
    bad_host = invoke("submit", compiled["path"], "--host", "kubeflow.example.com")
    assert bad_host.exit_code == 1 and "give the API URL" in bad_host.output


def _run_like_kfp(spec, task, parameters, outputs, tmp_path, inputs=None, env=None):
    """Runs one compiled task's container command the way open-source KFP does:
    the executor alone, with an ExecutorInput the launcher would write
    (constants from the spec, the given parameter values, input artifacts as
    upstream tasks reported them, output URIs). KFP skips TFX's
    `preCacheCheck` driver hook, so this does too. Returns ExecutorOutput."""
    import os
    import subprocess
    import sys
    executor = spec["deploymentSpec"]["executors"][f"{task}_executor"]["container"]
    assert executor["command"][-1] == "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
    values = {name: p["runtimeValue"]["constant"]
              for name, p in spec["root"]["dag"]["tasks"][task]["inputs"]["parameters"].items()
              if "runtimeValue" in p}
    values.update(parameters)
    definitions = spec["components"][task]["outputDefinitions"]["artifacts"]
    output_file = tmp_path / "kfp" / task / "executor_output.json"
    executor_input = {
        "inputs": {"parameterValues": values,
                   "artifacts": {name: {"artifacts": [a]} for name, a in (inputs or {}).items()}},
        "outputs": {"artifacts": {
            name: {"artifacts": [{"name": f"{task}-{name}", "uri": uri,
                                  "type": definitions[name]["artifactType"], "metadata": {}}]}
            for name, uri in outputs.items()},
            "outputFile": str(output_file)}}
    for uri in outputs.values():   # an object store needs no directories; a local disk does
        os.makedirs(uri, exist_ok=True)
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in executor["args"]]
    completed = subprocess.run([sys.executable, "-m", executor["command"][-1], *args],
                               capture_output=True, text=True, timeout=900,
                               env={**os.environ, **(env or {})})
    assert completed.returncode == 0, f"{task}: {completed.stderr[-4000:]}"
    output = json.loads(output_file.read_text())
    for name, listed in output.get("artifacts", {}).items():  # what the launcher passes on
        listed["artifacts"][0]["type"] = definitions[name]["artifactType"]
    return output


@pytest.mark.e2e
def test_ingestion_runs_on_kfp_without_tfx_driver_resolving_the_latest_span(tmp_path):
    """Open-source KFP never runs ExampleGen's driver: the executor resolves
    `{SPAN}` itself, records the span and tolerates a broken link."""
    from conftest import shapes_tree
    drops = tmp_path / "drops"
    shapes_tree(drops / "span-1", per_class=4)
    shapes_tree(drops / "span-2", per_class=30, seed=1)
    (drops / "span-2" / "circle" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    out = tmp_path / "p.yaml"
    # Compiled against a URI (file:// in place of the pods' gs:// bucket); the
    # run's data_root is the same folder as this machine's path (Beam's own
    # file systems know no file://).
    result = invoke("compile", "--output", out, "--image", IMAGE, "--pipeline-root", "gs://b/r",
                    "--data", f"file://{drops}/span-{{SPAN}}", "--set", "data.max_bad_fraction=0.05")
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load_all(out.read_text()).__next__()
    assert "span-{SPAN}" in _constant({"spec": spec}, "ImageExampleGen", "input_config")
    examples, report_dir = tmp_path / "examples", tmp_path / "report"
    output = _run_like_kfp(spec, "ImageExampleGen", {"input_base": str(drops)},
                           {"examples": str(examples), "report": str(report_dir)}, tmp_path)
    [artifact] = output["artifacts"]["examples"]["artifacts"]
    assert artifact["metadata"]["span"] == 2
    assert "unstatable:1" in artifact["metadata"]["input_fingerprint"]
    ingestion = json.loads((report_dir / "ingestion_report.json").read_text())
    assert ingestion["span"] == 2 and ingestion["status"] == "ok"
    assert ingestion["examples"] == 4 * 30 and ingestion["bad"] == 1
    assert [q["path"].endswith("gone.png") for q in ingestion["quarantine"]] == [True]
    assert sorted(p.name for p in examples.iterdir()) == ["Split-eval", "Split-train", "Split-validation"]


def test_a_bare_spec_without_platform_settings_is_submitted_as_is(tmp_path):
    out = tmp_path / "bare.yaml"
    result = invoke("compile", "--output", out, "--pipeline-root", "gs://acme-ml/imgpipe")
    assert result.exit_code == 0, result.output
    assert "warning: image 'imgpipe:0.1.0' names no registry" in result.output
    assert "warning: no --env-secret and no registry.url" in result.output
    [spec] = list(yaml.safe_load_all(out.read_text()))
    with KfpStandIn() as server:
        submitted = invoke("submit", out, "--host", server.url)
        assert submitted.exit_code == 0, submitted.output
        [run] = server.runs
    # A bare PipelineSpec, not wrapped with a platform spec.
    assert "pipeline_spec" not in run["pipeline_spec"] and _as_spec(run["pipeline_spec"]) == _as_spec(spec)
    assert run["runtime_config"].get("parameters", {}) == {}


def test_a_schema_at_a_uri_is_read_from_there_and_carried_in_the_spec(tmp_path):
    schema_uri = f"file://{REPO}/schemas/quickstart.pbtxt"   # stands in for gs://bucket/schemas/...
    out = tmp_path / "p.yaml"
    result = invoke("compile", "--output", out, "--image", IMAGE, "--pipeline-root", "gs://b/r",
                    "--set", f"validation.schema_file='{schema_uri}'")
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    carried = json.loads(_constant({"spec": spec}, "CuratedSchema", "settings"))
    assert carried["origin"] == schema_uri
    assert carried["schema_text"] == (REPO / "schemas" / "quickstart.pbtxt").read_text()
    missing = invoke("compile", "--output", tmp_path / "q.yaml", "--pipeline-root", "gs://b/r",
                     "--set", f"validation.schema_file='file://{tmp_path}/absent.pbtxt'")
    assert missing.exit_code == 1 and "absent.pbtxt does not exist" in missing.output


@pytest.mark.e2e
def test_the_compiled_pipeline_runs_task_by_task_as_kfp_runs_it(tmp_path):
    """Every task of the compiled spec, in dependency order, through TFX's
    container entrypoint with launcher-style inputs: each component's executor,
    artifact types, parameters and module paths as the pods would run them.
    file:// URIs stand in for the gs:// bucket; the registry and MLflow come
    from the environment as from the Kubernetes secret."""
    from imgpipe import quickstart_data
    from imgpipe.registry import store
    data = quickstart_data.ensure_quickstart(tmp_path / "quickstart")
    bucket = f"file://{tmp_path}/bucket"
    out = tmp_path / "p.yaml"
    result = invoke("compile", "--output", out, "--image", IMAGE, "--pipeline-root", "gs://b/r",
                    "--env-secret", "imgpipe-env",
                    "--set", f"validation.baseline_root='{bucket}/baselines'",
                    "--set", f"registry.serving_root='{bucket}/serving'",
                    "--set", f"registry.mlflow_artifact_root='{bucket}/mlflow'")
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    env = {"IMGPIPE_REGISTRY_URL": f"sqlite:///{tmp_path}/registry.db",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    tasks, outputs = spec["root"]["dag"]["tasks"], {}
    while len(outputs) < len(tasks):
        ready = sorted(n for n, t in tasks.items()
                       if n not in outputs and set(t.get("dependentTasks", [])) <= set(outputs))
        assert ready, "a dependency cycle"
        for name in ready:
            inputs = {key: outputs[ref["taskOutputArtifact"]["producerTask"]]["artifacts"][
                ref["taskOutputArtifact"]["outputArtifactKey"]]["artifacts"][0]
                for key, ref in tasks[name]["inputs"].get("artifacts", {}).items()}
            outputs_wanted = {key: str(tmp_path / "artifacts" / name / key)
                              for key in spec["components"][name]["outputDefinitions"]["artifacts"]}
            outputs[name] = _run_like_kfp(spec, name, {"input_base": str(data)}, outputs_wanted,
                                          tmp_path, inputs=inputs, env=env)
    [row] = store.list_versions(store.engine_for(env["IMGPIPE_REGISTRY_URL"]))
    assert row.version == 1 and row.status == "champion" and row.blessed
    assert (tmp_path / "bucket" / "serving" / "shapes-cnn" / "1" / "saved_model.pb").is_file()
    assert list((tmp_path / "bucket" / "baselines").rglob("*")), "no drift baseline written"
    assert row.mlflow_run_id and (tmp_path / "bucket" / "mlflow").is_dir()


def test_a_user_model_file_travels_in_the_compiled_spec_without_its_path(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    source = ("import tf_keras as keras\n\ndef build(image, num_classes, args):\n"
              "    inputs = keras.Input(image.shape)\n"
              "    x = keras.layers.GlobalAveragePooling2D()(inputs)\n"
              "    return keras.Model(inputs, keras.layers.Dense(num_classes, activation='softmax')(x))\n")
    (project / "my_models.py").write_text(source)
    (project / "imgpipe.toml").write_text("[training]\nmodel = 'my_models:build'\n")
    out = tmp_path / "p.yaml"
    result = invoke("compile", "--config", project / "imgpipe.toml", "--output", out,
                    "--image", IMAGE, "--pipeline-root", "gs://b/r")
    assert result.exit_code == 0, result.output
    spec = next(yaml.safe_load_all(out.read_text()))
    model = json.loads(_constant({"spec": spec}, "Trainer", "custom_config"))["model"]
    assert model["architecture"] == "my_models:build" and model["user_module"]["source"] == source
    assert str(tmp_path) not in out.read_text()
