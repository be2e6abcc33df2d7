"""The typed configuration: defaults, presets, overrides, and errors naming the key."""
from pathlib import Path

import pytest

from conftest import REPO
from imgpipe.pipeline.config import ConfigError, load_config, parse_set_options


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_presets_load():
    packaged, in_repo = load_config("builtin:quickstart"), load_config(REPO / "configs" / "quickstart.toml")
    assert (packaged.training, packaged.image, packaged.evaluation) == (
        in_repo.training, in_repo.image, in_repo.evaluation)
    quick = load_config(REPO / "configs" / "quickstart.toml")
    assert quick.data.source == "builtin:quickstart" and quick.builtin_dataset == "quickstart"
    assert quick.image.channels == 3
    assert quick.data.split == {"train": 0.7, "validation": 0.15, "eval": 0.15}
    assert "--direct_running_mode=in_memory" in quick.pipeline.beam_args
    cifar = load_config(REPO / "configs" / "cifar10.toml")
    assert cifar.data.classes[0] == "airplane" and len(cifar.data.classes) == 10
    assert cifar.evaluation.f1_floors == {} and cifar.evaluation.f1_floor == 0.7
    assert cifar.training.model == "resnet" and cifar.training.model_args["widths"] == [16, 32, 80]


def test_empty_file_gives_defaults_and_derived_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGPIPE_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(write(tmp_path, ""), {"pipeline.output_root": str(tmp_path / "out")})
    assert config.metadata_path == tmp_path / "out" / "metadata.sqlite"
    assert config.registry_url == f"sqlite:///{tmp_path / 'out' / 'registry.db'}"
    assert config.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    monkeypatch.setenv("IMGPIPE_REGISTRY_URL", "postgresql://db/registry")
    assert config.registry_url == "postgresql://db/registry"


def test_overrides_win_over_the_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "[training]\nepochs = 7\n[data]\nsource = 'a'\n")
    config = load_config(path, {"data.source": "b", **parse_set_options(["training.epochs=3",
                                                                          "image.channels=1"])})
    assert (config.data.source, config.training.epochs, config.image.channels) == (
        str(tmp_path / "b"), 3, 1)
    assert load_config(path, {"data.source": None}).data.source == str(tmp_path / "a")


def test_paths_in_a_file_are_relative_to_its_folder_flags_to_the_current_one(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "schemas").mkdir(parents=True)
    (project / "imgpipe.toml").write_text(
        "[pipeline]\noutput_root = 'runs'\n[data]\nsource = 'photos/{SPAN}'\n"
        "[validation]\nschema_file = 'schemas/mine.pbtxt'\nbaseline_root = 'gs://b/base'\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(project / "imgpipe.toml")
    assert config.output_root == project / "runs"
    assert config.data.source == str(project / "photos" / "{SPAN}")
    assert config.schema_location == str(project / "schemas" / "mine.pbtxt")
    assert config.baseline_root == "gs://b/base"                     # URIs untouched
    flagged = load_config(project / "imgpipe.toml", parse_set_options(["pipeline.output_root=out"]))
    assert flagged.output_root == elsewhere / "out"


def test_lookup_order_env_then_project_file_then_builtin_preset(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGPIPE_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    builtin = load_config()
    assert builtin.pipeline.name == "imgpipe-quickstart"
    assert builtin.output_root == tmp_path / "runs"                  # a preset's paths: here
    assert Path(builtin.schema_location).name == "quickstart.pbtxt"
    assert Path(builtin.schema_location).is_file()
    (tmp_path / "imgpipe.toml").write_text("[pipeline]\nname = 'mine'\n")
    assert load_config().pipeline.name == "mine"
    other = write(tmp_path, "[pipeline]\nname = 'from-env'\n")
    monkeypatch.setenv("IMGPIPE_CONFIG", str(other))
    assert load_config().pipeline.name == "from-env"
    assert load_config("builtin:cifar10").pipeline.name == "imgpipe-cifar10"


def test_unknown_builtin_names_the_ones_that_exist(tmp_path):
    with pytest.raises(ConfigError, match="built-in presets: cifar10, quickstart"):
        load_config("builtin:flowers")
    with pytest.raises(ConfigError, match="validation.schema_file: builtin:flowers: no built-in "
                                          "schema of that name; built-in schemas: cifar10, quickstart"):
        load_config(write(tmp_path, "[validation]\nschema_file = 'builtin:flowers'\n"))


@pytest.mark.parametrize("text, message", [
    ("[image]\nheight = -3\n", "image.height: Input should be greater than 0 (got -3)"),
    ("[image]\nchannels = 4\n", "image.channels: Input should be 1 or 3 (got 4)"),
    ("[data]\nsplit = { train = 0.8, eval = 0.1 }\n", "data.split: ratios must add up to 1, got 0.9"),
    ("[data]\nsplit = { eval = 1.0 }\n", "data.split: needs a 'train' split"),
    ("[training]\nepoch = 3\n", "training.epoch: unknown key"),
    ("[trainig]\nepochs = 3\n", "trainig: unknown key"),
    ("[training]\nepochs = 'many'\n", "training.epochs: Input should be a valid integer"),
    ("[data]\nclasses = ['a']\n[evaluation]\nf1_floors = { b = 0.5 }\n",
     "evaluation.f1_floors names unknown classes ['b']"),
    ("[data\n", "not valid TOML"),
    ("[training]\nmodel = 'vgg'\n",
     "training: model 'vgg' is neither a built-in model (cnn, resnet, mobilenet_v2"),
    ("[training]\nweights = 'imagenet'\n", "weights = \"imagenet\" exists for the backbones"),
    ("[training]\nfine_tune_layers = 20\n", "model 'cnn' has none"),
    ("[training]\nmodel = 'resnet50'\ninput_normalization = 'tf'\n",
     "model resnet50 takes 'caffe' input (its preprocess_input)"),
    ("[training]\nmodel = 'resnet50'\nfine_tune_layers = 20\n", "fine-tuning starts from pretrained"),
    ("[training]\nmodel = 'resnet'\nmodel_args = { depth = 20 }\n",
     "model_args ['depth'] are not arguments of the resnet"),
    ("[training]\ninput_normalization = 'imagenet'\n", "unknown input normalisation 'imagenet'"),
    ("[training]\nmodel = 'mobilenet_v2'\nstandardize = true\n", "standardize = true changes"),
    ("[fuzz]\nmax_evaluation_share = -0.25\n",
     'fuzz.max_evaluation_share: expected "auto" or a share >= 0 (e.g. 0.25) (got -0.25)'),
    ("[fuzz]\nmax_evaluation_share = 'quarter'\n", "expected \"auto\" or a share >= 0"),
])
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path / "c.toml") in str(error.value)


def test_model_files_and_weights_are_relative_to_the_config(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "mine.py").write_text("def build(image, num_classes, args): pass\n")
    monkeypatch.chdir(tmp_path)
    config = load_config(write(project, "[training]\nmodel = 'models.mine:build'\n"
                                        "weights = 'start/weights.h5'\n"))
    assert config.training.model == f"{project / 'models' / 'mine.py'}:build"
    assert config.training.weights == str(project / "start" / "weights.h5")
    assert load_config(write(project, "[training]\nweights = 'none'\n")).training.weights == "none"
    installed = load_config(write(project, "[training]\nmodel = 'json:loads'\n"))
    assert installed.training.model == "json:loads"          # an installed module, by name


def test_missing_file_and_bad_set_syntax(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set_options(["training.epochs"])


def _config_keys(model=None, prefix=""):
    from pydantic import BaseModel

    from imgpipe.pipeline.config import Config
    for name, field in (model or Config).model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _config_keys(field.annotation, f"{prefix}{name}.")
        else:
            yield prefix + name


@pytest.mark.parametrize("preset", ["quickstart", "cifar10"])
def test_every_preset_documents_every_key(preset):
    """`imgpipe init` writes a preset: each key appears, set or commented with its default."""
    import re
    text = (REPO / "configs" / f"{preset}.toml").read_text()
    missing = []
    for dotted in _config_keys():
        section, key = dotted.rsplit(".", 1)
        body = text.split(f"[{section}]\n", 1)[-1].split("\n[", 1)[0] if f"[{section}]\n" in text else ""
        if not re.search(rf"^#? ?{key} *=", body, re.M) and f"[{dotted}]\n" not in text:
            missing.append(dotted)
    assert missing == []


def test_init_where_no_folder_can_be_made_is_a_clear_error(tmp_path):
    from click.testing import CliRunner

    from imgpipe.pipeline import cli
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(cli.main, ["init", str(blocker / "project")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"cannot write the project in {blocker / 'project'}: Not a directory" in result.output

