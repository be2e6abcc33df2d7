"""`imgpipe init`: a starter project in the user's own folder.

Like `kedro new` or TFX's template copy, minus the code: a config that
documents every key (a preset shipped with imgpipe), the preset's curated
schema under schemas/ where the project reviews its own, and a .gitignore
for what runs write.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

from imgpipe.pipeline.config import BUILTIN_PREFIX, PROJECT_CONFIG, packaged_file

GITIGNORE = "# imgpipe run outputs: pipelines, metadata, registry, serving copies\nruns/\n"


class ProjectExists(ValueError):
    """The folder already holds a project file; nothing was written."""


@dataclasses.dataclass(frozen=True)
class StarterProject:
    config: Path
    schema: Path
    gitignore: Path

    @property
    def files(self) -> List[Path]:
        return [self.config, self.schema, self.gitignore]


def starter_config_text(preset: str) -> str:
    """The preset, pointing at the project's copy of its schema."""
    text = packaged_file("imgpipe.configs", preset, ".toml", "preset").read_text()
    packaged_schema = f'schema_file = "{BUILTIN_PREFIX}{preset}"'
    if packaged_schema not in text:
        raise ValueError(f"preset {preset} names no built-in schema ({packaged_schema})")
    return text.replace(packaged_schema, f'schema_file = "schemas/{preset}.pbtxt"')


def create_project(folder: Path, preset: str = "quickstart") -> StarterProject:
    """Writes the starter files; refuses to overwrite any of them."""
    project = StarterProject(config=folder / PROJECT_CONFIG,
                             schema=folder / "schemas" / f"{preset}.pbtxt",
                             gitignore=folder / ".gitignore")
    config_text = starter_config_text(preset)   # fails on an unknown preset before writing
    schema_text = packaged_file("imgpipe.schemas", preset, ".pbtxt", "schema").read_text()
    present = [str(p) for p in (project.config, project.schema) if p.exists()]
    if present:
        raise ProjectExists(f"{', '.join(present)} already exist; nothing was written "
                            "(edit them, or init another folder)")
    project.schema.parent.mkdir(parents=True, exist_ok=True)
    project.config.write_text(config_text)
    project.schema.write_text(schema_text)
    if not project.gitignore.exists():
        project.gitignore.write_text(GITIGNORE)
    return project
