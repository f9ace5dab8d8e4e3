"""Checks of a workflow config that its JSON schema cannot express.

Run when the Snakefile loads, after the schema has validated the config and filled in
its defaults; each problem is one sentence naming the config key.
"""

from __future__ import annotations

from typing import Any

from continual_lora.methods import METHODS


class ConfigError(ValueError):
    pass


def check_config(config: dict[str, Any]) -> None:
    unknown = [m for m in config["methods"] if m not in METHODS]
    if unknown:
        raise ConfigError(
            f"config key 'methods' names unknown method(s) {', '.join(map(repr, unknown))}; "
            f"known methods: {', '.join(sorted(METHODS))}."
        )
