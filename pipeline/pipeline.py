"""create_pipeline(config): the one definition of the imgpipe TFX pipeline.

Runners only choose where it runs. Components so far:
  ImageExampleGen -> StatisticsGen (with the curated schema, ImportSchemaGen)
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
from typing import List, Optional

# Component modules are imported one by one: `tfx.v1` imports every TFX
# component and costs seconds of start-up on each command.
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.components.evaluator.component import Evaluator
from tfx.components.statistics_gen.component import StatisticsGen
from tfx.components.trainer.component import Trainer
from tfx.components.transform.component import Transform
from tfx.proto import trainer_pb2
from tfx.orchestration import metadata
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.proto import example_gen_pb2, range_config_pb2

from imgpipe.components.image_example_gen import sources
from imgpipe.components.evaluation_gate import eval_config as evaluation_config
from imgpipe.components.champion_resolver.component import ChampionResolver
from imgpipe.components.evaluation_gate.component import EvaluationGate
from imgpipe.components.registry_pusher.component import RegistryPusher
from imgpipe.components.image_example_gen.component import ImageExampleGen
from imgpipe.components.validation_gate import schema_curation
from imgpipe.components.validation_gate.component import ValidationGate
from imgpipe.pipeline.config import Config

# Buckets per unit of split ratio: ratios are honoured to 0.1%.
_HASH_BUCKETS = 1000



class PipelineError(ValueError):
    """The configuration cannot become a pipeline (message says why)."""


DATA_ROOT_PARAMETER = "data_root"


def example_gen_for(config: Config, source: Optional[str] = None,
                    layout: Optional[sources.SourceLayout] = None,
                    data_root_parameter: bool = False) -> ImageExampleGen:
    """The ingestion component for the configured source."""
    source = source or config.data.source
    if source.startswith("builtin:"):
        raise PipelineError(f"data.source {source!r} must be materialised first "
                            "(imgpipe run does this for built-in datasets)")
    if layout is None:
        try:
            layout = sources.discover_layout(source, config.data.format)
        except sources.SourceError as error:
            raise PipelineError(f"data.source: {error}") from None
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
    ingestion_config = {
        "source": source,
        "format": layout.format,
        "height": config.image.height,
        "width": config.image.width,
        "channels": config.image.channels,
        "classes": list(config.data.classes),
        "max_bad_fraction": config.data.max_bad_fraction,
        "max_image_pixels": config.data.max_image_pixels,
        "span_override": span if (span is not None and not pattern_has_span) else None,
        "compiled_input_base": layout.input_base,
    }
    input_base = layout.input_base
    if data_root_parameter:
        # A run can point the compiled pipeline at another folder of the same layout.
        from tfx.orchestration import data_types
        input_base = data_types.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str,
                                                 default=layout.input_base)
    return ImageExampleGen(input_base=input_base, input_config=input_config,
                           output_config=output_config, ingestion_config=ingestion_config,
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
    schema_file: str
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
        schema_file=str(config.schema_path), metadata_path=str(config.metadata_path))


def modules_dir() -> Path:
    """Where the Transform/Trainer module files are (installed with imgpipe)."""
    from imgpipe import modules
    return Path(modules.__file__).resolve().parent


def validation_split(config: Config) -> str:
    """Early stopping watches `validation` when the data has it, else `eval`."""
    return "validation" if "validation" in config.data.split else "eval"


def trainer_config(config: Config, class_names: List[str]) -> dict:
    training = config.training
    return {
        "class_names": class_names,
        "image_shape": [config.image.height, config.image.width, config.image.channels],
        "model": {"conv_filters": list(training.conv_filters), "dense_units": training.dense_units,
                  "dropout": training.dropout, "padding": training.padding,
                  "batch_norm": training.batch_norm,
                  "horizontal_flip": training.augmentation.horizontal_flip,
                  "translation": training.augmentation.translation,
                  "rotation": training.augmentation.rotation},
        "fit": {"epochs": training.epochs, "batch_size": training.batch_size,
                "learning_rate": training.learning_rate, "optimizer": training.optimizer,
                "lr_schedule": training.lr_schedule,
                "early_stopping_patience": training.early_stopping_patience,
                "shuffle_buffer": training.shuffle_buffer, "seed": training.seed},
    }


def checked_schema(config: Config):
    """The curated schema file and its proto, after checking it matches the configuration."""
    import tensorflow as tf
    import tensorflow_data_validation as tfdv
    # A URI (gs://...) is read as the cluster will read it; Path would mangle it.
    configured = config.validation.schema_file
    path = configured if "://" in configured else config.schema_path
    if not tf.io.gfile.exists(str(path)):
        raise PipelineError(f"validation.schema_file: {path} does not exist; write one with "
                            "`imgpipe schema infer SOURCE --output FILE`")
    try:
        schema = tfdv.load_schema_text(str(path))
    except Exception as error:
        raise PipelineError(f"validation.schema_file: {path} is not a TFDV text schema ({error})") from None
    problems = schema_curation.mismatches(
        schema, height=config.image.height, width=config.image.width,
        channels=config.image.channels, class_names=config.data.classes)
    if problems:
        raise PipelineError(f"validation.schema_file {path} does not match the configuration: "
                            + "; ".join(problems))
    return path, schema


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
    example_gen = example_gen_for(config, source, layout, locations.data_root_parameter)
    components: List = [example_gen]
    if until != "ImageExampleGen":
        _, schema = checked_schema(config)
        class_names = list(config.data.classes) or schema_curation.expectations(schema).class_names
        schema_gen = ImportSchemaGen(schema_file=locations.schema_file)
        # With the schema, statistics treat the label as categorical (needed
        # for the L-infinity drift check).
        statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"],
                                       schema=schema_gen.outputs["schema"])
        gate = ValidationGate(
            statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
            examples=example_gen.outputs["examples"],
            thresholds=schema_curation.DriftThresholds(
                pixel_js_divergence=config.validation.pixel_drift_threshold,
                label_linf=config.validation.label_drift_threshold),
            baseline_root=locations.baseline_root)
        components += [schema_gen, statistics_gen, gate]
        code = ({"preprocessing_fn": "imgpipe.modules.preprocessing.preprocessing_fn"}
                if locations.installed_modules
                else {"module_file": str(modules_dir() / "preprocessing.py")})
        transform = Transform(
            examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"], **code,
            custom_config={"height": config.image.height, "width": config.image.width,
                           "channels": config.image.channels,
                           "standardize": config.training.standardize},
            # The Trainer applies the transform graph itself: no second copy of
            # the data as float32 on disk. StatisticsGen already has the
            # statistics of the raw data.
            materialize=False, disable_statistics=True)
        # Data flows around the gate; this edge makes it a gate.
        transform.add_upstream_node(gate)
        code = ({"run_fn": "imgpipe.modules.training.run_fn"} if locations.installed_modules
                else {"module_file": str(modules_dir() / "training.py")})
        trainer = Trainer(
            **code,
            examples=example_gen.outputs["examples"],
            transform_graph=transform.outputs["transform_graph"],
            schema=schema_gen.outputs["schema"],
            train_args=trainer_pb2.TrainArgs(splits=["train"]),
            eval_args=trainer_pb2.EvalArgs(splits=[validation_split(config)]),
            custom_config=trainer_config(config, class_names))
        try:
            floors = evaluation_config.f1_floors(class_names, config.evaluation.f1_floor,
                                                 config.evaluation.f1_floors)
        except ValueError as error:
            raise PipelineError(str(error)) from None
        evaluator = Evaluator(
            examples=example_gen.outputs["examples"], model=trainer.outputs["model"],
            eval_config=evaluation_config.build_eval_config(
                class_names, config.evaluation.accuracy_floor),
            example_splits=[config.evaluation.split])
        champion_resolver = ChampionResolver(
            model=trainer.outputs["model"], registry_url=locations.registry_url,
            model_name=config.registry.model_name, auto_migrate=config.registry.auto_migrate)
        evaluation_gate = EvaluationGate(
            model=trainer.outputs["model"], examples=example_gen.outputs["examples"],
            evaluation=evaluator.outputs["evaluation"],
            champion=champion_resolver.outputs["champion"],
            settings={"class_names": class_names, "f1_floors": floors,
                      "accuracy_floor": config.evaluation.accuracy_floor,
                      "split": config.evaluation.split,
                      "image_shape": [config.image.height, config.image.width,
                                      config.image.channels],
                      "max_accuracy_gap": config.evaluation.parity_max_accuracy_gap,
                      "max_disagreement": config.evaluation.parity_max_disagreement,
                      "max_accuracy_drop": config.evaluation.max_accuracy_drop})
        pusher = RegistryPusher(
            model=trainer.outputs["model"], blessing=evaluation_gate.outputs["blessing"],
            evaluation_report=evaluation_gate.outputs["report"],
            schema=schema_gen.outputs["schema"], validation_report=gate.outputs["report"],
            champion=champion_resolver.outputs["champion"],
            statistics=statistics_gen.outputs["statistics"],
            settings={"model_name": config.registry.model_name,
                      "registry_url": locations.registry_url,
                      "mlflow_tracking_uri": locations.mlflow_tracking_uri,
                      "mlflow_experiment": config.mlflow_experiment,
                      "mlflow_artifact_root": locations.mlflow_artifact_root,
                      "serving_root": locations.serving_root,
                      "promote": config.registry.promote,
                      "auto_migrate": config.registry.auto_migrate})
        components += [transform, trainer, evaluator, champion_resolver, evaluation_gate, pusher]
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
