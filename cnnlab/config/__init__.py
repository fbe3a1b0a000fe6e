"""Config: the schema (every default), loading/merging/validating, and shipped recipes."""

from cnnlab.config.load import dump_yaml, load_config, recipe_names
from cnnlab.config.schema import Config

__all__ = ["Config", "dump_yaml", "load_config", "recipe_names"]
