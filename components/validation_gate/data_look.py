"""A look at the data: sample grid, label distribution, brightness and aspect charts, warnings.

Pure rendering over plain data; `look.py` feeds it the validated examples and
their TFDV statistics.
"""
from __future__ import annotations

import dataclasses
import html
import os
from typing import Dict, List, Tuple

import numpy as np

SAMPLES_PNG = "samples.png"
LABELS_PNG = "label_distribution.png"
BRIGHTNESS_PNG = "brightness.png"
ASPECT_PNG = "aspect_ratio.png"
INDEX_HTML = "index.html"


class SampleCollector:
    """Keeps the first `per_class` images of each class, in arrival order."""

    def __init__(self, class_names: List[str], per_class: int = 9) -> None:
        self.class_names = list(class_names)
        self.per_class = per_class
        self._kept: List[List[np.ndarray]] = [[] for _ in self.class_names]

    def add(self, label: int, pixels: np.ndarray) -> None:
        """Keeps `pixels` if its class still has room; labels outside the classes are ignored."""
        if 0 <= label < len(self._kept) and len(self._kept[label]) < self.per_class:
            # A copy: the caller may reuse its buffer for the next example.
            self._kept[label].append(np.array(pixels, copy=True))

    def full(self) -> bool:
        """True once every class has `per_class` images (the caller can stop offering)."""
        return all(len(kept) >= self.per_class for kept in self._kept)

    def samples(self) -> Dict[str, List[np.ndarray]]:
        """Class name -> the images kept for it, in arrival order."""
        return {name: list(kept) for name, kept in zip(self.class_names, self._kept)}


@dataclasses.dataclass
class Histogram:
    """Bins counted elsewhere (TFDV's statistics): edges [bins + 1], counts [bins]."""
    edges: np.ndarray
    counts: np.ndarray

    @property
    def total(self) -> int:
        """How many values were counted."""
        return int(np.sum(self.counts))


def _pyplot():
    """pyplot on the file-only backend (no display on workers or CI)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(figure, path: str) -> str:
    """Writes and closes `figure` (closing frees it: the executor may render many reports)."""
    plt = _pyplot()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _show_image(axes, pixels: np.ndarray) -> None:
    """Draws uint8 pixels unscaled; one channel is drawn grey, not with a colour map."""
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        axes.imshow(pixels, cmap="gray", vmin=0, vmax=255)
    else:
        axes.imshow(pixels)


def write_samples_grid(samples: Dict[str, List[np.ndarray]], path: str,
                       title: str = "Samples per class, as the model sees them") -> str:
    """One row per class, up to 9 images each; missing images leave blank cells."""
    plt = _pyplot()
    names = list(samples)
    columns = 9
    rows = max(1, len(names))
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(columns * 1.1 + 1.5, rows * 1.1 + 0.7))
    for cell in axes.flat:
        cell.set(xticks=[], yticks=[])
        cell.spines[:].set_visible(False)
    for row, name in enumerate(names):
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
        for column, pixels in enumerate(samples[name][:columns]):
            _show_image(axes[row, column], pixels)
    figure.suptitle(title)
    return _save(figure, path)


def write_label_distribution(counts: Dict[str, Dict[str, int]], path: str) -> str:
    """Grouped bars: classes along x, one bar per split."""
    plt = _pyplot()
    classes = list(dict.fromkeys(name for per_class in counts.values() for name in per_class))
    positions = np.arange(len(classes))
    width = 0.8 / max(1, len(counts))
    # Wide enough for every bar, but bounded: a thousand classes must not make a huge file.
    figure, axes = plt.subplots(figsize=(min(40.0, max(5.0, 0.3 * len(classes) * len(counts) + 2)), 4))
    for index, (split, per_class) in enumerate(counts.items()):
        offset = (index - (len(counts) - 1) / 2) * width
        axes.bar(positions + offset, [per_class.get(name, 0) for name in classes], width, label=split)
    axes.set_xticks(positions, classes, rotation=45, ha="right")
    axes.set_ylabel("examples")
    axes.set_title("Examples per class and split")
    if counts:  # legend() warns when there is nothing to list
        axes.legend()
    return _save(figure, path)


def write_histogram(histogram: Histogram, path: str, title: str, xlabel: str,
                    log_x: bool = False) -> str:
    """The histogram's bins as bars (edge-aligned, so log-spaced bins look even on a log axis)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.bar(histogram.edges[:-1], histogram.counts, width=np.diff(histogram.edges),
             align="edge", edgecolor="white")
    if log_x:  # base 2 puts the major ticks on ratios people read: 1:4, 1:2, 1, 2, 4
        from matplotlib.ticker import FormatStrFormatter
        axes.set_xscale("log", base=2)
        axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    axes.set_xlim(histogram.edges[0], histogram.edges[-1])
    axes.set_xlabel(xlabel)
    axes.set_ylabel("images")
    axes.set_title(f"{title} ({histogram.total} images)")
    return _save(figure, path)


def _imbalance_warning(train_counts: Dict[str, int], max_imbalance: float) -> List[str]:
    """The largest vs the smallest class, when the gap exceeds `max_imbalance` (ties by name)."""
    largest_name, largest = min(train_counts.items(), key=lambda item: (-item[1], item[0]))
    smallest_name, smallest = min(train_counts.items(), key=lambda item: (item[1], item[0]))
    if largest == 0 or largest <= max_imbalance * smallest:
        return []
    advice = "the model may favour the larger classes; rebalance or weight the classes"
    if smallest == 0:
        return [f"the smallest class {smallest_name!r} is empty while the largest class "
                f"{largest_name!r} has {largest} training images: {advice}"]
    return [f"classes are imbalanced: the largest class {largest_name!r} has {largest} training "
            f"images, the smallest {smallest_name!r} has {smallest} ({largest / smallest:.1f}x, "
            f"more than {max_imbalance:g}x): {advice}"]


def data_warnings(train_counts: Dict[str, int], min_per_class: int = 50,
                  max_imbalance: float = 10.0) -> List[str]:
    """Readable warnings about too-small classes and class imbalance (deterministic order)."""
    warnings = []
    few = sorted((count, name) for name, count in train_counts.items() if count < min_per_class)
    if few:
        listed = ", ".join(f"class {name!r} has {count} training images" for count, name in few)
        warnings.append(f"{listed} (fewer than {min_per_class}): too few to learn and evaluate "
                        "reliably; add images or merge classes")
    if train_counts:
        warnings += _imbalance_warning(train_counts, max_imbalance)
    return warnings


def _link(target: str, folder: str) -> str:
    """`target` relative to the page's folder, so the folder can be moved as a whole."""
    if "://" in target:  # a remote URI (gs://, s3://) is not on this filesystem
        return target
    try:
        return os.path.relpath(target, folder)
    except ValueError:  # another drive (Windows): no relative path exists
        return target


def _entries_html(entries: List[Tuple[str, str]], folder: str) -> str:
    """A section's entries: PNGs as captioned images, anything else as links."""
    if not entries:
        return "<p>(nothing recorded)</p>"
    items = []
    for label, target in entries:
        label_html, href = html.escape(label), html.escape(_link(target, folder))
        if target.lower().endswith(".png"):
            items.append(f'<li><figure><img src="{href}" alt="{label_html}">'
                         f"<figcaption>{label_html}</figcaption></figure></li>")
        else:
            items.append(f'<li><a href="{href}">{label_html}</a></li>')
    return "<ul>\n" + "\n".join(items) + "\n</ul>"


def write_index_html(path: str, title: str,
                     sections: List[Tuple[str, List[Tuple[str, str]]]]) -> str:
    """One page (no external assets) with a heading and, per section, its images and links."""
    folder = os.path.dirname(os.path.abspath(path))
    parts = ['<!DOCTYPE html>\n<html><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif} img{max-width:100%} ul{list-style:none}</style>",
             f"</head><body>\n<h1>{html.escape(title)}</h1>"]
    for section_title, entries in sections:
        parts += [f"<h2>{html.escape(section_title)}</h2>", _entries_html(entries, folder)]
    parts.append("</body></html>\n")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(parts))
    return path
