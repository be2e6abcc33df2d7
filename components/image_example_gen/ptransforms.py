"""Beam transforms that turn each source kind into serialized tf.Examples.

Every transform returns a tagged result:
  records     one list per batch of (source_id, label or -1, serialized tf.Example)
  quarantine  {"path", "reason", "kind"}: kind "bad" (could not become an
              example) or "ignored" (not an image file, never a candidate)
  events      one {conversion name: count} dict per batch
Files are read with Beam's FileSystems (local, gs://, ...) and processed in
batches, so nothing holds more than a batch of images at a time. Elements
travel in batches until they are assigned to splits: per-element steps are
the costly part of a Beam pipeline.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import zlib
from collections import Counter
from typing import Dict, List, Optional

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio as beam_fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.io.tfrecordio import _TFRecordUtil  # TFRecord framing (length, masked CRCs)
from apache_beam.options.value_provider import StaticValueProvider

from imgpipe.components import progress
from imgpipe.components.image_example_gen import encoding, sources
from imgpipe.contract import FEATURES, ImageSpec, image_files, image_ops

RECORDS = "records"
QUARANTINE = "quarantine"
EVENTS = "events"
NO_LABEL = -1
BAD = "bad"
IGNORED = "ignored"


@dataclasses.dataclass(frozen=True)
class IngestSettings:
    image: ImageSpec
    class_ids: Dict[str, int]
    max_image_pixels: int = image_files.DEFAULT_MAX_IMAGE_PIXELS
    input_base: str = ""


def _relative(path: str, base: str) -> str:
    if base and path.startswith(base.rstrip("/") + "/"):
        return path[len(base.rstrip("/")) + 1:]
    return path


def _bad(path: str, reason: str, kind: str = BAD):
    return beam.pvalue.TaggedOutput(QUARANTINE, {"path": path, "reason": reason, "kind": kind})


def _side_outputs(failures, conversions):
    for key, reason in failures:
        yield _bad(key, reason)
    if conversions:
        yield beam.pvalue.TaggedOutput(EVENTS, dict(conversions))


class _DecodesImages(beam.DoFn):
    """Shared by the folder and TFRecord readers: decode a batch of bytes."""

    def __init__(self, settings: IngestSettings):
        self._settings = settings
        self._decoder = None
        self._decoded = None

    def setup(self):
        s = self._settings
        self._decoder = image_ops.make_batch_decoder(s.image)
        # Per worker: a local run has one, so these are the run's totals.
        self._decoded = progress.Counter("ImageExampleGen: {count:,} images decoded")

    def _decode(self, items: List[tuple]):
        """(key, bytes, info) items -> (decoded, failures, conversion counts)."""
        s = self._settings
        self._decoded.add(len(items))
        return image_ops.decode_items(self._decoder, items, s.image)


class DecodeImageFiles(_DecodesImages):
    """A batch of image file paths -> tf.Examples in the encoded layout: the
    files as they arrived, checked by decoding them with the serving ops."""

    def process(self, paths: List[str]):
        s = self._settings
        items = []
        for path in paths:
            if not image_files.is_candidate_image(path):
                yield _bad(path, "not an image file (expected .jpg, .jpeg or .png)", IGNORED)
                continue
            try:
                with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                    data = f.read()
            except Exception as error:  # permissions, I/O, vanished file
                yield _bad(path, f"unreadable ({type(error).__name__}: {error})")
                continue
            try:
                info = image_files.probe_image(data, s.max_image_pixels)
            except image_files.BadInput as error:
                yield _bad(path, str(error))
                continue
            items.append((path, data, info))

        decoded, failures, events = self._decode(items)
        yield from _side_outputs(failures, events)
        if not decoded:
            return
        labels = [s.class_ids[os.path.basename(os.path.dirname(d.key))] for d in decoded]
        source_ids = [_relative(d.key, s.input_base) for d in decoded]
        serialized = encoding.encode_files(decoded, labels, source_ids, s.image)
        yield list(zip(source_ids, labels, serialized))


def _fingerprint(text: str) -> int:
    import farmhash  # pyfarmhash, the hash TFX's own ExampleGen partitions with.
    return farmhash.fingerprint64(text)


@beam.ptransform_fn
def ShuffleSmall(pcoll, key=_fingerprint):
    """A deterministic shuffle of small elements (file paths, row ranges).

    Class folders list files class by class; shuffling the paths before
    decoding makes the written files mixed without shuffling the examples
    themselves (TFX's own writer reshuffles the examples, which makes a
    DirectRunner hold the whole dataset in memory).
    """
    return (pcoll
            | "Gather" >> beam.combiners.ToList()
            | "Order" >> beam.FlatMap(lambda items: sorted(items, key=lambda i: key(str(i))))
            # Spread the (small) work items over workers before the expensive decode.
            | "Distribute" >> beam.Reshuffle())


@beam.ptransform_fn
def ImageFilesToRecords(pipeline, file_pattern: str, settings: IngestSettings):
    return (pipeline
            | "Pattern" >> beam.Create([file_pattern])
            | "Match" >> beam_fileio.MatchAll(
                beam_fileio.EmptyMatchTreatment.ALLOW)
            | "Path" >> beam.Map(lambda metadata: metadata.path)
            | "Shuffle" >> ShuffleSmall()
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
            | "Decode" >> beam.ParDo(DecodeImageFiles(settings)).with_outputs(
                QUARANTINE, EVENTS, main=RECORDS))


class ReadNpzRows(beam.DoFn):
    """A row range of an .npz -> tf.Examples with the array's own dtype."""

    def __init__(self, path: str, source_id: str, has_labels: bool):
        self._path = path
        self._source_id = source_id
        self._has_labels = has_labels

    def process(self, row_range):
        start, stop = row_range
        reader = sources.NpzReader(self._path, opener=lambda p: FileSystems.open(
            p, compression_type=CompressionTypes.UNCOMPRESSED))
        with reader:
            x = encoding.as_nhwc(reader.read_rows("x", start, stop), self._path)
            labels = None
            if self._has_labels:
                labels = encoding.labels_from_array(
                    reader.read_rows("y", start, stop), len(x), self._path)
        source_ids = [f"{self._source_id}[{i}]" for i in range(start, stop)]
        serialized = encoding.encode_examples(x, labels, source_ids, str(x.dtype))
        label_list = labels.tolist() if labels is not None else [NO_LABEL] * len(serialized)
        yield list(zip(source_ids, label_list, serialized))


@beam.ptransform_fn
def NpzToRecords(pipeline, path: str, source_id: str, count: int, has_labels: bool,
                 rows_per_read: int = 1024):
    return (pipeline
            | "Ranges" >> beam.Create(sources.row_ranges(count, rows_per_read))
            | "Shuffle" >> ShuffleSmall()
            | "Read" >> beam.ParDo(ReadNpzRows(path, source_id, has_labels)).with_outputs(
                QUARANTINE, EVENTS, main=RECORDS))


class ParseTFRecordExamples(_DecodesImages):
    """Records of tf.Example, kept as they are.

    Pixels stored as int64/float lists pass through unchanged (validation sees
    the truth). An `image` stored as encoded bytes is decoded with the shared
    image ops, like an image file.
    """

    def process(self, batch: List[tuple]):
        import tensorflow as tf
        s = self._settings
        to_decode, labels_by_path, passed = [], {}, []
        for filename, record in batch:
            digest = hashlib.sha1(record).hexdigest()[:16]
            source_id = f"{_relative(filename, s.input_base)}#{digest}"
            try:
                example = tf.train.Example.FromString(record)
            except Exception:  # DecodeError from the protobuf runtime
                yield _bad(source_id, "record is not a serialized tf.Example")
                continue
            features = example.features.feature
            label = NO_LABEL
            if FEATURES.label in features:
                values = features[FEATURES.label].int64_list.value
                if len(values) == 1:
                    label = int(values[0])
            image = features.get(FEATURES.image)
            if image is not None and image.WhichOneof("kind") == "bytes_list":
                if len(image.bytes_list.value) != 1:
                    yield _bad(source_id, "image bytes feature must hold exactly one encoded image")
                    continue
                data = image.bytes_list.value[0]
                try:
                    info = image_files.probe_image(data, s.max_image_pixels)
                except image_files.BadInput as error:
                    yield _bad(source_id, str(error))
                    continue
                to_decode.append((source_id, data, info))
                labels_by_path[source_id] = label
                continue
            if FEATURES.source_id not in features:
                features[FEATURES.source_id].bytes_list.value.append(source_id.encode())
            else:
                source_id = features[FEATURES.source_id].bytes_list.value[0].decode(
                    "utf-8", "replace")
            passed.append((source_id, label, example.SerializeToString()))

        decoded, failures, events = self._decode(to_decode)
        yield from _side_outputs(failures, events)
        passed.extend(_encode_decoded(decoded, labels_by_path))
        if passed:
            yield passed


def _encode_decoded(decoded: List[image_ops.Decoded], labels_by_path: Dict[str, int]) -> List[tuple]:
    """Decoded records -> (source_id, label, serialized tf.Example), pixel layout
    (records are a pixel source: one dataset, one layout)."""
    good_ids = [d.key for d in decoded]
    good_pixels = [d.pixels for d in decoded]
    labels = [labels_by_path[source_id] for source_id in good_ids]
    out = []
    # Records with and without a label are encoded apart: a missing label
    # stays missing (validation reports it) rather than becoming a value.
    for with_label in (True, False):
        chosen = [i for i, label in enumerate(labels) if (label != NO_LABEL) == with_label]
        if not chosen:
            continue
        serialized = encoding.encode_examples(
            np.stack([good_pixels[i] for i in chosen]),
            [labels[i] for i in chosen] if with_label else None,
            [good_ids[i] for i in chosen], "uint8")
        out.extend((good_ids[i], labels[i], record) for i, record in zip(chosen, serialized))
    return out


@beam.ptransform_fn
def TFRecordsToRecords(pipeline, file_pattern: str, settings: IngestSettings):
    return (pipeline
            | "Pattern" >> beam.Create([file_pattern])
            | "Read" >> beam.io.ReadAllFromTFRecord(with_filename=True)
            | "Batch" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
            | "Parse" >> beam.ParDo(ParseTFRecordExamples(settings)).with_outputs(
                QUARANTINE, EVENTS, main=RECORDS))


def split_index(source_id: str, bucket_bounds: List[int]) -> int:
    """Deterministic hash split on the source id (stable across runs and runners)."""
    bucket = _fingerprint(source_id) % bucket_bounds[-1]
    for index, bound in enumerate(bucket_bounds):
        if bucket < bound:
            return index
    raise AssertionError("unreachable")


COUNTS = "counts"


class AssignSplits(beam.DoFn):
    """Batches of records -> serialized examples tagged by split name.

    With `bucket_bounds` the split is a hash of the source id; without, every
    record goes to the single `split_names[0]` (predefined split folders).
    Also emits one {(split, label): count} dict per batch under COUNTS.
    """

    def __init__(self, split_names: List[str], bucket_bounds: Optional[List[int]] = None):
        self._names = split_names
        self._bounds = bucket_bounds

    def process(self, batch):
        counts = Counter()
        for source_id, label, record in batch:
            name = (self._names[split_index(source_id, self._bounds)] if self._bounds
                    else self._names[0])
            counts[(name, label)] += 1
            yield beam.pvalue.TaggedOutput(name, record)
        yield beam.pvalue.TaggedOutput(COUNTS, dict(counts))


def merge_counts(dicts) -> dict:
    """Sums count dicts; associative, so Beam may combine in any order."""
    total = Counter()
    for counts in dicts:
        total.update(counts)
    return dict(total)


# zlib levels: pixel examples at 1 (Beam's default 6 cost ~170 us per
# CIFAR-sized example, more than decoding it; 1 is ~2.3x faster at the same
# size); encoded image files at 0, stored (a JPEG does not compress: level 1
# spent 2 ms a photo to save 0.5%).
PIXELS_LEVEL = 1
ENCODED_LEVEL = 0


class GzipTFRecordSink(beam_fileio.FileSink):
    """TFRecord framing in a gzip stream at a chosen zlib level.

    Readers see an ordinary gzip TFRecord file, as TFX's `tfrecords_gzip`
    format promises, whatever the level.
    """

    def __init__(self, level: int = PIXELS_LEVEL):
        self._level = level

    def create_metadata(self, destination, full_file_name):
        # The sink compresses itself; Beam must not compress again.
        return beam_fileio.FileMetadata(mime_type="application/octet-stream",
                                        compression_type=CompressionTypes.UNCOMPRESSED)

    def open(self, fh):
        self._fh = fh
        self._buffer = io.BytesIO()
        self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)

    def write(self, record: bytes):
        _TFRecordUtil.write_record(self._buffer, record)
        if self._buffer.tell() >= 1 << 20:
            self._drain()

    def _drain(self):
        self._fh.write(self._compressor.compress(self._buffer.getvalue()))
        self._buffer = io.BytesIO()

    def flush(self):
        # Ends the gzip member; a later write starts a new one (readers accept
        # concatenated members). Beam calls flush only before closing.
        self._drain()
        self._fh.write(self._compressor.flush())
        self._compressor = zlib.compressobj(self._level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


@beam.ptransform_fn
def WriteExamples(records, split_uri: str, temp_dir: str, file_prefix: str = "data_tfrecord",
                  level: int = PIXELS_LEVEL):
    """Serialized examples -> `<split_uri>/<file_prefix>-*.gz`, streamed.

    Temporary files go to `temp_dir` (Beam leaves its temp folder behind, and
    readers glob everything in a split folder).
    """
    return records | "WriteFiles" >> beam_fileio.WriteToFiles(
        split_uri, file_naming=beam_fileio.default_file_naming(file_prefix, ".gz"),
        temp_directory=StaticValueProvider(str, temp_dir),
        sink=lambda destination: GzipTFRecordSink(level))
