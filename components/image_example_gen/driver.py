"""TFX's FileBasedDriver, with an input fingerprint that survives broken links.

TFX fingerprints the input (for caching) by stat-ing every matched file; one
broken symbolic link in a class folder makes that raise an empty NotFoundError
before ingestion starts. Ingestion lists such entries in its quarantine
instead, so the fingerprint here skips what cannot be stat-ed (and counts it).
Span and version resolution are TFX's own.

Open-source Kubeflow Pipelines runs no driver at all: TFX compiles
FileBasedExampleGen's driver as a `preCacheCheck` lifecycle hook, which only
Vertex AI Pipelines executes. `resolve_without_driver` does the driver's work
in the executor there, with the same input processor.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, Iterable, Optional, Tuple

from tfx.components.example_gen import driver, input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

_NANOS = 10**9


def tolerant_fingerprint(split_name: str, file_pattern: str) -> str:
    """io_utils.generate_fingerprint, but entries that cannot be stat-ed are counted."""
    total_bytes = xor_checksum = sum_checksum = broken = 0
    files = fileio.glob(file_pattern)
    for path in files:
        try:
            stat = fileio.stat(path)
        except Exception:  # NotFoundError for a broken link; ingestion reports it
            broken += 1
            continue
        total_bytes += stat.length
        mtime = int(stat.mtime_nsec / _NANOS)
        xor_checksum ^= mtime
        sum_checksum += mtime
    return (f"split:{split_name},num_files:{len(files)},total_bytes:{total_bytes},"
            f"xor_checksum:{xor_checksum},sum_checksum:{sum_checksum},unstatable:{broken}")


class _InputProcessor(input_processor.FileBasedInputProcessor):

    def resolve_span_and_version(self) -> Tuple[int, Optional[int]]:
        fingerprints, select_span, select_version = [], 0, None
        for split in (copy.deepcopy(s) for s in self._splits):
            # TFX's own span/version search (the same call its driver makes).
            span, version = example_gen_utils._get_target_span_version(  # pylint: disable=protected-access
                self._input_base_uri, split, range_config=self._range_config)
            span = span or 0
            if select_span == 0 and select_version is None:
                select_span, select_version = span, version
            if (span, version) != (select_span, select_version):
                raise ValueError("the latest span and version must be the same for every split")
            fingerprints.append(tolerant_fingerprint(
                split.name, os.path.join(self._input_base_uri, split.pattern)))
        self._fingerprint = "\n".join(fingerprints)
        return select_span, select_version


class ImageExampleGenDriver(driver.FileBasedDriver):

    def get_input_processor(self, splits: Iterable[example_gen_pb2.Input.Split],
                            range_config: Optional[range_config_pb2.RangeConfig] = None,
                            input_base_uri: Optional[str] = None) -> input_processor.InputProcessor:
        assert input_base_uri
        return _InputProcessor(input_base_uri, splits, range_config)


def resolve_without_driver(exec_properties: Dict[str, Any],
                           examples_artifact: Any) -> Optional[Tuple[int, Optional[int]]]:
    """The driver's work, when no driver ran (open-source KFP): resolves the
    span and version of `{SPAN}`/`{VERSION}` patterns, fingerprints the input,
    rewrites the split patterns to the resolved ones and records span,
    version and fingerprint on the examples artifact, in exec_properties.
    Returns (span, version), or None when a driver has already done this."""
    if example_gen_utils.SPAN_PROPERTY_NAME in exec_properties:
        return None
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    input_config = example_gen_pb2.Input()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.INPUT_CONFIG_KEY],
                              input_config)
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = range_config_pb2.RangeConfig()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.RANGE_CONFIG_KEY],
                                  range_config)
    processor = _InputProcessor(input_base, input_config.splits, range_config)
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    exec_properties[example_gen_utils.SPAN_PROPERTY_NAME] = span
    exec_properties[example_gen_utils.VERSION_PROPERTY_NAME] = version
    exec_properties[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = \
        processor.get_input_fingerprint(span, version)
    exec_properties[standard_component_specs.INPUT_CONFIG_KEY] = \
        proto_utils.proto_to_json(input_config)
    examples_artifact.span = span
    if version is not None:
        examples_artifact.version = version
    driver.update_output_artifact(exec_properties, examples_artifact.mlmd_artifact)
    return span, version
