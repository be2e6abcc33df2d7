"""The typed configuration: defaults, presets, overrides, and errors naming the key."""
import pytest

from conftest import REPO
from imgpipe.pipeline.config import ConfigError, load_config, parse_set_options


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_presets_load():
    quick = load_config(REPO / "configs" / "quickstart.toml")
    assert quick.data.source == "builtin:quickstart" and quick.builtin_dataset == "quickstart"
    assert quick.image.channels == 3
    assert quick.data.split == {"train": 0.7, "validation": 0.15, "eval": 0.15}
    assert "--direct_running_mode=in_memory" in quick.pipeline.beam_args
    cifar = load_config(REPO / "configs" / "cifar10.toml")
    assert cifar.data.classes[0] == "airplane" and len(cifar.data.classes) == 10
    assert cifar.evaluation.f1_floors["cat"] == 0.5


def test_empty_file_gives_defaults_and_derived_paths(tmp_path, monkeypatch):
    monkeypatch.delenv("IMGPIPE_REGISTRY_URL", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    config = load_config(write(tmp_path, ""), {"pipeline.output_root": str(tmp_path / "out")})
    assert config.metadata_path == tmp_path / "out" / "metadata.sqlite"
    assert config.registry_url == f"sqlite:///{tmp_path / 'out' / 'registry.db'}"
    assert config.mlflow_tracking_uri == f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}"
    monkeypatch.setenv("IMGPIPE_REGISTRY_URL", "postgresql://db/registry")
    assert config.registry_url == "postgresql://db/registry"


def test_overrides_win_over_the_file(tmp_path):
    path = write(tmp_path, "[training]\nepochs = 7\n[data]\nsource = 'a'\n")
    config = load_config(path, {"data.source": "b", **parse_set_options(["training.epochs=3",
                                                                          "image.channels=1"])})
    assert (config.data.source, config.training.epochs, config.image.channels) == ("b", 3, 1)
    assert load_config(path, {"data.source": None}).data.source == "a"


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
])
def test_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text))
    assert message in str(error.value)
    assert str(tmp_path / "c.toml") in str(error.value)


def test_missing_file_and_bad_set_syntax(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_set_options(["training.epochs"])
