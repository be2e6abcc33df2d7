"""Options and config loading shared by every `imgpipe` command."""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple, Union

import click

from imgpipe.pipeline.config import Config, ConfigError, load_config, parse_set_options

config_option = click.option(
    "--config", "config_path", default=None, metavar="FILE|builtin:PRESET",
    help="TOML configuration file, or a preset shipped with imgpipe (builtin:quickstart, "
         "builtin:cifar10). Default: $IMGPIPE_CONFIG, else ./imgpipe.toml, else builtin:quickstart.")
set_option = click.option(
    "--set", "sets", multiple=True, metavar="KEY=VALUE",
    help="Override any config key, e.g. --set training.epochs=3 (repeatable).")
model_option = click.option(
    "--model", "model_name", default=None,
    help="Model name (default: the config's registry.model_name).")


def load(config_path: Union[None, str, Sequence[str]], sets: Tuple[str, ...],
         overrides: Optional[Dict] = None) -> Config:
    """The configuration, with dedicated flags' `overrides` and `--set` pairs; usage errors."""
    try:
        return load_config(config_path, {**(overrides or {}), **parse_set_options(list(sets))})
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
