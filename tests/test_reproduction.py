"""The reproduction audit (docs/reproduction.md) against the presets.

Every audit row that names a config key starts its Reference cell with the reference
code's value; the preset, with the schema's defaults filled in as the Snakefile fills
them, must hold exactly that value. So neither the table nor the preset can change
without the other.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from continual_lora.methods import METHODS
from continual_lora.scoring import METRICS

REPO = Path(__file__).resolve().parents[1]
AUDIT = REPO / "docs" / "reproduction.md"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
STATUSES = {"same", "same maths", "setting", "reading", "different"}
KEY = re.compile(r"^`(?P<key>[a-z0-9_.*]+)`")
VALUE = re.compile(r"^`(?P<value>[^`]+)`")
# sd15.yaml is the paper's recipe on SD 1.5: these keys are its own.
SD15_OWN = {"base_model.name", "base_model.vae", "training.resolution", "evaluation.guidance_scale"}


def audit_rows() -> list[dict[str, str]]:
    rows = []
    for line in AUDIT.read_text().splitlines():
        if not line.startswith("| ") or line.startswith("| Detail ") or line.startswith("| ---"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        assert len(cells) == 4, line
        rows.append(dict(zip(("detail", "reference", "key", "status"), cells)))
    return rows


def checked_rows() -> list[tuple[str, str, object]]:
    """(detail, config key, the reference's value) of every row that names both."""
    checked = []
    for row in audit_rows():
        key, value = KEY.match(row["key"]), VALUE.match(row["reference"])
        if key and value:
            checked.append((row["detail"], key["key"], yaml.safe_load(value["value"])))
    return checked


def effective(preset: str) -> dict:
    """The preset as the jobs see it: the schema's defaults filled in, as the Snakefile
    does, and each metric's and method's own defaults where the preset sets none."""
    config = yaml.safe_load((REPO / "config" / f"{preset}.yaml").read_text())
    validate(config, str(SCHEMA))
    for name, given in config["metric_settings"].items():
        config["metric_settings"][name] = {**METRICS[name].defaults, **given}
    for name in config["methods"]:
        config["method_settings"][name] = {**METHODS[name].defaults, **config["method_settings"].get(name, {})}
    return config


def lookup(config: dict, key: str) -> list:
    """The values at a dotted key; ``*`` stands for every entry of a mapping."""
    values = [config]
    for part in key.split("."):
        if part == "*":
            values = [item for value in values for item in value.values()]
        else:
            values = [value[part] for value in values]
    return values


def test_every_audit_row_has_a_status_and_enough_rows_name_a_setting():
    rows = audit_rows()
    assert len(rows) >= 60
    assert {row["status"] for row in rows} <= STATUSES
    assert len(checked_rows()) >= 35
    # a "setting" or "reading" row is one the config can turn: it names its key
    for row in rows:
        if row["status"] in ("setting", "reading"):
            assert KEY.match(row["key"]), row


def departures(config: dict, rename: dict[str, str] | None = None, own: set[str] = frozenset()) -> list[str]:
    """The audited settings where ``config`` does not hold the reference's value:
    (detail, key) of each, keys renamed by ``rename`` and those in ``own`` left out."""
    found = []
    for detail, key, reference in checked_rows():
        for old, new in (rename or {}).items():
            key = key.replace(old, new)
        if key in own:
            continue
        values = lookup(config, key)
        if not values or any(value != reference for value in values):
            found.append(f"{detail} ({key}): {values} against the reference's {reference!r}")
    return found


def test_the_sdxl_preset_holds_the_reference_codes_value_in_every_audited_setting():
    assert departures(effective("sdxl")) == []


def test_the_sd15_preset_differs_from_the_sdxl_one_only_in_its_model():
    config = effective("sd15")
    assert departures(config, {"experiments.sdxl_": "experiments.sd15_"}, SD15_OWN) == []
    assert config["training"]["resolution"] == 512 and config["evaluation"]["guidance_scale"] == 7.5


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("evaluation", "guidance_scale", 7.5), ("training", "seeding", "task"), ("evaluation", "method_schedulers", {})],
)
def test_a_preset_that_leaves_the_reference_fails_the_audit(section, key, value):
    changed = effective("sdxl")
    changed[section][key] = value
    assert len(departures(changed)) == 1 and f"({section}.{key})" in departures(changed)[0]


def test_no_file_cites_a_protocol_file_outside_the_repository():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    citing = [
        name
        for name in tracked
        if name != "tests/test_reproduction.py"
        and (REPO / name).is_file()
        and "PROTOCOL.md" in (REPO / name).read_text(errors="ignore")
    ]
    assert citing == []


@pytest.mark.parametrize("preset", ["sdxl", "sd15"])
def test_the_presets_link_the_audit(preset):
    assert "docs/reproduction.md" in (REPO / "config" / f"{preset}.yaml").read_text()
