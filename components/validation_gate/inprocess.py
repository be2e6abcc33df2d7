"""Validation without a pipeline: a source -> Arrow -> TFDV statistics -> verdict.

For `imgpipe validate` (serving-skew checks, CI gates) and `imgpipe schema
infer`. Arrays and TFRecords are taken exactly as they are; image files go
through ingestion's decoding (the shared TF ops) and become examples of
ingestion's encoded layout, its conversions reported. Sources are read a
batch at a time and TFDV's statistics accumulated batch by batch: memory is
bounded by a batch (about 64 MB of pixels), not by the dataset.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import numpy as np
import pyarrow as pa
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from imgpipe.components.image_example_gen import encoding, sources
from imgpipe.components.validation_gate import checks
from imgpipe.contract import ImageSpec, image_files

_BATCH = 256


class InputError(ValueError):
    """The source or baseline cannot be read (exit code 2 in the CLI)."""


@dataclasses.dataclass
class LoadedSource:
    """A source being read: `batches` yields it once, a batch at a time;
    conversions and quarantine fill up as it does."""
    batches: Iterator[pa.RecordBatch]
    format: str
    conversions: Dict[str, int]
    quarantine: List[dict]
    class_names: List[str]


# Pixel values per batch: tf.Example holds pixels as int64, so a batch is
# about 8 bytes a value (64 MB here): 256 images of 32x32, 53 of 224x224.
_BATCH_VALUES = 8_000_000
# Serialized records per batch, for TFRecords (their image size is unknown
# until parsed): a varint pixel takes 1-2 bytes, so about the same batch.
_BATCH_RECORD_BYTES = 8_000_000


def batch_size_for(values_per_image: int) -> int:
    return max(1, min(_BATCH, _BATCH_VALUES // max(1, values_per_image)))


def _class_roots(root: str) -> List[str]:
    """The folders holding class folders: the split folders of a split layout
    (train/, val/, test/, as ingestion reads them), else `root` itself."""
    folders = {e for e in os.listdir(root) if os.path.isdir(os.path.join(root, e))}
    try:
        patterns = sources.split_folder_patterns(root, folders)
    except sources.SourceError as error:
        raise InputError(str(error)) from None
    return [os.path.join(root, p[:-len("/*/*")]) for p in patterns.values()] if patterns else [root]


def _image_files(class_roots: List[str]) -> Dict[str, List[str]]:
    """class name ('' for unlabelled) -> image paths, over every split folder."""
    by_class: Dict[str, List[str]] = {}
    for class_root in class_roots:
        entries = sorted(os.listdir(class_root))
        folders = [e for e in entries if os.path.isdir(os.path.join(class_root, e))]
        if not folders:
            by_class.setdefault("", []).extend(os.path.join(class_root, e) for e in entries)
        for name in folders:
            folder = os.path.join(class_root, name)
            by_class.setdefault(name, []).extend(sorted(os.path.join(folder, f)
                                                        for f in os.listdir(folder)))
    return by_class


@dataclasses.dataclass
class FolderImages:
    """A folder's image files, listed and labelled; decoded a batch at a time."""
    root: str
    files: List[tuple]              # (path, label id or None)
    labelled: bool
    class_names: List[str]
    conversions: Dict[str, int]
    quarantine: List[dict]

    def decoded_batches(self, spec: ImageSpec, max_image_pixels: int) -> Iterator[tuple]:
        """([image_ops.Decoded], labels or None, source ids) per batch, decoded
        exactly as ingestion decodes (same probe, ops and policies)."""
        from imgpipe.contract import image_ops
        decoder = image_ops.make_batch_decoder(spec)
        size, produced = batch_size_for(spec.values_per_image), 0
        for start in range(0, len(self.files), size):
            items, label_of = [], {}
            for path, label in self.files[start:start + size]:
                try:
                    with open(path, "rb") as handle:
                        data = handle.read()
                    items.append((path, data, image_files.probe_image(data, max_image_pixels)))
                    label_of[path] = label
                except (OSError, image_files.BadInput) as error:
                    self.quarantine.append({"path": path, "reason": str(error), "kind": "bad"})
            decoded, failures, counts = image_ops.decode_items(decoder, items, spec)
            self.quarantine += [{"path": path, "reason": reason, "kind": "bad"}
                                for path, reason in failures]
            for name, count in counts.items():
                self.conversions[name] = self.conversions.get(name, 0) + count
            if decoded:
                produced += len(decoded)
                yield (decoded,
                       np.array([label_of[d.key] for d in decoded]) if self.labelled else None,
                       [os.path.relpath(d.key, self.root) for d in decoded])
        if not produced:
            raise InputError(f"{self.root}: no readable JPEG or PNG images")


def list_folder_images(root: str, classes: Sequence[str] = ()) -> FolderImages:
    """The image files of a class-folder tree (or a folder of images), labelled by
    ingestion's own rule (configured order, then unknown folders); other files
    are listed as ignored."""
    class_roots = _class_roots(root)
    by_class = _image_files(class_roots)
    labelled = "" not in by_class
    try:
        names = sources.scan_class_folders(class_roots, list(classes)).class_names \
            if labelled else []
    except sources.SourceError as error:
        raise InputError(str(error)) from None
    class_ids = {name: index for index, name in enumerate(names)}
    files, quarantine = [], []
    for name, paths in by_class.items():
        for path in paths:
            if image_files.is_candidate_image(path):
                files.append((path, class_ids.get(name)))
            else:
                quarantine.append({"path": path, "reason": "not an image file", "kind": "ignored"})
    return FolderImages(root, files, labelled, names, {}, quarantine)


def _load_folder(root: str, spec: ImageSpec, classes: Sequence[str],
                 max_image_pixels: int) -> LoadedSource:
    folder = list_folder_images(root, classes)
    batches = (encoding.encoded_record_batch(decoded, labels, ids, spec) for decoded, labels, ids
               in folder.decoded_batches(spec, max_image_pixels))
    return LoadedSource(batches, sources.FOLDERS, folder.conversions, folder.quarantine,
                        folder.class_names)


def _npz_batches(path: str, layout: sources.NpzLayout) -> Iterator[pa.RecordBatch]:
    size = batch_size_for(int(np.prod(layout.image_shape)))
    try:
        with sources.NpzReader(path) as reader:
            for start, stop in sources.row_ranges(layout.count, size):
                x = encoding.as_nhwc(reader.read_rows("x", start, stop), path)
                y = encoding.labels_from_array(reader.read_rows("y", start, stop), len(x), path) \
                    if layout.has_labels else None
                ids = [f"{os.path.basename(path)}[{i}]" for i in range(start, stop)]
                yield encoding.examples_record_batch(x, y, ids, str(x.dtype))
    except (sources.SourceError, image_files.BadInput) as error:
        raise InputError(str(error)) from None


def _load_npz(path: str) -> LoadedSource:
    try:
        layout = sources.inspect_npz(path)
    except sources.SourceError as error:
        raise InputError(str(error)) from None
    return LoadedSource(_npz_batches(path, layout), sources.NPZ, {}, [], layout.class_names or [])


def _tfrecord_batches(pattern: str, files: List[str]) -> Iterator[pa.RecordBatch]:
    import tensorflow as tf
    from tfx_bsl.coders import example_coder
    decoder, records, held, seen = example_coder.ExamplesToRecordBatchDecoder(), [], 0, 0

    def decoded(records):
        try:
            return decoder.DecodeBatch(records)
        except Exception as error:
            raise InputError(f"{pattern}: records are not tf.Examples ({error})") from None

    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        try:
            for record in tf.data.TFRecordDataset(path, compression_type=compression).as_numpy_iterator():
                records.append(record)
                held += len(record)
                if len(records) == _BATCH or held >= _BATCH_RECORD_BYTES:
                    yield decoded(records)
                    seen, records, held = seen + len(records), [], 0
        except tf.errors.OpError as error:
            raise InputError(f"{path}: not a readable TFRecord file ({error.message})") from None
    if records:
        yield decoded(records)
    elif not seen:
        raise InputError(f"{pattern}: the TFRecord files hold no records")


def _load_tfrecords(pattern: str) -> LoadedSource:
    import tensorflow as tf
    files = sorted(tf.io.gfile.glob(os.path.join(pattern, "*") if os.path.isdir(pattern) else pattern))
    if not files:
        raise InputError(f"{pattern}: no TFRecord files")
    return LoadedSource(_tfrecord_batches(pattern, files), sources.TFRECORD, {}, [], [])


def load_source(source: str, *, height: int, width: int, channels: int,
                classes: Sequence[str] = (), max_image_pixels: int = image_files.DEFAULT_MAX_IMAGE_PIXELS,
                policies: Optional[ImageSpec] = None) -> LoadedSource:
    """`source` as batches; image files decoded to height x width x channels
    with the policies of `policies` (an ImageSpec; None: the spec's defaults)."""
    if not os.path.exists(source) and not any(ch in source for ch in "*?["):
        raise InputError(f"{source}: no such file or folder")
    try:
        kind = sources.detect_format(source)
    except sources.SourceError as error:
        raise InputError(str(error)) from None
    if kind == sources.NPZ:
        return _load_npz(source)
    if kind == sources.TFRECORD:
        return _load_tfrecords(source)
    spec = ImageSpec(height=height, width=width, channels=channels)
    if policies is not None:
        spec = dataclasses.replace(policies, height=height, width=width, channels=channels)
    return _load_folder(source, spec, classes, max_image_pixels)


def statistics(record_batch: pa.RecordBatch, schema: Optional[schema_pb2.Schema] = None
               ) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of one in-memory batch (the schema makes `label` categorical)."""
    return statistics_of(iter([record_batch]), schema)[0]


class StreamingStatistics:
    """TFDV's in-memory statistics generators, fed a batch at a time: what is
    held is their accumulators (sketches, counts), not the data."""

    def __init__(self, schema: Optional[schema_pb2.Schema] = None):
        import tensorflow_data_validation as tfdv
        from tensorflow_data_validation.statistics import stats_impl
        options = tfdv.StatsOptions(schema=schema) if schema is not None else tfdv.StatsOptions()
        self._generators = stats_impl.get_generators(options, in_memory=True)
        self._accumulators = [generator.create_accumulator() for generator in self._generators]

    def add(self, record_batch: pa.RecordBatch) -> None:
        self._accumulators = [generator.add_input(accumulator, record_batch) for generator, accumulator
                              in zip(self._generators, self._accumulators)]

    def result(self) -> statistics_pb2.DatasetFeatureStatisticsList:
        from tensorflow_data_validation.statistics import stats_impl
        return stats_impl.extract_statistics_output(self._accumulators, self._generators)


def statistics_of(batches: Iterator[pa.RecordBatch], *schemas: Optional[schema_pb2.Schema],
                  on_batch: Optional[Callable[[int], None]] = None
                  ) -> List[statistics_pb2.DatasetFeatureStatisticsList]:
    """Statistics of every batch, once per schema, in one pass over the batches."""
    streams = [StreamingStatistics(schema) for schema in (schemas or (None,))]
    for batch in batches:
        for stream in streams:
            stream.add(batch)
        if on_batch is not None:
            on_batch(batch.num_rows)
    return [stream.result() for stream in streams]


# What a baseline may be (`imgpipe validate --baseline`), as its error names them.
BASELINE_KINDS = (
    "a class-folder tree",
    "an .npz (x, optional y)",
    "TFRecords of tf.Example (a file, a folder of them or a glob)",
    "a TFDV statistics file (DatasetFeatureStatisticsList: binary, text or one-record TFRecord)",
    "a TFX statistics folder (Split-<name>/FeatureStats.pb; its train split)",
)
STATISTICS_SPLIT = "train"  # the split a TFX statistics folder is compared by (the gate's too)
_HEAD_BYTES = 1 << 16


@dataclasses.dataclass
class Baseline:
    statistics: statistics_pb2.DatasetFeatureStatisticsList
    kind: str          # "statistics file", "TFX statistics folder", or a data format
    description: str   # one line for the report

    @property
    def examples(self) -> int:
        return int(self.statistics.datasets[0].num_examples) if self.statistics.datasets else 0


def _has_features(stats: statistics_pb2.DatasetFeatureStatisticsList) -> bool:
    return any(len(dataset.features) for dataset in stats.datasets)


def _looks_like_text_statistics(head: bytes) -> bool:
    """Text format of a DatasetFeatureStatisticsList: its first field is `datasets`."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        if len(head) < _HEAD_BYTES:
            return False
        text = head[:-4].decode("utf-8", errors="ignore")  # a character cut at the edge
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line.startswith("datasets")
    return False


def _first_tfrecords(path: str) -> Optional[List[bytes]]:
    """Up to two first records of a file in TFRecord framing; None when the file
    does not start with a TFRecord header (its length checksum)."""
    import tensorflow as tf
    try:
        return list(tf.data.TFRecordDataset(path).take(2).as_numpy_iterator())
    except tf.errors.OpError:
        return None


def read_statistics_file(path: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    """The statistics in file `path` if it is a DatasetFeatureStatisticsList
    (binary, text, or a one-record TFRecord of one), else None.

    Recognised by parsing, and only what can be one is parsed whole: binary
    starts with field 1 (`datasets`), text with `datasets`; the result must
    describe at least one feature. A data file (an .npz, TFRecords of
    tf.Example, images) is not one and is never read whole here.
    """
    import tensorflow as tf
    from google.protobuf import message, text_format
    gfile = tf.io.gfile
    if not gfile.exists(path) or gfile.isdir(path):
        return None
    records = _first_tfrecords(path)
    if records is not None:
        # TFDV writes statistics as TFRecord with one record; more is data.
        candidates = [("binary", records[0])] if len(records) == 1 else []
    else:
        with gfile.GFile(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
        binary, text = head[:1] == b"\x0a", _looks_like_text_statistics(head)
        data = b""
        if binary or text:
            with gfile.GFile(path, "rb") as handle:
                data = handle.read()
        candidates = [("binary", data)] * binary + [("text", data)] * text
    for form, data in candidates:
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        try:
            if form == "binary":
                stats.ParseFromString(data)
            else:
                text_format.Parse(data.decode("utf-8"), stats)
        except (message.DecodeError, text_format.ParseError, UnicodeDecodeError):
            continue
        if _has_features(stats):
            return stats
    return None


def _statistics_folder_file(folder: str) -> Optional[str]:
    """The statistics file a TFX statistics folder is compared by; None when the
    folder is not one (a folder holding FeatureStats.pb itself is one split)."""
    import tensorflow as tf

    from imgpipe.components.validation_gate import baselines
    splits = baselines.split_statistics_files(folder)
    if STATISTICS_SPLIT in splits:
        return splits[STATISTICS_SPLIT]
    if len(splits) == 1:
        return next(iter(splits.values()))
    if splits:
        raise InputError(f"{folder}: a TFX statistics folder without a Split-{STATISTICS_SPLIT}; "
                         f"it has {', '.join(f'Split-{s}' for s in sorted(splits))} — pass one "
                         f"split's {baselines.STATS_FILE}")
    single = os.path.join(folder, baselines.STATS_FILE)
    return single if tf.io.gfile.exists(single) and not tf.io.gfile.isdir(single) else None


def _statistics_at(path: str) -> Optional[Baseline]:
    """`path` as statistics: a TFX statistics folder or a statistics file; None
    when it is something else. A TFX statistics folder whose file is not
    statistics is an error, not data."""
    import tensorflow as tf
    if tf.io.gfile.isdir(path):
        stats_file = _statistics_folder_file(path)
        if stats_file is None:
            return None
        stats = read_statistics_file(stats_file)
        if stats is None:
            raise InputError(f"{stats_file}: not a TFDV statistics file "
                             "(no DatasetFeatureStatisticsList describing any feature)")
        split = os.path.basename(os.path.dirname(stats_file))
        where = split if split.startswith("Split-") else os.path.basename(stats_file)
        return Baseline(stats, "TFX statistics folder", f"TFX statistics folder ({where})")
    stats = read_statistics_file(path)
    return Baseline(stats, "statistics file", "TFDV statistics file") if stats is not None else None


def load_statistics_file(path: str) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
    """A statistics file or a TFX statistics folder (its train split), local or
    any tf.io.gfile location (a cluster run's gs:// artifacts); None when `path`
    is neither (data, say)."""
    found = _statistics_at(path)
    return found.statistics if found else None


def _what_is_at(path: str) -> str:
    import tensorflow as tf
    gfile = tf.io.gfile
    if gfile.isdir(path):
        entries = sorted(e.rstrip("/") for e in gfile.listdir(path))
        shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
        return f"a folder of {len(entries)} entries ({shown})" if entries else "an empty folder"
    if gfile.exists(path):
        size = gfile.stat(path).length
        return (f"a file of {size:,} bytes, not a DatasetFeatureStatisticsList describing any feature"
                if size else "an empty file")
    return f"a pattern matching {len(gfile.glob(path))} files"


def load_baseline(path: str, schema: Optional[schema_pb2.Schema], *, height: int, width: int,
                  channels: int, classes: Sequence[str] = (),
                  max_image_pixels: int = image_files.DEFAULT_MAX_IMAGE_PIXELS,
                  policies: Optional[ImageSpec] = None) -> Baseline:
    """What drift is measured against, decided by what `path` is: a TFX
    statistics folder (Split-*/FeatureStats.pb) or a statistics file is used as
    it is; anything else is loaded as data exactly like a source (same loader,
    image spec and schema) and its statistics computed, after which the data
    is let go. Neither: InputError naming the path, what is accepted and what
    is there.
    """
    import tensorflow as tf
    found = _statistics_at(path)
    if found is not None:
        return found
    problem = (f"baseline {path}: neither readable data nor statistics.\n"
               f"  expected one of: {'; '.join(BASELINE_KINDS)}\n  got: ")
    if not tf.io.gfile.exists(path) and not any(ch in path for ch in "*?["):
        raise InputError(problem + "nothing (no such file or folder)")
    try:
        loaded = load_source(path, height=height, width=width, channels=channels,
                             classes=classes, max_image_pixels=max_image_pixels, policies=policies)
        [stats] = statistics_of(loaded.batches, schema)   # read here, a batch at a time
    except InputError as error:
        reason = str(error)
        if reason.startswith(f"{path}: "):
            reason = reason[len(path) + 2:]
        raise InputError(problem + f"{_what_is_at(path)}; read as data: {reason}") from None
    return Baseline(stats, loaded.format, f"{loaded.format} data")


def validate(statistics_list: statistics_pb2.DatasetFeatureStatisticsList,
             schema: schema_pb2.Schema, environment: str,
             baseline: Optional[statistics_pb2.DatasetFeatureStatisticsList] = None,
             split: str = "") -> checks.Verdict:
    import tensorflow_data_validation as tfdv
    anomalies = tfdv.validate_statistics(statistics_list, schema, environment=environment,
                                         previous_statistics=baseline)
    return checks.judge(anomalies, statistics_list, schema, environment, split=split)
