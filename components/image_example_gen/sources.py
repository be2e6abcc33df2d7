"""Where the data is and how it is laid out; pure logic, no Beam.

Three source kinds:
  folders   <root>/<class>/<image>, or split folders <root>/<split>/<class>/<image>
            (train, val|validation|valid, test|eval; any subset with train, any case)
  npz       an .npz with x (N, H, W[, C]) and optional y (N,) or (N, 1), the
            layout of keras.datasets.*.load_data(); optional class_names
  tfrecord  TFRecord files of tf.Example (plain or gzip)

A source path may contain `{SPAN}` (TFX's span pattern) so that each data drop
is ingested as its own span.
"""
from __future__ import annotations

import dataclasses
import os
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np

FOLDERS = "folders"
NPZ = "npz"
TFRECORD = "tfrecord"
FORMATS = (FOLDERS, NPZ, TFRECORD)

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfrecord.gz", ".tfrecords.gz", ".tfrec", ".gz")
# Folder names (any case) that turn a source into predefined splits, and the
# split each becomes: `validation` is for early stopping, `eval` for the
# Evaluator (TFX's convention).
SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation",
                 "valid": "validation", "test": "eval", "eval": "eval"}
SPLIT_ORDER = ("train", "validation", "eval")
LAYOUTS = ("the folder layouts read: class folders <root>/<class>/<images>, or split folders "
           "<root>/train/<class>/<images> with any of val|validation|valid and test|eval "
           "beside train (any case)")
SPAN_TOKEN = "{SPAN}"


class SourceError(ValueError):
    """The source as a whole cannot be ingested."""


@dataclasses.dataclass(frozen=True)
class SourceLayout:
    format: str
    input_base: str
    # Input split name -> file pattern relative to input_base. One entry named
    # "single_split" means: split by hash into the configured ratios.
    split_patterns: Dict[str, str]

    @property
    def has_predefined_splits(self) -> bool:
        return list(self.split_patterns) != ["single_split"]


def _gfile():
    import tensorflow as tf  # tf.io.gfile reads local paths and gs:// alike.
    return tf.io.gfile


def _split_base(source: str) -> Tuple[str, str]:
    """Splits a path at the last directory before the first `{SPAN}`."""
    source = source.rstrip("/")
    if SPAN_TOKEN not in source:
        return source, ""
    head = source[:source.index(SPAN_TOKEN)]
    base = head.rsplit("/", 1)[0] if "/" in head else "."
    return base, source[len(base):].lstrip("/")


def _example_path(source: str) -> str:
    """A concrete path for a span pattern, to look at the layout."""
    if SPAN_TOKEN not in source:
        return source
    matches = sorted(_gfile().glob(source.replace(SPAN_TOKEN, "*")))
    if not matches:
        raise SourceError(f"no data matches the span pattern {source!r}")
    return matches[-1]


def detect_format(source: str) -> str:
    path = _example_path(source)
    lowered = path.lower()
    if lowered.endswith(".npz"):
        return NPZ
    if lowered.endswith(TFRECORD_SUFFIXES) or any(ch in os.path.basename(path) for ch in "*?["):
        return TFRECORD
    gfile = _gfile()
    if not gfile.exists(path):
        raise SourceError(f"data source {path!r} does not exist")
    if not gfile.isdir(path):
        raise SourceError(f"data source {path!r}: cannot tell its format; expected a folder of "
                          "class folders, an .npz file or TFRecord files (*.tfrecord, *.gz)")
    entries = gfile.listdir(path)
    if entries and all(e.rstrip("/").lower().endswith(TFRECORD_SUFFIXES) for e in entries
                       if not e.startswith(".")):
        return TFRECORD
    return FOLDERS


def discover_layout(source: str, source_format: str = "auto") -> SourceLayout:
    """Chooses input_base and split patterns for TFX's FileBasedExampleGen."""
    source_format = detect_format(source) if source_format == "auto" else source_format
    if source_format not in FORMATS:
        raise SourceError(f"data.format must be one of auto, {', '.join(FORMATS)}; got {source_format!r}")
    base, rel = _split_base(source)
    gfile = _gfile()
    if source_format == FOLDERS:
        concrete = _example_path(source)
        if not gfile.isdir(concrete):
            raise SourceError(f"data source {concrete!r} is not a folder of class folders")
        prefix = f"{rel}/" if rel else ""
        subdirs = {e.rstrip("/") for e in gfile.listdir(concrete)
                   if gfile.isdir(os.path.join(concrete, e))}
        patterns = split_folder_patterns(concrete, subdirs, prefix)
        return SourceLayout(FOLDERS, base, patterns or {"single_split": f"{prefix}*/*"})
    if source_format == NPZ:
        if not rel:
            base, rel = os.path.dirname(source) or ".", os.path.basename(source)
        return SourceLayout(NPZ, base, {"single_split": rel})
    # TFRecord: a directory means every record file in it.
    concrete = _example_path(source)
    if not rel:
        if gfile.isdir(concrete):
            return SourceLayout(TFRECORD, source, {"single_split": "*"})
        base, rel = os.path.dirname(source) or ".", os.path.basename(source)
    elif gfile.isdir(concrete):
        rel = f"{rel}/*"
    return SourceLayout(TFRECORD, base, {"single_split": rel})


def split_folder_patterns(root: str, subdirs: set, prefix: str = "") -> Optional[Dict[str, str]]:
    """Split name -> `<folder>/*/*` when `root` holds split folders, else None."""
    folders: Dict[str, List[str]] = {}
    for name in sorted(subdirs):
        if name.lower() in SPLIT_FOLDERS:
            folders.setdefault(SPLIT_FOLDERS[name.lower()], []).append(name)
    if not folders:
        return None
    for split, names in folders.items():
        if len(names) > 1:
            raise SourceError(f"data source {root!r}: folders {names} are all the {split} split; "
                              "keep one")
    found = sorted(name for names in folders.values() for name in names)
    if "train" not in folders:
        raise SourceError(f"data source {root!r} has split folders {found} but no train folder; "
                          f"{LAYOUTS}")
    others = sorted(subdirs - set(found))
    if others:
        raise SourceError(f"data source {root!r} has split folders {found} and also other "
                          f"folders {others}; use one layout ({LAYOUTS})")
    return {split: f"{prefix}{folders[split][0]}/*/*" for split in SPLIT_ORDER if split in folders}


def split_routes(folder_splits: List[str], configured: Dict[str, float],
                 total_buckets: int) -> Dict[str, Dict[str, int]]:
    """Input split -> {output split: hash buckets}. A split folder feeds its own
    split; configured splits without a folder are carved from train by hash, in
    their configured proportions to train."""
    routes = {split: {split: 1} for split in folder_splits}
    missing = [split for split in configured if split not in folder_splits]
    if missing:
        shares = {split: configured[split] for split in ["train", *missing]}
        routes["train"] = {split: max(1, round(total_buckets * share / sum(shares.values())))
                           for split, share in shares.items()}
    return routes


def output_splits(routes: Dict[str, Dict[str, int]]) -> List[str]:
    """The splits written, train, validation and eval first."""
    names = {split for targets in routes.values() for split in targets}
    return [s for s in SPLIT_ORDER if s in names] + sorted(names - set(SPLIT_ORDER))


def source_as_read(source: str, compiled_base: str, input_base: str) -> str:
    """The configured source, under the folder a run actually read.

    A compiled pipeline's `data_root` parameter can move input_base away
    from the folder the source was compiled with; reports name what was read.
    """
    if not compiled_base or input_base == compiled_base:
        return source
    compiled, actual = compiled_base.rstrip("/"), input_base.rstrip("/")
    if source == compiled or source.startswith(compiled + "/"):
        return actual + source[len(compiled):]
    return input_base


def class_root_for(input_base: str, pattern: str) -> str:
    """The folder holding class folders, for a resolved `<dir>/*/*` pattern."""
    if not pattern.endswith("*/*"):
        raise SourceError(f"unexpected folder pattern {pattern!r}")
    rel = pattern[:-3].rstrip("/")
    return os.path.join(input_base, rel) if rel else input_base


@dataclasses.dataclass
class ClassFolders:
    class_names: List[str]      # index = label id
    unknown: List[str]          # folders not in the configured classes
    empty: List[str]            # class folder paths without any file
    ignored: List[str]          # non-folder entries beside the class folders
    # Entries inside class folders that Beam's file matching would skip
    # silently: (path, reason, kind) with kind "bad" or "ignored".
    skipped: List[Tuple[str, str, str]] = dataclasses.field(default_factory=list)


def _unlistable_entries(class_dir: str) -> List[Tuple[str, str, str]]:
    """Nested folders and broken links inside a class folder.

    Beam's match lists regular files only, so these would vanish without a
    trace; they are found here and reported instead.
    """
    found = []
    if "://" in class_dir:
        # Object stores have neither links nor real folders; "folders" show up
        # in listings with a trailing slash.
        for entry in _gfile().listdir(class_dir):
            if entry.endswith("/"):
                found.append((os.path.join(class_dir, entry.rstrip("/")),
                              "a folder inside a class folder (nested folders are not read)",
                              "ignored"))
        return found
    with os.scandir(class_dir) as entries:
        for entry in entries:
            if entry.is_dir():
                found.append((entry.path, "a folder inside a class folder "
                              "(nested folders are not read)", "ignored"))
            elif entry.is_symlink() and not os.path.exists(entry.path):
                found.append((entry.path, "unreadable (broken symbolic link)", "bad"))
            elif not entry.is_file():
                found.append((entry.path, "unreadable (not a regular file)", "bad"))
    return found


def scan_class_folders(class_roots: List[str], configured: List[str]) -> ClassFolders:
    """Lists class folders under each split root and assigns label ids.

    Configured classes keep their order (label = index). Folders not in the
    configuration get ids after them, so validation sees a label outside the
    domain instead of the images vanishing.
    """
    gfile = _gfile()
    per_root: Dict[str, set] = {}
    empty, ignored, skipped = [], [], []
    for root in class_roots:
        if not gfile.isdir(root):
            raise SourceError(f"data source {root!r} does not exist or is not a folder")
        per_root[root] = set()
        for entry in sorted(gfile.listdir(root)):
            name = entry.rstrip("/")
            path = os.path.join(root, name)
            if not gfile.isdir(path):
                ignored.append(path)
                continue
            per_root[root].add(name)
            if not gfile.listdir(path):
                empty.append(path)
            skipped.extend(_unlistable_entries(path))
    found = set().union(*per_root.values())
    if not found:
        raise SourceError(f"no class folders in {', '.join(class_roots)}; {LAYOUTS}")
    check_classes_agree(per_root)
    if configured:
        unknown = sorted(found - set(configured))
        names = list(configured) + unknown
    else:
        unknown = []
        names = sorted(found)
    return ClassFolders(class_names=names, unknown=unknown, empty=empty, ignored=ignored,
                        skipped=sorted(skipped))


def check_classes_agree(classes_by_root: Dict[str, set]) -> None:
    """Every split folder holds the same class folders; a class missing from
    one is named (the model would never be trained or evaluated on it)."""
    every = set().union(*classes_by_root.values())
    gaps = [f"{root} has no {', '.join(sorted(every - names))}"
            for root, names in classes_by_root.items() if every - names]
    if gaps:
        raise SourceError("the split folders disagree on the classes: " + "; ".join(gaps)
                          + "; give every split a folder for every class")


@dataclasses.dataclass(frozen=True)
class NpyMember:
    name: str
    shape: Tuple[int, ...]
    dtype: np.dtype
    data_offset: int            # offset of the first element inside the member

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


class NpzReader:
    """Reads row ranges of the arrays in an .npz without loading them whole.

    np.load on an .npz decompresses each array completely; this reads only the
    rows asked for, seeking inside the zip member (cheap for np.savez files,
    a forward decompression for np.savez_compressed ones).
    """

    def __init__(self, path: str, opener=None):
        self.path = path
        self._opener = opener or (lambda p: _gfile().GFile(p, "rb"))
        self._file = self._opener(path)
        try:
            self._zip = zipfile.ZipFile(self._file)
        except Exception as error:  # BadZipFile, OSError, or gfile seek errors on non-zips
            self._file.close()
            raise SourceError(f"{path}: not a readable .npz file ({error})") from None
        self.members: Dict[str, NpyMember] = {}
        for info in self._zip.infolist():
            if info.filename.endswith(".npy"):
                member = self._read_header(info.filename)
                self.members[member.name] = member

    def _read_header(self, filename: str) -> NpyMember:
        with self._zip.open(filename) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(handle)
            offset = handle.tell()
        name = filename[:-4]
        if fortran and len(shape) > 1:
            raise SourceError(f"{self.path}: array {name!r} is stored in Fortran order; "
                              "save it with np.ascontiguousarray first")
        return NpyMember(name, tuple(shape), dtype, offset)

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        member = self.members[name]
        if member.dtype.hasobject:
            raise SourceError(f"{self.path}: array {name!r} holds Python objects (pickled); "
                              "save numbers or fixed-width strings")
        count = max(0, min(stop, member.shape[0]) - start)
        with self._zip.open(f"{name}.npy") as handle:
            handle.seek(member.data_offset + start * member.row_bytes)
            raw = handle.read(count * member.row_bytes)
        if len(raw) != count * member.row_bytes:
            raise SourceError(f"{self.path}: array {name!r} is truncated at row {start}")
        return np.frombuffer(raw, dtype=member.dtype).reshape((count,) + member.shape[1:])

    def read_all(self, name: str) -> np.ndarray:
        return self.read_rows(name, 0, self.members[name].shape[0])

    def close(self) -> None:
        self._zip.close()
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NpzArrayWriter:
    """Writes an .npz whose `name` array arrives a batch of rows at a time:
    rows go to a temporary .npy on disk, then into the zip with the final
    row count, so memory holds one batch. Other (small) arrays are added
    whole. The result is what np.savez writes; np.load reads it."""

    def __init__(self, path: str, name: str):
        import tempfile
        self.path, self.name, self.rows, self._row_shape, self._dtype = path, name, 0, None, None
        self._spool = tempfile.TemporaryFile()
        self._small: Dict[str, np.ndarray] = {}

    def add_rows(self, rows: np.ndarray) -> None:
        if self._row_shape is None:
            self._row_shape, self._dtype = rows.shape[1:], rows.dtype
        self._spool.write(np.ascontiguousarray(rows, dtype=self._dtype).tobytes())
        self.rows += len(rows)

    @property
    def dtype(self) -> Optional[np.dtype]:
        return self._dtype

    def add_array(self, name: str, array: np.ndarray) -> None:
        self._small[name] = np.asarray(array)

    def close(self) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(self._dtype), "fortran_order": False,
                  "shape": (self.rows, *self._row_shape)}
        self._spool.seek(0)
        with zipfile.ZipFile(self.path, "w", allowZip64=True) as archive:
            with archive.open(f"{self.name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_2_0(member, header)
                while chunk := self._spool.read(1 << 24):
                    member.write(chunk)
            for name, array in self._small.items():
                with archive.open(f"{name}.npy", "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        self._spool.close()


@dataclasses.dataclass(frozen=True)
class NpzLayout:
    count: int
    image_shape: Tuple[int, ...]
    dtype: str
    has_labels: bool
    class_names: Optional[List[str]]


def inspect_npz(path: str) -> NpzLayout:
    """Checks an .npz's arrays before ingestion; raises SourceError."""
    with NpzReader(path) as reader:
        if "x" not in reader.members:
            raise SourceError(f"{path}: no array named 'x' (found {sorted(reader.members)}); "
                              "expected x (N, H, W[, C]) and y (N,)")
        x = reader.members["x"]
        if len(x.shape) not in (3, 4):
            raise SourceError(f"{path}: x has shape {x.shape}; expected (N, H, W) or (N, H, W, C)")
        if x.shape[0] == 0:
            raise SourceError(f"{path}: x holds no images")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise SourceError(f"{path}: x has dtype {x.dtype}; expected integer or float pixels")
        has_labels = "y" in reader.members
        if has_labels:
            y = reader.members["y"]
            if y.shape[0] != x.shape[0] or not (len(y.shape) == 1 or y.shape[1:] == (1,)):
                raise SourceError(f"{path}: y has shape {y.shape}; expected ({x.shape[0]},) "
                                  f"or ({x.shape[0]}, 1) to match x")
            if not np.issubdtype(y.dtype, np.integer):
                raise SourceError(f"{path}: y has dtype {y.dtype}; expected integer labels")
        class_names = None
        if "class_names" in reader.members:
            class_names = [str(v) for v in reader.read_all("class_names").tolist()]
        image_shape = x.shape[1:] if len(x.shape) == 4 else x.shape[1:] + (1,)
        return NpzLayout(x.shape[0], tuple(image_shape), str(x.dtype), has_labels, class_names)


def row_ranges(count: int, chunk: int) -> List[Tuple[int, int]]:
    return [(start, min(start + chunk, count)) for start in range(0, count, chunk)]
