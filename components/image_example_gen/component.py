"""ImageExampleGen: TFX's FileBasedExampleGen with an image executor and a report.

It keeps FileBasedExampleGen's driver (span/version resolution, input
fingerprints for caching; see driver.py for the one change) and so runs
wherever FileBasedExampleGen runs; on open-source Kubeflow, which runs no
driver, the executor does the driver's work itself. It adds one output, the
ingestion report.
"""
from __future__ import annotations

from typing import Optional

from tfx import types
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter

from imgpipe.components.image_example_gen import executor
from imgpipe.components.image_example_gen.driver import ImageExampleGenDriver
from imgpipe.components.image_example_gen.settings import IngestionSettings
from imgpipe.components.settings import settings_parameter


class IngestionReport(types.Artifact):
    """ingestion_report.json/.txt and quarantine.csv of one ingestion."""
    # <namespace>.<Title>, as the KFP compiler requires; imgpipe re-exports it (imgpipe/__init__.py).
    TYPE_NAME = "imgpipe.IngestionReport"


class ImageExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
    PARAMETERS = {
        **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
        **settings_parameter(),
    }
    OUTPUTS = {
        **standard_component_specs.FileBasedExampleGenSpec.OUTPUTS,
        executor.REPORT_KEY: ChannelParameter(type=IngestionReport),
    }


class ImageExampleGen(FileBasedExampleGen):
    SPEC_CLASS = ImageExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)
    DRIVER_CLASS = ImageExampleGenDriver

    def __init__(self, input_base: str, input_config: example_gen_pb2.Input,
                 output_config: example_gen_pb2.Output, settings: IngestionSettings,
                 range_config: Optional[range_config_pb2.RangeConfig] = None):
        spec = ImageExampleGenSpec(
            input_base=input_base,
            input_config=input_config,
            output_config=output_config,
            range_config=range_config,
            output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
            output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
            settings=settings.to_json(),
            examples=types.Channel(type=standard_artifacts.Examples),
            report=types.Channel(type=IngestionReport))
        # FileBasedExampleGen.__init__ would build its own spec without the
        # report output, so initialise the Beam component directly.
        base_beam_component.BaseBeamComponent.__init__(self, spec=spec)
