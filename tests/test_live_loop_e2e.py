"""The production loop after two real pipeline runs: a weak champion (1 epoch) and
a truly better challenger (20 epochs) split the traffic of `imgpipe serve`;
labels come back by POST /v1/feedback; `imgpipe monitor` reports live quality
per variant; `imgpipe registry promote --if-better` promotes on that evidence,
refuses the weaker model with the numbers, and says how many labels it needs."""
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from conftest import REPO, shapes_tree
from imgpipe.pipeline import cli
from imgpipe.pipeline.config import load_config
from imgpipe.registry import store
from imgpipe.registry.models import PromotionDecision

pytestmark = pytest.mark.e2e
CONFIG = REPO / "configs" / "quickstart.toml"


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    data, out = shapes_tree(root / "data", per_class=80, seed=5), root / "out"
    sets = ["--set", f"pipeline.output_root='{out}'",
            "--set", f"serving.log_url='sqlite:///{root / 'log.db'}'",
            "--set", "evaluation.f1_floor=0", "--set", "evaluation.accuracy_floor=0",
            "--set", "fuzz.enabled=false"]
    weak = invoke("run", "--config", CONFIG, "--data", data, *sets, "--set", "training.epochs=1")
    assert weak.exit_code == 0, weak.output
    better = invoke("run", "--config", CONFIG, "--data", data, *sets,
                    "--set", "training.epochs=20", "--set", "registry.promote=false")
    assert better.exit_code == 0, better.output
    return {"root": root, "sets": sets, "out": out}


def serve_split_traffic(loop, traffic: Path) -> int:
    """Every traffic image once, through the real app (split 50/50 by client key),
    each answer labelled with its true class by POST /v1/feedback. Returns answers."""
    from fastapi.testclient import TestClient

    from imgpipe.pipeline.cli_options import load
    from imgpipe.serving import app as serving_app
    config = load(str(CONFIG), tuple(loop["sets"][1::2]) + (
        "serving.challenger='newest'", "serving.challenger_mode='split'",
        "serving.challenger_share=0.5", "serving.sample_rate=1.0"))
    files = sorted(traffic.rglob("*.png"))
    with TestClient(serving_app.build(config)) as client:
        labels, versions = [], set()
        for path in files:
            answer = client.post("/v1/models/shapes-cnn/images", headers={"X-Client-Key": path.name},
                                 files=[("file", (path.name, path.read_bytes(), "image/png"))]).json()
            versions.add((answer["model_version"], answer["variant"]))
            labels.append({"prediction_id": answer["predictions"][0]["prediction_id"],
                           "label": path.parent.name})
        sent = client.post("/v1/feedback", json={"feedback": labels})
        assert sent.status_code == 200 and sent.json() == {"recorded": len(files)}
    assert versions == {("1", "champion"), ("2", "challenger")}
    return len(files)


def test_labelled_traffic_promotes_the_better_model_and_refuses_the_weaker(loop):
    answered = serve_split_traffic(loop, shapes_tree(loop["root"] / "traffic", per_class=75, seed=99))
    sets = loop["sets"]
    chart = loop["root"] / "live.png"
    report = invoke("monitor", "--format", "json", "--chart", chart, *sets)
    monitored = json.loads(report.stdout)
    live = monitored["live_quality"]
    # Checks per variant: each model's own traffic (split), its own confidence and class mix.
    variants = {(v["variant"], v["model_version"]): v for v in monitored["variants"]}
    assert set(variants) == {("champion", 1), ("challenger", 2)}
    assert sum(v["predictions"] for v in variants.values()) == answered
    for variant in variants.values():
        assert 0 < variant["predictions"] < answered
        assert {c["name"] for c in variant["checks"]} == {c["name"] for c in monitored["checks"]}
        assert all(c["status"] != "SKIPPED" for c in variant["checks"] if "skew" in c["name"])
    assert live["labelled"] == answered and chart.read_bytes()[:4] == b"\x89PNG"
    accuracy = {m["variant"]: m["accuracy"] for m in live["models"]}
    assert accuracy["challenger"] > accuracy["champion"]
    assert live["comparison"]["decision"] == "BETTER"

    needs = invoke("registry", "promote", "shapes-cnn", "2", "--if-better", *sets,
                   "--set", "monitoring.min_labels=100000")
    assert needs.exit_code == 1 and "UNDECIDED" in needs.stdout
    assert "at least 100000 of each are needed" in needs.stdout

    promoted = invoke("registry", "promote", "shapes-cnn", "2", "--if-better", *sets)
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stdout.startswith("BETTER: challenger") and "promoted:" in promoted.stdout

    # The weak model, now the challenger, against the new champion: refused, with the numbers.
    refused = invoke("registry", "promote", "shapes-cnn", "1", "--if-better", *sets)
    assert refused.exit_code == 1 and refused.stdout.startswith("NOT BETTER: challenger")
    assert "not promoted" in refused.stderr

    config = load_config(str(CONFIG), {"pipeline.output_root": str(loop["out"])})
    engine = store.engine_for(config.registry_url)
    assert store.champion(engine, "shapes-cnn").version == 2
    with engine.connect() as connection:
        decisions = [tuple(r) for r in connection.execute(
            select(PromotionDecision.decision, PromotionDecision.promoted).order_by(PromotionDecision.id))]
    assert decisions == [("UNDECIDED", False), ("BETTER", True), ("NOT BETTER", False)]
    from imgpipe.registry import mlflow_sync
    tags = mlflow_sync.client(config.mlflow_tracking_uri).get_model_version("shapes-cnn", "1").tags
    assert json.loads(tags["imgpipe.if_better"])["decision"] == "NOT BETTER"
