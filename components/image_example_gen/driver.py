"""TFX's FileBasedDriver, with an input fingerprint that survives broken links.

TFX fingerprints the input (for caching) by stat-ing every matched file; one
broken symbolic link in a class folder makes that raise an empty NotFoundError
before ingestion starts. Ingestion lists such entries in its quarantine
instead, so the fingerprint here skips what cannot be stat-ed (and counts it).
Span and version resolution are TFX's own.
"""
from __future__ import annotations

import copy
import os
from typing import Iterable, Optional, Tuple

from tfx.components.example_gen import driver, input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2

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
