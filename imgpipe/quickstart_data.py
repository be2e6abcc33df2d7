"""The built-in quickstart dataset: coloured shapes, generated deterministically.

Four classes (circle, cross, square, triangle) of 32x32 images drawn with
Pillow from a fixed seed, written as a class-folder tree of PNG and JPEG
files. A few images are deliberately 48x48 or greyscale so that a run shows
ingestion's conversions at work. Small and easily learnable: the pipeline
runs in minutes and a small CNN separates the classes well.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "cross", "square", "triangle")
IMAGES_PER_CLASS = 250
SIZE = 32
# Bump when the drawing changes, so stale trees are regenerated.
VERSION = "3"


def _polygon(cx: float, cy: float, radius: float, sides: int, angle: float):
    return [(cx + radius * math.cos(angle + 2 * math.pi * k / sides),
             cy + radius * math.sin(angle + 2 * math.pi * k / sides)) for k in range(sides)]


def draw_shape(shape: str, rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """One image of `shape` with random colours, position, size and rotation."""
    # Light shapes on dark backgrounds or the reverse, in random colours: the
    # shape, not the colour, is what tells the classes apart.
    dark, light = rng.integers(0, 90, 3), rng.integers(165, 256, 3)
    background, foreground = (dark, light) if rng.random() < 0.5 else (light, dark)
    noise = rng.normal(0, 10, (size, size, 3))
    canvas = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    scale = size / SIZE
    radius = rng.uniform(9, 13) * scale
    margin = radius + 1
    cx, cy = rng.uniform(margin, size - margin, 2)
    angle = rng.uniform(0, 2 * math.pi)
    fill = tuple(int(v) for v in foreground)
    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "square":
        draw.polygon(_polygon(cx, cy, radius, 4, angle), fill=fill)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, radius, 3, angle), fill=fill)
    elif shape == "cross":
        arm = radius * 0.35
        for theta in (angle, angle + math.pi / 2):
            dx, dy = math.cos(theta), math.sin(theta)
            px, py = -dy * arm, dx * arm
            draw.polygon([(cx - dx * radius + px, cy - dy * radius + py),
                          (cx + dx * radius + px, cy + dy * radius + py),
                          (cx + dx * radius - px, cy + dy * radius - py),
                          (cx - dx * radius - px, cy - dy * radius - py)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return image


def generate(directory: os.PathLike, images_per_class: int = IMAGES_PER_CLASS,
             seed: int = 20261128) -> Path:
    """Writes <directory>/<class>/<nnnn>.png|jpg; same seed, same files."""
    directory = Path(directory)
    rng = np.random.default_rng(seed)
    for shape in CLASSES:
        (directory / shape).mkdir(parents=True, exist_ok=True)
        for index in range(images_per_class):
            odd_size = index % 25 == 24
            image = draw_shape(shape, rng, size=48 if odd_size else SIZE)
            if index % 30 == 29:
                image = image.convert("L")
            if index % 2:
                image.save(directory / shape / f"{index:04d}.jpg", "JPEG", quality=92)
            else:
                image.save(directory / shape / f"{index:04d}.png", "PNG")
    return directory


def ensure_quickstart(directory: os.PathLike) -> Path:
    """Generates the dataset once; later calls reuse it."""
    directory = Path(directory)
    # The marker sits beside the tree, not in it: the tree holds class folders only.
    marker = directory.parent / f".{directory.name}.version"
    if marker.exists() and marker.read_text().strip() == VERSION:
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".quickstart-", dir=directory.parent))
    try:
        generate(staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
        marker.write_text(VERSION + "\n")
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return directory
