"""The one typed configuration of a pipeline, read from one TOML file.

`load_config(path, overrides)` is the only way in: CLI flags become overrides
of dotted keys, so a value has one name everywhere ("data.source",
"training.epochs"). Any mistake is one ConfigError that names the key.

Which file: `--config FILE` (or `builtin:<preset>`), else $IMGPIPE_CONFIG,
else ./imgpipe.toml (what `imgpipe init` writes), else the built-in
quickstart preset. Relative paths written in a file are relative to that
file's folder; defaults and command-line values to the current folder.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PROJECT_CONFIG = "imgpipe.toml"
CONFIG_ENV = "IMGPIPE_CONFIG"
BUILTIN_PREFIX = "builtin:"
DEFAULT_PRESET = "quickstart"
# Keys holding a path, resolved against the folder of the file that sets them.
PATH_KEYS = ("pipeline.output_root", "pipeline.metadata_path", "data.source",
             "validation.schema_file", "validation.baseline_root", "registry.serving_root",
             "registry.mlflow_artifact_root", "serving.samples_root", "training.weights",
             "training.model")
# Values of those keys that are words, not paths.
PATH_KEYWORDS = {"training.weights": ("none", "imagenet")}
from imgpipe import __version__  # noqa: E402
from imgpipe.contract import ImageSpec  # noqa: E402
from imgpipe.contract.image_spec import ASPECT_POLICIES, EXIF_POLICIES, RESIZE_METHODS  # noqa: E402
from imgpipe.registry.mlflow_sync import TRACKING_URI_ENV as MLFLOW_URI_ENV  # noqa: E402
from imgpipe.registry.mlflow_sync import resolve_uri as resolve_tracking_uri  # noqa: E402
from imgpipe.registry.store import REGISTRY_URL_ENV, has_password, mask_url  # noqa: E402
from imgpipe.registry.store import resolve_url as resolve_registry_url  # noqa: E402

PREDICTION_LOG_URL_ENV = "IMGPIPE_PREDICTION_LOG_URL"


class ConfigError(ValueError):
    """A configuration problem, naming the file and the key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PipelineSection(_Section):
    name: str = Field("imgpipe", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    output_root: str = "runs"
    metadata_path: str = ""           # default: <output_root>/metadata.sqlite
    enable_cache: bool = True
    # In-memory DirectRunner was the fastest mode on 2-core machines for data
    # of this size; distributed runners get their arguments here too.
    beam_args: List[str] = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


class DataSection(_Section):
    source: str = "builtin:quickstart"
    format: Literal["auto", "folders", "npz", "tfrecord"] = "auto"
    span: Optional[int] = Field(None, ge=0)
    classes: List[str] = []           # empty: the class folder names, sorted
    split: Dict[str, float] = {"train": 0.8, "eval": 0.2}
    max_bad_fraction: float = Field(0.01, ge=0.0, le=1.0)
    max_image_pixels: int = Field(50_000_000, gt=0)

    @field_validator("split")
    @classmethod
    def _ratios(cls, split: Dict[str, float]) -> Dict[str, float]:
        if "train" not in split or len(split) < 2:
            raise ValueError(f"needs a 'train' split and at least one other, got {sorted(split)}")
        bad = {k: v for k, v in split.items() if not 0 < v < 1}
        if bad:
            raise ValueError(f"each ratio must be between 0 and 1, got {bad}")
        if abs(sum(split.values()) - 1.0) > 1e-6:
            raise ValueError(f"ratios must add up to 1, got {sum(split.values()):g}")
        return split

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: List[str]) -> List[str]:
        if len(set(classes)) != len(classes):
            raise ValueError("class names must be unique")
        return classes


class ImageSection(_Section):
    height: int = Field(32, gt=0, le=4096)
    width: int = Field(32, gt=0, le=4096)
    channels: Literal[1, 3] = 3
    # Applied to image files alike at ingestion and in the serving signature.
    # The choices are the contract's (imgpipe.contract.image_spec).
    resize_method: Literal[RESIZE_METHODS] = RESIZE_METHODS[0]      # bilinear
    aspect: Literal[ASPECT_POLICIES] = ASPECT_POLICIES[0]            # stretch
    exif_orientation: Literal[EXIF_POLICIES] = EXIF_POLICIES[0]      # apply

    @property
    def spec(self) -> ImageSpec:
        return ImageSpec(height=self.height, width=self.width, channels=self.channels,
                         resize_method=self.resize_method, aspect=self.aspect,
                         exif_orientation=self.exif_orientation)


class ValidationSection(_Section):
    # Curated TFDV schema: a path, a URI, or builtin:<name> (shipped in imgpipe.schemas).
    schema_file: str = "builtin:quickstart"
    # Drift between spans: Jensen-Shannon divergence of the pixel histogram
    # (pixel layout) and of each per-image property (brightness, contrast,
    # R/G/B means, aspect ratio), L-infinity distance of the label
    # distribution. These override the comparators written in the schema file.
    pixel_drift_threshold: float = Field(0.1, gt=0.0, le=1.0)
    label_drift_threshold: float = Field(0.1, gt=0.0, le=1.0)
    property_drift_threshold: float = Field(0.1, gt=0.0, le=1.0)
    baseline_root: str = ""           # default: <output_root>/baselines/<pipeline name>

    @field_validator("schema_file")
    @classmethod
    def _known_builtin(cls, value: str) -> str:
        if value.startswith(BUILTIN_PREFIX):
            resolve_schema_file(value)   # an unknown name fails here, naming the known ones
        return value


class AugmentationSection(_Section):
    """Training-only; applied in the training input pipeline, never exported."""
    horizontal_flip: bool = True
    crop_padding: int = Field(0, ge=0)      # pixels of reflect padding, cropped back at random
    cutout: int = Field(0, ge=0)            # side of a random zeroed square
    translation: float = Field(0.0, ge=0.0, lt=1.0)
    rotation: float = Field(0.0, ge=0.0, lt=1.0)


class TrainingSection(_Section):
    # "cnn" (the source article's CNN), "resnet", a Keras Applications backbone
    # (mobilenet_v2, mobilenet_v3_small, efficientnet_b0, resnet50) or "module:function".
    model: str = "cnn"
    model_args: Dict[str, Any] = {}          # passed to the model function / resnet
    input_normalization: str = ""            # "" = the network's own (contract/normalization.py)
    weights: str = "none"                    # none | imagenet | a weights file (any tf.io.gfile path)
    fine_tune_layers: int = Field(0, ge=0)   # backbones: unfreeze this many top layers in phase 2
    fine_tune_epochs: int = Field(0, ge=0)
    fine_tune_lr_factor: float = Field(0.1, gt=0)
    mixed_precision: bool = False            # mixed_float16 (GPUs; slower on CPUs)
    epochs: int = Field(30, gt=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(1e-3, gt=0)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = Field(0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    conv_filters: List[int] = Field([32, 64, 64], min_length=1)
    dense_units: int = Field(64, gt=0)
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    # "valid": the seed's CNN (pooling after all but the last conv);
    # "same": pooling after every conv.
    padding: Literal["valid", "same"] = "valid"
    batch_norm: bool = False
    # Per-channel mean/std from the training split, computed by tf.Transform.
    standardize: bool = False
    early_stopping_patience: int = Field(5, ge=0)
    shuffle_buffer: int = Field(10_000, gt=0)
    seed: int = 0
    augmentation: AugmentationSection = AugmentationSection()

    @model_validator(mode="after")
    def _model_fits_its_options(self):
        from imgpipe.components.trainer import backbones  # light: no TensorFlow import
        from imgpipe.components.trainer.user_model import split_reference
        from imgpipe.contract.normalization import normalization
        backbone = backbones.known(self.model)
        if self.model not in ("cnn", "resnet") and not backbone:
            try:
                split_reference(self.model)
            except ValueError:
                raise ValueError(f"model {self.model!r} is neither a built-in model (cnn, resnet, "
                                 f"{', '.join(backbones.BACKBONES)}) nor 'module:function' "
                                 "(e.g. 'my_models:build', a file of your project)") from None
        unknown = set(self.model_args) - {"widths", "blocks", "weight_decay"}
        if self.model == "resnet" and unknown:
            raise ValueError(f"model_args {sorted(unknown)} are not arguments of the resnet "
                             "(widths, blocks, weight_decay)")
        if self.input_normalization:
            normalization(self.input_normalization)
            if backbone and self.input_normalization != backbone.normalization:
                raise ValueError(f"model {self.model} takes {backbone.normalization!r} input "
                                 f"(its preprocess_input); input_normalization = "
                                 f"{self.input_normalization!r} would feed it something else")
        if self.weights == "imagenet" and not backbone:
            raise ValueError(f"weights = \"imagenet\" exists for the backbones "
                             f"({', '.join(backbones.BACKBONES)}), not for model {self.model!r}")
        if (self.fine_tune_layers or self.fine_tune_epochs) and not backbone:
            raise ValueError("fine_tune_layers/fine_tune_epochs unfreeze a backbone's layers; "
                             f"model {self.model!r} has none")
        if (self.fine_tune_layers or self.fine_tune_epochs) and self.weights == "none":
            raise ValueError("fine-tuning starts from pretrained weights; with weights = \"none\" "
                             "the whole network trains from the start (set weights, or drop "
                             "fine_tune_layers/fine_tune_epochs)")
        if self.standardize and (backbone or self.input_normalization not in ("", "unit")):
            raise ValueError("standardize = true changes what the network receives; a backbone "
                             "or an input_normalization expects [0, 1] pixels from the transform graph")
        return self


class EvaluationSection(_Section):
    accuracy_floor: float = Field(0.5, ge=0.0, le=1.0)
    f1_floor: float = Field(0.7, ge=0.0, le=1.0)
    f1_floors: Dict[str, float] = {}  # per class name, overriding f1_floor
    split: str = "eval"
    # Serving parity: the served path (original bytes) against what TFMA
    # measured. 0.005 = half an accuracy point / 0.5% of the images.
    parity_max_accuracy_gap: float = Field(0.005, ge=0.0, le=1.0)
    parity_max_disagreement: float = Field(0.005, ge=0.0, le=1.0)
    # No regression: the candidate's served accuracy may be at most this much
    # below the champion's, both measured on this run's evaluation split.
    max_accuracy_drop: float = Field(0.01, ge=0.0, le=1.0)
    # Share of the evaluation inputs whose answer changes from the champion's
    # (overall; per class in the report): a swap at equal accuracy still moves
    # answers users saw.
    max_flip_rate: float = Field(0.25, ge=0.0, le=1.0)
    # Expected calibration error (15 confidence bins) of the served answers on
    # the clean evaluation inputs: confidence a client can act on.
    max_calibration_error: float = Field(0.15, ge=0.0, le=1.0)


class FuzzSection(_Section):
    # The evaluation gate sends the evaluation split through every client
    # mistake (`imgpipe fuzz`); a mistake the served model accepts silently and
    # that costs more than these drops keeps the model from being blessed.
    enabled: bool = True
    sample: int = Field(1000, ge=1)                  # evaluation inputs per mistake
    # Each accepted mistake is first sent on this many of them; one that shows no
    # hint of a drop there (one-sided p >= 0.2) stops, the others use the sample.
    screen: int = Field(250, ge=0)                   # 0: every mistake uses the whole sample
    # In the gate, the fuzzer's time at most this share of the evaluation's
    # (the Evaluator's and the gate's own): slow images get fewer inputs a
    # mistake (each row reports how many it used; the rows it cannot pay for
    # are UNTESTED), and a row's inputs then depend on the machine's speed.
    # 0: every row its screen and sample, the same verdicts on any machine.
    # "auto": 0.25 for images larger than 64x64, 0 for thumbnails (fuzzed
    # whole in about a quarter of the evaluation's time).
    max_evaluation_share: Any = "auto"
    max_accuracy_drop: float = Field(0.02, ge=0.0, le=1.0)
    max_class_recall_drop: float = Field(0.05, ge=0.0, le=1.0)
    accepted: Dict[str, str] = {}                    # mistake -> why it may ship

    @field_validator("max_evaluation_share")
    @classmethod
    def _auto_or_a_share(cls, value):
        if value == "auto" or (isinstance(value, (int, float)) and not isinstance(value, bool)
                               and value >= 0):
            return value
        raise ValueError('expected "auto" or a share >= 0 (e.g. 0.25)')

    @model_validator(mode="after")
    def _accepted_mistakes_exist(self) -> "FuzzSection":
        from imgpipe.components.fuzzer.mistakes import by_name
        unknown = sorted(set(self.accepted) - set(by_name()))
        if unknown:
            raise ValueError(f"fuzz.accepted names unknown mistakes {unknown}; known: "
                             f"{sorted(by_name())}")
        empty = sorted(name for name, reason in self.accepted.items() if not reason.strip())
        if empty:
            raise ValueError(f"fuzz.accepted: give a reason for {empty}")
        return self


class RegistrySection(_Section):
    model_name: str = Field("imgpipe-model", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    url: str = ""                     # default: sqlite:///<output_root>/registry.db
    mlflow_tracking_uri: str = ""     # default: sqlite:///<output_root>/mlflow.db
    mlflow_artifact_root: str = ""    # default: <output_root>/mlflow-artifacts (database stores)
    mlflow_experiment: str = ""       # default: the pipeline name
    serving_root: str = ""            # default: <output_root>/serving (TF Serving layout)
    # Blessed models become champion unless the champion moved meanwhile.
    promote: bool = True
    # Create/upgrade the registry schema on first use (off: `imgpipe registry migrate`).
    auto_migrate: bool = True

    @field_validator("url", "mlflow_tracking_uri")
    @classmethod
    def _no_password(cls, value: str) -> str:
        # Config files are compiled into pipeline specs and stored in ML
        # Metadata; passwords belong in the environment.
        if value and has_password(value):
            raise ValueError("contains a password; put the URL in the environment instead "
                             f"({REGISTRY_URL_ENV} / {MLFLOW_URI_ENV}) or use PGPASSWORD/.pgpass "
                             "or MLFLOW_TRACKING_PASSWORD")
        return value


class KubeflowSection(_Section):
    # The image every component runs in (docker/Dockerfile); `imgpipe compile --image`.
    image: str = f"imgpipe:{__version__}"
    # The cluster's artifact root (gs://bucket/imgpipe): pipeline artifacts,
    # drift baselines and serving copies go under it; `--pipeline-root`.
    pipeline_root: str = ""
    # A Kubernetes secret whose keys become the components' environment
    # (IMGPIPE_REGISTRY_URL, MLFLOW_TRACKING_URI, credentials); `--env-secret`.
    env_secret: str = ""
    env_secret_keys: List[str] = ["IMGPIPE_REGISTRY_URL", "MLFLOW_TRACKING_URI"]


class ServingSection(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    # Micro-batching: requests that arrive while the model is busy run
    # together, up to max_batch images; max_wait_ms > 0 also holds a batch
    # open for more (bigger batches, more latency). max_batch = 1: no batching.
    max_batch: int = Field(32, ge=1, le=1024)
    max_wait_ms: float = Field(0.0, ge=0)
    max_queue: int = Field(256, ge=1)                # requests waiting for the model; more get 503
    max_body_bytes: int = Field(10_000_000, gt=0)
    max_image_side: int = Field(4096, gt=0)          # width and height of one image
    max_instances: int = Field(256, gt=0)            # images per request
    # Pixels one request may ask to decode (encoded images and arrays): its CPU bound.
    max_pixels_per_request: int = Field(4096 * 4096, gt=0)
    # Seconds a client may take to send its request headers, and may pause inside a body.
    read_timeout_seconds: float = Field(10.0, gt=0)
    # Bearer token (optional): the name of an environment variable holding it, or a
    # file (a mounted secret); never the token itself. Open paths need none.
    auth_token_env: str = ""
    auth_token_file: str = ""
    auth_open_paths: List[str] = ["/healthz", "/metrics"]
    allowed_formats: List[Literal["JPEG", "PNG"]] = ["JPEG", "PNG"]
    top_k: int = Field(3, ge=1)
    reload_seconds: float = Field(10.0, gt=0)        # how often the champion is looked up
    # Prediction log: "" = sqlite:///<output_root>/predictions.db; "registry" = the
    # registry's database (teams); or any SQLAlchemy URL. Env IMGPIPE_PREDICTION_LOG_URL.
    log_url: str = ""
    sample_rate: float = Field(0.1, ge=0.0, le=1.0)  # share of inputs kept for imgpipe monitor
    samples_root: str = ""                           # default <output_root>/prediction-samples
    # A challenger beside the champion: "<model>@<version>", "newest" (the newest
    # blessed version that is not champion), or "" (none). "shadow": it also
    # answers a share of requests, off the response path; "split": it answers
    # that share of requests instead of the champion (stable per client key).
    challenger: str = ""
    challenger_mode: Literal["shadow", "split"] = "shadow"
    challenger_share: float = Field(0.1, ge=0.0, le=1.0)

    @field_validator("challenger")
    @classmethod
    def _challenger_reference(cls, value: str) -> str:
        if value and value != "newest" and not re.fullmatch(r"[^@\s]+@[1-9][0-9]*", value):
            raise ValueError(f"{value!r}: expected \"<model>@<version>\", \"newest\" or \"\"")
        return value

    @field_validator("log_url")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if value and value != "registry" and has_password(value):
            raise ValueError("contains a password; use IMGPIPE_PREDICTION_LOG_URL instead")
        return value


class MonitoringSection(_Section):
    since: str = "24h"                               # window: 30m, 24h, 7d or an ISO time
    min_predictions: int = Field(20, ge=1)           # fewer: nothing is judged
    min_mean_confidence: float = Field(0.7, ge=0.0, le=1.0)
    class_linf_threshold: float = Field(0.15, ge=0.0, le=1.0)  # predicted-class distribution
    pixel_js_threshold: float = Field(0.1, ge=0.0, le=1.0)     # logged inputs vs training
    min_samples: int = Field(20, ge=1)               # sampled inputs needed for the skew check
    # Live quality (labels sent back): the challenger replaces the champion
    # (`registry promote --if-better`) only when its labelled accuracy is better
    # by more than the margin at this confidence, on at least min_labels each.
    min_labels: int = Field(30, ge=1)
    promote_margin: float = Field(0.0, ge=0.0, le=1.0)
    promote_confidence: float = Field(0.95, gt=0.5, lt=1.0)


class WatchSection(_Section):
    """`imgpipe watch`: retraining that starts itself on new data or monitor alerts."""
    interval_seconds: float = Field(300.0, gt=0)     # between polls
    cooldown_seconds: float = Field(3600.0, ge=0)    # after a triggered run: later triggers are skipped
    on_new_span: bool = True                         # data.source's newest {SPAN} beyond the last run's
    on_alerts: bool = True                           # any `imgpipe monitor` alert on the champion
    target: Literal["local", "kubeflow"] = "local"   # run here, or submit the compiled package
    kubeflow_package: str = ""                       # `imgpipe compile` output, for target kubeflow
    kubeflow_host: str = ""                          # KFP API URL (token: KFP_BEARER_TOKEN)


class Config(_Section):
    pipeline: PipelineSection = PipelineSection()
    data: DataSection = DataSection()
    image: ImageSection = ImageSection()
    validation: ValidationSection = ValidationSection()
    training: TrainingSection = TrainingSection()
    evaluation: EvaluationSection = EvaluationSection()
    fuzz: FuzzSection = FuzzSection()
    registry: RegistrySection = RegistrySection()
    kubeflow: KubeflowSection = KubeflowSection()
    serving: ServingSection = ServingSection()
    monitoring: MonitoringSection = MonitoringSection()
    watch: WatchSection = WatchSection()

    @model_validator(mode="after")
    def _floors_name_classes(self) -> "Config":
        if self.data.classes:
            unknown = sorted(set(self.evaluation.f1_floors) - set(self.data.classes))
            if unknown:
                raise ValueError(f"evaluation.f1_floors names unknown classes {unknown}")
        return self

    # Derived locations -------------------------------------------------
    @property
    def output_root(self) -> Path:
        return Path(self.pipeline.output_root).expanduser().absolute()

    @property
    def pipeline_root(self) -> Path:
        return self.output_root / "pipelines" / self.pipeline.name

    @property
    def metadata_path(self) -> Path:
        if self.pipeline.metadata_path:
            return Path(self.pipeline.metadata_path).expanduser().absolute()
        return self.output_root / "metadata.sqlite"

    @property
    def baseline_root(self) -> str:
        if self.validation.baseline_root:
            root = self.validation.baseline_root
            return root if "://" in root else str(Path(root).expanduser().absolute())
        return str(self.output_root / "baselines" / self.pipeline.name)

    @property
    def schema_location(self) -> str:
        """The curated schema's file or URI (builtin:<name> resolved to the packaged file)."""
        return resolve_schema_file(self.validation.schema_file)

    # The configured locations (what goes into the pipeline definition) and
    # the effective ones (the environment wins, as it does in components).
    @property
    def configured_registry_url(self) -> str:
        return self.registry.url or f"sqlite:///{self.output_root / 'registry.db'}"

    @property
    def registry_url(self) -> str:
        return resolve_registry_url(self.configured_registry_url)

    @property
    def configured_mlflow_tracking_uri(self) -> str:
        return self.registry.mlflow_tracking_uri or f"sqlite:///{self.output_root / 'mlflow.db'}"

    @property
    def mlflow_tracking_uri(self) -> str:
        return resolve_tracking_uri(self.configured_mlflow_tracking_uri)

    @property
    def prediction_log_url(self) -> str:
        configured = os.environ.get(PREDICTION_LOG_URL_ENV) or self.serving.log_url
        if configured == "registry":
            return self.registry_url
        return configured or f"sqlite:///{self.output_root / 'predictions.db'}"

    @property
    def samples_root(self) -> str:
        return self._location(self.serving.samples_root, "prediction-samples")

    @property
    def mlflow_artifact_root(self) -> str:
        return self._location(self.registry.mlflow_artifact_root, "mlflow-artifacts")

    @property
    def mlflow_experiment(self) -> str:
        return self.registry.mlflow_experiment or self.pipeline.name

    @property
    def serving_root(self) -> str:
        return self._location(self.registry.serving_root, "serving")

    def _location(self, value: str, default_name: str) -> str:
        if not value:
            return str(self.output_root / default_name)
        return value if "://" in value else str(Path(value).expanduser().absolute())

    @property
    def builtin_dataset(self) -> Optional[str]:
        if self.data.source.startswith(BUILTIN_PREFIX):
            return self.data.source[len(BUILTIN_PREFIX):]
        return None


def _parse_value(text: str) -> Any:
    """A CLI override value: TOML syntax when it parses, else a plain string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set_dotted(tree: Dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value


def _describe(error: dict) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if "input" in error and error["type"] not in ("missing",) and not isinstance(error["input"], dict):
        shown = error["input"]
        if isinstance(shown, str):
            shown = mask_url(shown)  # never echo a password
        return f"{key}: {message} (got {shown!r})"
    return f"{key}: {message}"


def load_config(path=None, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """Reads the TOML file(s), applies dotted-key overrides, validates.

    `path`: a file, `builtin:<preset>`, a list of them (later layers
    override earlier ones key by key, e.g. a preset plus a Beam runner
    layer), or None for the lookup order in this module's docstring.
    """
    layers = list(path) if isinstance(path, (list, tuple)) else [path] if path else []
    if not layers:
        layers = [default_config_location()]
    tree: Dict[str, Any] = {}
    for layer in layers:
        _merge(tree, _read_layer(str(layer)))
    label = Path(" + ".join(str(p) for p in layers))
    return _validated(tree, label, _absolute_paths(overrides or {}, Path.cwd()))


def default_config_location() -> str:
    """--config's default: $IMGPIPE_CONFIG, ./imgpipe.toml, or the quickstart preset."""
    if os.environ.get(CONFIG_ENV):
        return os.environ[CONFIG_ENV]
    if Path(PROJECT_CONFIG).is_file():
        return PROJECT_CONFIG
    return f"{BUILTIN_PREFIX}{DEFAULT_PRESET}"


def packaged_file(package: str, name: str, suffix: str, what: str) -> Path:
    """A file shipped in the package (presets, schemas), read through importlib.resources."""
    from importlib import resources
    folder = resources.files(package)
    candidate = folder / f"{name}{suffix}"
    if not candidate.is_file():
        known = sorted(p.name[:-len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix))
        raise ConfigError(f"{BUILTIN_PREFIX}{name}: no built-in {what} of that name; "
                          f"built-in {what}s: {', '.join(known)}")
    return Path(str(candidate))


def resolve_schema_file(value: str) -> str:
    if value.startswith(BUILTIN_PREFIX):
        return str(packaged_file("imgpipe.schemas", value[len(BUILTIN_PREFIX):], ".pbtxt", "schema"))
    return value if "://" in value else str(Path(value).expanduser().absolute())


def _read_layer(location: str) -> Dict[str, Any]:
    if location.startswith(BUILTIN_PREFIX):
        # Presets ship in the package; their relative paths mean the current folder.
        preset = packaged_file("imgpipe.configs", location[len(BUILTIN_PREFIX):], ".toml", "preset")
        return _read_toml(preset)
    path = Path(location).expanduser()
    return _absolute_paths(_read_toml(path), path.absolute().parent)


def _read_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; expected a TOML config file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None


def _absolute_paths(tree: Dict[str, Any], base: Path) -> Dict[str, Any]:
    """Relative paths under PATH_KEYS made absolute against `base` (a nested tree or dotted keys)."""
    def fixed(value, dotted):
        if (not isinstance(value, str) or not value or "://" in value
                or value.startswith(BUILTIN_PREFIX) or value in PATH_KEYWORDS.get(dotted, ())):
            return value
        if dotted == "training.model":
            return _model_reference(value, base)
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else base / path)

    out = {key: (dict(value) if isinstance(value, dict) else value) for key, value in tree.items()}
    for dotted in PATH_KEYS:
        if dotted in out:                      # CLI overrides use dotted keys
            out[dotted] = fixed(out[dotted], dotted)
            continue
        section, key = dotted.split(".")
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section][key] = fixed(out[section][key], dotted)
    return out


def _model_reference(value: str, base: Path) -> str:
    """A built-in name as it is; "module:function" naming a file under `base` as
    "<absolute file>:function" (an installed module stays a name)."""
    from imgpipe.components.trainer.user_model import module_file, split_reference
    if ":" not in value:
        return value
    try:
        path = module_file(value, base)
    except ValueError:
        return value     # the section's validator names the mistake
    return f"{path}:{split_reference(value)[1]}" if path else value


def _merge(tree: Dict[str, Any], layer: Dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _merge(tree[key], value)
        else:
            tree[key] = value


def _validated(tree: Dict[str, Any], path: Path, overrides: Optional[Dict[str, Any]]) -> Config:
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        _set_dotted(tree, key, value)
    try:
        return Config.model_validate(tree)
    except ValidationError as error:
        problems = "; ".join(_describe(e) for e in error.errors())
        raise ConfigError(f"{path}: {problems}") from None


def parse_set_options(items: List[str]) -> Dict[str, Any]:
    """`--set key=value` pairs -> overrides, values parsed as TOML literals."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. training.epochs=3")
        key, text = item.split("=", 1)
        out[key.strip()] = _parse_value(text.strip())
    return out
