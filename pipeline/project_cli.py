"""`imgpipe init`: the command; the logic is pipeline/project.py."""
from __future__ import annotations

from pathlib import Path

import click

from imgpipe.pipeline.config import ConfigError


@click.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--preset", default="quickstart", show_default=True,
              help="Preset to start from: quickstart (built-in shapes, 32x32) or cifar10.")
def init_command(folder: Path, preset: str) -> None:
    """Start a project in FOLDER: imgpipe.toml, schemas/, .gitignore."""
    from imgpipe.pipeline import project
    try:
        created = project.create_project(folder, preset)
    except (ConfigError, project.ProjectExists) as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:   # an unwritable folder, or a file where a folder should be
        raise click.ClickException(f"cannot write the project in {folder}: "
                                   f"{error.strerror} ({error.filename})") from None
    for path in created.files:
        click.echo(f"wrote {path}")
    where = "" if folder.resolve() == Path.cwd().resolve() else f"cd {folder} && "
    click.echo(f"\nnext: {where}imgpipe run   (the {preset} preset as it is)\n"
               "then: point data.source, image and registry.model_name in imgpipe.toml at your data;\n"
               "      imgpipe schema infer PHOTOS --output schemas/mine.pbtxt drafts its schema")
