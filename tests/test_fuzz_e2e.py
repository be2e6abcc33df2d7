"""A model made fragile on purpose, through the whole pipeline: the fuzzer finds
what it accepts silently, the gate refuses it, and the same model with those
mistakes accepted (and why) is blessed, the reasons in the registry."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import REPO
from imgpipe.pipeline import cli

pytestmark = pytest.mark.e2e
CONFIG = REPO / "configs" / "quickstart.toml"
# One dominant colour per class (the class names are the quickstart schema's):
# a network learns the colour, so a client that sends BGR swaps red and blue.
# The set is symmetric under that swap (red/blue, green, magenta), so no
# statistic of the inputs moves: the harm is silent, as it is for real photos
# whose red and blue means are alike.
COLOURS = {"circle": (1, 0, 0), "cross": (0, 1, 0), "square": (0, 0, 1), "triangle": (1, 0, 1)}


def invoke(*args):
    return CliRunner().invoke(cli.main, [str(a) for a in args], catch_exceptions=False)


def colour_tree(root, per_class=60, seed=3):
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 80, (32, 32, 3)) + 150 * np.array(colour)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def fragile(tmp_path_factory):
    root = tmp_path_factory.mktemp("fragile")
    data = colour_tree(root / "data")
    common = ["--config", CONFIG, "--data", data, "--output-root", root / "out",
              "--set", "training.epochs=4", "--set", "evaluation.f1_floor=0.5"]
    first = invoke("run", *common)
    return {"root": root, "data": data, "common": common, "first": first}


def test_a_colour_model_accepting_bgr_silently_is_not_blessed(fragile):
    result = fragile["first"]
    assert result.exit_code == 1, result.output
    assert "BGR                        pixels SILENT HARM" in result.output
    failures = result.output.split("nothing was pushed:")[1]
    assert "fuzz: BGR (channels reversed (an OpenCV client)) is accepted silently and costs" in failures
    assert "list it in [fuzz.accepted] with a reason" in failures
    assert "float [0, 1] (float32)     pixels REFUSED" in result.output
    assert "time budget" not in result.output   # none by default: every row its whole sample


@pytest.fixture(scope="module")
def accepted(fragile):
    """The same run with every blocking mistake of the first listed as accepted."""
    report = sorted((fragile["root"] / "out").rglob("evaluation_report.json"))[-1]
    blocking = [row["mistake"] for row in json.loads(report.read_text())["fuzz"] if row["blocks"]]
    reasons = ", ".join(f'"{name}" = "clients are ours: {name} cannot reach it"' for name in blocking)
    # With the gate's time budget too: only the gate runs again (the Evaluator's
    # time comes from ML Metadata, recorded by the first run).
    second = invoke("run", *fragile["common"], "--set", f"fuzz.accepted={{ {reasons} }}",
                    "--set", "fuzz.max_evaluation_share=0.25")
    return {"blocking": blocking, "second": second}


def test_the_same_model_with_its_harmful_mistakes_accepted_is_blessed_with_the_reasons_stored(
        fragile, accepted):
    assert "BGR" in accepted["blocking"]
    second = accepted["second"]
    assert second.exit_code == 0, second.output
    assert "accepted: clients are ours: BGR cannot reach it" in second.output
    # The budget: a quarter of the Evaluator's time (ML Metadata) and the gate's own.
    assert "time budget 0.25 x " in second.output
    gate_reports = (fragile["root"] / "out" / "pipelines").glob(
        "*/EvaluationGate/report/*/evaluation_report.json")
    report = json.loads(max(gate_reports, key=lambda path: int(path.parent.name)).read_text())
    budget = report["fuzz_budget"]
    assert budget["share"] == 0.25 and budget["seconds"] == pytest.approx(
        0.25 * budget["evaluation_seconds"], abs=0.01)
    assert budget["evaluation_seconds"] > report["fuzz_seconds"]
    assert all(row["images"] >= 10 for row in report["fuzz"] if row["scores"])
    from imgpipe.registry import store
    engine = store.require_schema(f"sqlite:///{fragile['root'] / 'out' / 'registry.db'}")
    row = store.champion(engine, "shapes-cnn")
    stored = {r["mistake"]: r for r in row.fuzz_report}
    assert stored["BGR"]["verdict"] == "SILENT HARM"
    assert stored["BGR"]["accepted_reason"] == "clients are ours: BGR cannot reach it"
    assert row.preprocessing_contract["graph"]["scaling"] == "pixels / 255 -> float32 [0, 1]"
    shown = invoke("registry", "show", row.model_uid, "--set",
                   f"pipeline.output_root='{fragile['root'] / 'out'}'")
    assert "accepted: BGR (clients are ours: BGR cannot reach it)" in shown.output


def test_imgpipe_fuzz_on_the_run_says_the_same_and_exits_1(fragile, tmp_path):
    result = invoke("fuzz", fragile["root"] / "out", "--config", CONFIG, "--json", tmp_path / "rows.json")
    rows = {row["mistake"]: row for row in json.loads((tmp_path / "rows.json").read_text())}
    assert rows["BGR"]["verdict"] == "SILENT HARM" and rows["BGR"]["harm"]["accuracy_drop"] > 0.2
    assert rows["integers 0/1"]["verdict"] == "REFUSED"
    assert rows["integers 0/1"]["serve"].startswith("HTTP 422: instance: every pixel value is 0 or 1")
    assert result.exit_code == 1


def test_the_fuzzers_rows_are_what_the_real_http_service_answers(fragile, accepted, tmp_path):
    """Two rows sent again over HTTP to `imgpipe serve`'s app on loopback: the
    refusal is the same words, the accepted mistake gets the same answers."""
    import base64

    from test_serving import on_loopback

    from imgpipe.components.fuzzer import mistakes
    from imgpipe.contract import ImageSpec
    from imgpipe.pipeline.config import load_config
    from imgpipe.serving import app
    assert accepted["second"].exit_code == 0
    result = invoke("fuzz", fragile["root"] / "out", "--config", CONFIG, "--sample", "40",
                    "--json", tmp_path / "rows.json")
    assert result.exit_code == 1
    rows = {row["mistake"]: row for row in json.loads((tmp_path / "rows.json").read_text())}
    files = sorted(fragile["data"].rglob("*.png"))[:8]
    spec = ImageSpec(32, 32, 3)
    originals = [mistakes.Original(f.read_bytes(), np.asarray(Image.open(f).convert("RGB"))) for f in files]
    by_name = mistakes.by_name()
    config = load_config(str(CONFIG), {"pipeline.output_root": str(fragile["root"] / "out")})
    with on_loopback(app.build(config, log_predictions=False)) as (client, _port):
        floats = by_name["float [0, 1] (float32)"].request(originals[0], spec)
        refused = client.post("/v1/models/shapes-cnn:predict", json={"instances": [floats.tolist()]})
        bgr = [by_name["BGR"].request(o, spec).tolist() for o in originals]
        answered = client.post("/v1/models/shapes-cnn:predict", json={"instances": bgr})
        jpeg = by_name["JPEG quality 30"].request(originals[0], spec)
        encoded = client.post("/v1/models/shapes-cnn:predict",
                              json={"instances": [{"b64": base64.b64encode(jpeg).decode()}]})
    assert refused.status_code == 422
    # JSON carries no dtype: the service sees float64 where the fuzzer's array was float32.
    assert "got float32 pixels in [0, " in rows["float [0, 1] (float32)"]["serve"]
    assert "got float64 pixels in [0, " in refused.json()["error"]
    for words in ("expected uint8 pixels in [0, 255]", "send the original image bytes"):
        assert words in rows["float [0, 1] (float32)"]["serve"] and words in refused.json()["error"]
    assert answered.status_code == 200 and encoded.status_code == 200
    # The colour model answers BGR red images as blue: what the fuzzer scored.
    labels = [f.parent.name for f in files]
    served = [p["class"] for p in answered.json()["predictions"]]
    assert sum(s != label for s, label in zip(served, labels)) >= 4
    assert rows["BGR"]["verdict"] == "SILENT HARM"
