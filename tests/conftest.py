"""Shared fixtures. Importing imgpipe before TensorFlow fixes TF_USE_LEGACY_KERAS for the run."""
import io
import os
import tarfile
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import imgpipe  # noqa: F401  (must precede TensorFlow)
from imgpipe import quickstart_data
from postgres_server import TemporaryPostgres

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = Path(os.environ.get("IMGPIPE_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
CIFAR_TARBALL = SHARED_DATASETS / "cifar10-train.tar.gz"


def shape_image(shape: str = "circle", seed: int = 0, size: int = 32) -> Image.Image:
    """A real drawn image (the quickstart generator), RGB."""
    return quickstart_data.draw_shape(shape, np.random.default_rng(seed), size=size)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def write_class_tree(root: Path, per_class: int = 6, classes=("circle", "square"),
                     size: int = 32) -> Path:
    for c_index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = quickstart_data.CLASSES[c_index % len(quickstart_data.CLASSES)]
            image = shape_image(shape, seed=100 * c_index + i, size=size)
            suffix, fmt = (".png", "PNG") if i % 2 == 0 else (".jpg", "JPEG")
            (root / name / f"{i:03d}{suffix}").write_bytes(encode(image, fmt))
    return root


def shapes_tree(root: Path, per_class: int = 60, seed: int = 0, transform=None,
                folders=None, suffixes=(".png",)) -> Path:
    """Class folders of the quickstart shapes (real PNG/JPEG files).

    `folders` maps folder name -> shape drawn into it (default: each shape
    into its own folder); `transform` edits every image before it is saved.
    """
    rng = np.random.default_rng(seed)
    folders = folders or {shape: shape for shape in quickstart_data.CLASSES}
    for folder, shape in folders.items():
        (root / folder).mkdir(parents=True)
        for i in range(per_class):
            image = quickstart_data.draw_shape(shape, rng)
            if transform:
                image = transform(image)
            image.save(root / folder / f"{i:03d}{suffixes[i % len(suffixes)]}")
    return root


# Sizes photos come in: landscape, portrait, square, odd.
PHOTO_SIZES = ((320, 240), (240, 320), (300, 300), (500, 333), (257, 193))


def photo(seed: int, size=(320, 240), tint=(1.0, 1.0, 1.0)) -> Image.Image:
    """A photo-like RGB image: smooth colour fields (a tiny random image
    upsampled) with fine noise, so JPEG sizes are those of real photos."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    smooth = np.asarray(small.resize(size, Image.BICUBIC), dtype=np.float32)
    noisy = smooth * np.array(tint, np.float32) + rng.normal(0, 6, smooth.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def photo_tree(root: Path, per_class: int, classes=("ants", "bees"), seed: int = 0) -> Path:
    """Class folders of JPEG photos of mixed sizes."""
    for c_index, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = photo(seed + 1000 * c_index + i, PHOTO_SIZES[i % len(PHOTO_SIZES)])
            image.save(root / name / f"{i:04d}.jpg", "JPEG", quality=85)
    return root


@pytest.fixture
def class_tree(tmp_path):
    return write_class_tree(tmp_path / "images")


@pytest.fixture(scope="session")
def cifar_subset(tmp_path_factory):
    """The 500-image CIFAR-10 subset (50 per class) from ../shared/datasets."""
    if not CIFAR_TARBALL.exists():
        pytest.skip(f"{CIFAR_TARBALL} is not present on this machine")
    target = tmp_path_factory.mktemp("cifar10")
    with tarfile.open(CIFAR_TARBALL) as archive:
        members = [m for m in archive.getmembers()
                   if m.isfile() and m.name.startswith("train/")
                   and os.path.basename(m.name)[:3] in {f"00{d}" for d in "01234"}]
        archive.extractall(target, members=members)
    return target / "train"


# -- PostgreSQL: tests that use it are marked `postgres` (`make test-fast` deselects them) --

POSTGRES_FIXTURES = {"postgres_server", "postgres_url"}
NO_POSTGRES_ENV = "IMGPIPE_TESTS_NO_POSTGRES"  # set by `scripts/run-tests.sh --fast`


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """A test that takes a PostgreSQL fixture as an argument is a `postgres` test,
    marked or not. (One that reaches it through request.getfixturevalue, as the
    parametrized SQLite/PostgreSQL backends do, must be marked by hand:
    `postgres_url` fails it otherwise.)"""
    for item in items:
        if POSTGRES_FIXTURES & set(getattr(item, "fixturenames", ())) \
                and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for the session (needs scripts/ensure-postgres.sh).

    Never skips: without the server binaries the tests that need it fail."""
    if os.environ.get(NO_POSTGRES_ENV):
        pytest.fail(f"{NO_POSTGRES_ENV} is set (make test-fast): this run starts no PostgreSQL; "
                    "a test that needs it must be marked `postgres`", pytrace=False)
    with TemporaryPostgres() as server:
        yield server


@pytest.fixture
def postgres_url(request):
    """SQLAlchemy URL of a fresh, empty database for this test."""
    if request.node.get_closest_marker("postgres") is None:
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL but is not marked `postgres`: mark it "
                    "(a parametrized backend: pytest.param(\"postgresql\", marks=pytest.mark.postgres))",
                    pytrace=False)
    server = request.getfixturevalue("postgres_server")
    return server.create_database(f"test_{uuid.uuid4().hex[:16]}")
