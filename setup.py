"""Packaging: each top-level room X/ of the repository installs as `imgpipe.X`.

`imgpipe/` holds the package root (version, environment); the rooms below are
the design card's folders. Their subpackages are found automatically, so a
new folder with an `__init__.py` is in the wheel and the images without
touching this file. Everything else (metadata, dependencies, package data)
is in pyproject.toml.
"""
from setuptools import find_packages, setup

ROOMS = ("contract", "pipeline", "components", "registry", "serving", "configs", "schemas")

package_dir = {"imgpipe": "imgpipe", **{f"imgpipe.{room}": room for room in ROOMS}}
packages = ["imgpipe"]
for room in ROOMS:
    packages += [f"imgpipe.{room}"] + [f"imgpipe.{room}.{sub}" for sub in find_packages(room)]

setup(package_dir=package_dir, packages=packages)
