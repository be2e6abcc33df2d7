"""create_pipeline(config): the one definition of the imgpipe TFX pipeline.

Runners only choose where it runs. Components so far:
  ImageExampleGen -> StatisticsGen (with the curated schema, CuratedSchema)
  -> ValidationGate (halts the run on any ERROR anomaly or drift)
  -> Transform (preprocessing_fn) -> Trainer (run_fn; SavedModel with the
     transform graph inside its serving signatures)
  -> Evaluator (TFMA) + ChampionResolver (the registry's champion)
  -> EvaluationGate (F1 floors, serving parity, no regression; the blessing)
  -> RegistryPusher (serving directory, model_registry row, MLflow)
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Dict, List, Optional

# Component modules are imported one by one: `tfx.v1` imports every TFX
# component and costs seconds of start-up on each command.
from tfx.components.evaluator.component import Evaluator
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, range_config_pb2, trainer_pb2

from imgpipe.components.champion_resolver.component import ChampionResolver
from imgpipe.components.champion_resolver.settings import ResolverSettings
from imgpipe.components.curated_schema.component import CuratedSchema
from imgpipe.components.curated_schema.settings import CuratedSchemaSettings
from imgpipe.components.evaluation_gate import eval_config as evaluation_config
from imgpipe.components.evaluation_gate.component import EvaluationGate
from imgpipe.components.evaluation_gate.settings import EvaluationSettings
from imgpipe.components.fuzzer import budget as fuzz_budget
from imgpipe.components.image_example_gen import sources
from imgpipe.components.image_example_gen.component import ImageExampleGen
from imgpipe.components.image_example_gen.settings import IngestionSettings
from imgpipe.components.registry_pusher.component import RegistryPusher
from imgpipe.components.registry_pusher.settings import PushSettings
from imgpipe.components.trainer.settings import (
    AugmentationSettings,
    FitSettings,
    ModelSettings,
    TrainerSettings,
    TransformSettings,
)
from imgpipe.components.validation_gate import schema_curation
from imgpipe.components.validation_gate.component import ValidationGate
from imgpipe.components.validation_gate.settings import ValidationSettings
from imgpipe.pipeline.config import BUILTIN_PREFIX, Config

# Buckets per unit of split ratio: ratios are honoured to 0.1%.
_HASH_BUCKETS = 1000



class PipelineError(ValueError):
    """The configuration cannot become a pipeline (message says why)."""


DATA_ROOT_PARAMETER = "data_root"


def source_layout(config: Config, source: Optional[str] = None) -> sources.SourceLayout:
    source = source or config.data.source
    if source.startswith("builtin:"):
        raise PipelineError(f"data.source {source!r} must be materialised first "
                            "(imgpipe run does this for built-in datasets)")
    try:
        return sources.discover_layout(source, config.data.format)
    except sources.SourceError as error:
        raise PipelineError(f"data.source: {error}") from None


def ingestion_routes(config: Config, layout: sources.SourceLayout) -> Dict[str, Dict[str, int]]:
    """Split folders: each feeds its split, the configured splits without a
    folder are carved from train. Empty for a single source (hash split)."""
    if not layout.has_predefined_splits:
        return {}
    return sources.split_routes(list(layout.split_patterns), config.data.split, _HASH_BUCKETS)


def ingested_splits(config: Config, layout: sources.SourceLayout) -> List[str]:
    routes = ingestion_routes(config, layout)
    return sources.output_splits(routes) if routes else list(config.data.split)


def example_gen_for(config: Config, source: Optional[str] = None,
                    layout: Optional[sources.SourceLayout] = None,
                    data_root_parameter: bool = False) -> ImageExampleGen:
    """The ingestion component for the configured source."""
    source = source or config.data.source
    layout = layout or source_layout(config, source)
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name=name, pattern=pattern)
        for name, pattern in layout.split_patterns.items()])
    if layout.has_predefined_splits:
        output_config = example_gen_pb2.Output()
    else:
        output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
            example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=round(ratio * _HASH_BUCKETS))
            for name, ratio in config.data.split.items()]))

    span = config.data.span
    pattern_has_span = sources.SPAN_TOKEN in source
    range_config = None
    if span is not None and pattern_has_span:
        range_config = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
            start_span_number=span, end_span_number=span))
    settings = IngestionSettings(
        source=source, format=layout.format, image=config.image.spec,
        classes=list(config.data.classes), max_bad_fraction=config.data.max_bad_fraction,
        max_image_pixels=config.data.max_image_pixels,
        span_override=span if (span is not None and not pattern_has_span) else None,
        compiled_input_base=layout.input_base, split_routes=ingestion_routes(config, layout))
    input_base = layout.input_base
    if data_root_parameter:
        # A run can point the compiled pipeline at another folder of the same layout.
        from tfx.orchestration import data_types
        input_base = data_types.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str,
                                                 default=layout.input_base)
    return ImageExampleGen(input_base=input_base, input_config=input_config,
                           output_config=output_config, settings=settings,
                           range_config=range_config)


@dataclasses.dataclass(frozen=True)
class Locations:
    """Where a run reads and writes: this machine's paths, or a cluster's URIs."""
    pipeline_root: str
    baseline_root: str
    serving_root: str
    mlflow_artifact_root: str
    # Configured locations without passwords; components prefer their
    # environment's IMGPIPE_REGISTRY_URL / MLFLOW_TRACKING_URI ("" = required there).
    registry_url: str
    mlflow_tracking_uri: str
    # Transform/Trainer code: module files (hashed into TFX's cache key) or
    # the functions installed in the image (nothing to upload or pip-install).
    installed_modules: bool = False
    metadata_path: Optional[str] = None
    # The data folder as a run-time parameter (`data_root`) of the compiled pipeline.
    data_root_parameter: bool = False


def local_locations(config: Config) -> Locations:
    return Locations(
        pipeline_root=str(config.pipeline_root), baseline_root=config.baseline_root,
        serving_root=config.serving_root, mlflow_artifact_root=config.mlflow_artifact_root,
        registry_url=config.configured_registry_url,
        mlflow_tracking_uri=config.configured_mlflow_tracking_uri,
        metadata_path=str(config.metadata_path))


def modules_dir() -> Path:
    """Where the Transform/Trainer module files are (installed with imgpipe)."""
    from imgpipe.components.trainer import module_files
    return Path(module_files.__file__).resolve().parent


def validation_split(splits: List[str]) -> str:
    """Early stopping watches `validation` when the data has it, else `eval`."""
    return "validation" if "validation" in splits else "eval"


def trainer_settings(config: Config, class_names: List[str]) -> TrainerSettings:
    training = config.training
    augmentation = training.augmentation
    user = _user_module(training.model)
    settings = TrainerSettings(
        class_names=class_names, image=config.image.spec,
        model=ModelSettings(
            architecture=user.reference if user else training.model,
            model_args=dict(training.model_args), user_module=user,
            input_normalization=training.input_normalization, weights=training.weights,
            conv_filters=tuple(training.conv_filters), dense_units=training.dense_units,
            dropout=training.dropout, padding=training.padding, batch_norm=training.batch_norm),
        fit=FitSettings(
            epochs=training.epochs, batch_size=training.batch_size,
            learning_rate=training.learning_rate, optimizer=training.optimizer,
            lr_schedule=training.lr_schedule, warmup_epochs=training.warmup_epochs,
            weight_decay=training.weight_decay, label_smoothing=training.label_smoothing,
            early_stopping_patience=training.early_stopping_patience,
            shuffle_buffer=training.shuffle_buffer, seed=training.seed,
            fine_tune_layers=training.fine_tune_layers, fine_tune_epochs=training.fine_tune_epochs,
            fine_tune_lr_factor=training.fine_tune_lr_factor,
            mixed_precision=training.mixed_precision),
        augmentation=AugmentationSettings(
            horizontal_flip=augmentation.horizontal_flip, crop_padding=augmentation.crop_padding,
            cutout=augmentation.cutout, translation=augmentation.translation,
            rotation=augmentation.rotation))
    if settings.model.user_module is not None:
        _check_user_model(settings)
    _check_weights_file(training.weights)
    return settings


def _check_weights_file(weights: str) -> None:
    """A missing local weights file stops the run here, not after ingestion. A
    remote one (gs://, s3://) is read where the Trainer runs, with its credentials."""
    if weights in ("none", "imagenet") or "://" in weights or Path(weights).is_file():
        return
    raise PipelineError(f"training.weights: no file {weights} (expected a .h5, .keras or "
                        ".weights.h5 file, e.g. assets/weights.h5 of an earlier run's model)")


def _check_user_model(settings: TrainerSettings) -> None:
    """Build the user's model once here: a contract mistake stops the run before ingestion."""
    from imgpipe.components.trainer import networks, user_model
    try:
        networks.build_classifier(settings.model, settings.image, len(settings.class_names))
    except (user_model.UserModelError, ValueError) as error:
        raise PipelineError(str(error)) from None


def _user_module(reference: str):
    """A "module:function" model, read here (its source travels with the pipeline)."""
    from imgpipe.components.trainer import backbones, user_model
    if reference in ("cnn", "resnet") or backbones.known(reference):
        return None
    try:
        return user_model.describe(reference, Path.cwd())
    except user_model.UserModelError as error:
        raise PipelineError(str(error)) from None


def checked_schema(config: Config, layout: Optional[sources.SourceLayout] = None):
    """The curated schema (settings carrying its text, and its proto), checked
    against the config and the source's layout."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    location = config.schema_location
    if not tf.io.gfile.exists(location):
        raise PipelineError(f"validation.schema_file: {location} does not exist; write one with "
                            "`imgpipe schema infer SOURCE --output FILE`")
    try:
        schema = tfdv.load_schema_text(location)
        with tf.io.gfile.GFile(location, "r") as handle:
            text = handle.read()
    except Exception as error:
        raise PipelineError(f"validation.schema_file: {location} is not a TFDV text schema "
                            f"({error})") from None
    problems = schema_curation.mismatches(
        schema, height=config.image.height, width=config.image.width,
        channels=config.image.channels, class_names=config.data.classes)
    if problems:
        raise PipelineError(f"validation.schema_file {location} does not match the configuration: "
                            + "; ".join(problems))
    # The origin is for people reading the run; a local path is shown by name
    # (a compiled pipeline carries nothing of this machine's layout).
    origin = config.validation.schema_file
    if "://" not in origin and not origin.startswith(BUILTIN_PREFIX):
        origin = Path(origin).name
    if layout is not None:
        schema, text, origin = _for_source(config, layout, schema, text, origin)
    return CuratedSchemaSettings(schema_text=text, origin=origin), schema


def _for_source(config: Config, layout: sources.SourceLayout, schema, text: str, origin: str):
    """Image files are kept encoded, arrays and records as pixels: a schema
    drafted from the other kind is re-curated for this one (its text and
    origin say so)."""
    from google.protobuf import text_format
    files = layout.format == sources.FOLDERS
    converted = schema_curation.for_layout(
        schema, encoded=files, height=config.image.height, width=config.image.width,
        channels=config.image.channels)
    if converted is schema:
        return schema, text, origin
    kind = "encoded" if files else "pixel"
    text = (f"# {origin}, re-curated by imgpipe for the {kind} layout of this source\n"
            + text_format.MessageToString(converted))
    return converted, text, f"{origin} ({kind} layout)"


def _validation_stages(config: Config, example_gen, locations: Locations,
                       layout: sources.SourceLayout):
    """CuratedSchema, StatisticsGen and the ValidationGate; also the class names."""
    curated, schema = checked_schema(config, layout)
    class_names = list(config.data.classes) or schema_curation.expectations(schema).class_names
    schema_gen = CuratedSchema(settings=curated)
    # With the schema, statistics treat the label as categorical (needed
    # for the L-infinity drift check).
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"],
                                   schema=schema_gen.outputs["schema"])
    gate = ValidationGate(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        examples=example_gen.outputs["examples"],
        settings=ValidationSettings(
            thresholds=schema_curation.DriftThresholds(
                pixel_js_divergence=config.validation.pixel_drift_threshold,
                label_linf=config.validation.label_drift_threshold,
                property_js_divergence=config.validation.property_drift_threshold),
            baseline_root=locations.baseline_root, image=config.image.spec))
    return [schema_gen, statistics_gen, gate], class_names


def _module(locations: Locations, installed_function: str, module_file: str) -> dict:
    """Transform/Trainer code: the function installed in the image, or the module file."""
    if locations.installed_modules:
        name = installed_function.rsplit(".", 1)[1]
        return {name: f"imgpipe.components.trainer.module_files.{installed_function}"}
    return {"module_file": str(modules_dir() / module_file)}


def _training_stages(config: Config, example_gen, schema_gen, gate, class_names: List[str],
                     locations: Locations, splits: List[str]):
    transform = Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        **_module(locations, "preprocessing.preprocessing_fn", "preprocessing.py"),
        custom_config=TransformSettings(image=config.image.spec,
                                        standardize=config.training.standardize).to_dict(),
        # The Trainer applies the transform graph itself: no second copy of
        # the data as float32 on disk. StatisticsGen already has the
        # statistics of the raw data.
        materialize=False, disable_statistics=True)
    # Data flows around the gate; this edge makes it a gate.
    transform.add_upstream_node(gate)
    trainer = Trainer(
        **_module(locations, "run.run_fn", "run.py"),
        examples=example_gen.outputs["examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(splits=["train"]),
        eval_args=trainer_pb2.EvalArgs(splits=[validation_split(splits)]),
        custom_config=trainer_settings(config, class_names).to_dict())
    return [transform, trainer]


def evaluation_settings(config: Config, class_names: List[str],
                        metadata_path: str = "") -> EvaluationSettings:
    evaluation = config.evaluation
    try:
        floors = evaluation_config.f1_floors(class_names, evaluation.f1_floor, evaluation.f1_floors)
    except ValueError as error:
        raise PipelineError(str(error)) from None
    return EvaluationSettings(
        class_names=class_names, f1_floors=floors, accuracy_floor=evaluation.accuracy_floor,
        split=evaluation.split, image=config.image.spec,
        max_accuracy_gap=evaluation.parity_max_accuracy_gap,
        max_disagreement=evaluation.parity_max_disagreement,
        max_accuracy_drop=evaluation.max_accuracy_drop, max_flip_rate=evaluation.max_flip_rate,
        max_calibration_error=evaluation.max_calibration_error, fuzz_enabled=config.fuzz.enabled,
        fuzz_sample=config.fuzz.sample, fuzz_screen=config.fuzz.screen,
        fuzz_max_evaluation_share=fuzz_budget.share_for(config.fuzz.max_evaluation_share,
                                                        config.image.spec),
        fuzz_max_accuracy_drop=config.fuzz.max_accuracy_drop,
        fuzz_max_class_recall_drop=config.fuzz.max_class_recall_drop,
        fuzz_accepted=dict(config.fuzz.accepted),
        monitor_min_mean_confidence=config.monitoring.min_mean_confidence,
        monitor_pixel_js_threshold=config.monitoring.pixel_js_threshold,
        metadata_path=metadata_path)


def push_settings(config: Config, locations: Locations) -> PushSettings:
    return PushSettings(
        model_name=config.registry.model_name, registry_url=locations.registry_url,
        mlflow_tracking_uri=locations.mlflow_tracking_uri,
        mlflow_experiment=config.mlflow_experiment,
        mlflow_artifact_root=locations.mlflow_artifact_root,
        serving_root=locations.serving_root, promote=config.registry.promote,
        auto_migrate=config.registry.auto_migrate)


def _evaluation_stages(config: Config, example_gen, validation, trainer, class_names: List[str],
                       locations: Locations):
    """Evaluator, ChampionResolver, EvaluationGate and RegistryPusher."""
    schema_gen, statistics_gen, gate = validation
    model = trainer.outputs["model"]
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"], model=model,
        eval_config=evaluation_config.build_eval_config(class_names, config.evaluation.accuracy_floor),
        example_splits=[config.evaluation.split])
    champion_resolver = ChampionResolver(model=model, settings=ResolverSettings(
        registry_url=locations.registry_url, model_name=config.registry.model_name,
        auto_migrate=config.registry.auto_migrate, serving_root=locations.serving_root))
    evaluation_gate = EvaluationGate(
        model=model, examples=example_gen.outputs["examples"],
        evaluation=evaluator.outputs["evaluation"], champion=champion_resolver.outputs["champion"],
        schema=schema_gen.outputs["schema"], statistics=statistics_gen.outputs["statistics"],
        settings=evaluation_settings(config, class_names, locations.metadata_path or ""))
    pusher = RegistryPusher(
        model=model, blessing=evaluation_gate.outputs["blessing"],
        evaluation_report=evaluation_gate.outputs["report"],
        schema=schema_gen.outputs["schema"], validation_report=gate.outputs["report"],
        champion=champion_resolver.outputs["champion"],
        statistics=statistics_gen.outputs["statistics"], settings=push_settings(config, locations))
    return [evaluator, champion_resolver, evaluation_gate, pusher]


def create_pipeline(config: Config, source: Optional[str] = None,
                    until: Optional[str] = None,
                    beam_args: Optional[List[str]] = None,
                    locations: Optional[Locations] = None,
                    layout: Optional[sources.SourceLayout] = None) -> tfx_pipeline.Pipeline:
    """Builds the pipeline.

    `source` replaces data.source (e.g. a materialised built-in dataset),
    `until` stops after the named stage (ingestion alone), `beam_args`
    replaces pipeline.beam_args and `locations` this machine's paths
    (runners adapt them to where they run); `layout`: the source's layout when
    it cannot be read from here (a path inside the cluster's image).
    """
    locations = locations or local_locations(config)
    layout = layout or source_layout(config, source)
    example_gen = example_gen_for(config, source, layout, locations.data_root_parameter)
    components: List = [example_gen]
    if until != "ImageExampleGen":
        validation, class_names = _validation_stages(config, example_gen, locations, layout)
        schema_gen, _, gate = validation
        training = _training_stages(config, example_gen, schema_gen, gate, class_names, locations,
                                    ingested_splits(config, layout))
        components += [*validation, *training, *_evaluation_stages(
            config, example_gen, validation, training[-1], class_names, locations)]
    if until is not None:
        names = [type(c).__name__ for c in components]
        if until not in names:
            raise PipelineError(f"unknown stage {until!r}; stages are {', '.join(names)}")
        components = components[:names.index(until) + 1]

    metadata_config = None  # on a cluster, the orchestrator's ML Metadata
    if locations.metadata_path:
        Path(locations.metadata_path).parent.mkdir(parents=True, exist_ok=True)
        metadata_config = metadata.sqlite_metadata_connection_config(locations.metadata_path)
    return tfx_pipeline.Pipeline(
        pipeline_name=config.pipeline.name,
        pipeline_root=locations.pipeline_root,
        components=components,
        enable_cache=config.pipeline.enable_cache,
        metadata_connection_config=metadata_config,
        beam_pipeline_args=list(config.pipeline.beam_args if beam_args is None else beam_args),
    )
