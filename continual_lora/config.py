"""Checks of a workflow config that its JSON schema cannot express.

Run when the Snakefile loads, after the schema has validated the config and filled in
its defaults, so that bad input stops the workflow before any job and before anything
under ``results/`` is written. Each problem is one sentence that names the config key
(or the file), what is wrong, and what is expected.

The checks are a registry, run in order; the first check that finds problems stops
the rest (later checks rely on what earlier ones established, e.g. that the model
folder exists before its resolution is read).

Resolution: ``training.resolution`` must be a multiple of everything the model
downsamples by (the VAE's factor times 2 ** (UNet down blocks - 1)). The embedded tiny
model takes any multiple of 16; it is pretrained at ``tiny_model.resolution`` only,
so another training resolution is allowed but gives it a scale it has never drawn.
A hub model cannot be read offline, so its resolution is left to the job.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from continual_lora import layout
from continual_lora.data.sources import DatasetError, DatasetMissing
from continual_lora.composition import composition_metrics
from continual_lora.experiment import experiments_from_config, metric_names
from continual_lora.retention import retention_metrics
from continual_lora.generation import scheduler_class
from continual_lora.lora import DEFAULT_TARGET_MODULES, is_target
from continual_lora.methods import METHODS, get_method
from continual_lora.scoring import METRICS
from continual_lora.scoring.base import REQUIRED

TINY = "tiny"
# A hub id is exactly "org/name"; anything else that is not "tiny" is a local path.
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
SUPPORTED_PIPELINES_HINT = "a diffusers folder of StableDiffusionPipeline or StableDiffusionXLPipeline"


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Workspace:
    """What a check may look at besides the config: the directory the workflow runs
    in (relative paths in the config are relative to it) and the config schema."""

    directory: Path
    schema: dict[str, Any] | None = None
    # A dry run may go on without the datasets (missing_datasets warns of them).
    missing_data_ok: bool = False

    def path(self, name: str) -> Path:
        return self.directory / Path(name).expanduser()


Check = Callable[[dict[str, Any], Workspace], Iterable[str]]
CHECKS: list[Check] = []


def config_check(check: Check) -> Check:
    CHECKS.append(check)
    return check


def check_config(
    config: dict[str, Any],
    schema: str | Path | dict | None = None,
    directory: str | Path | None = None,
    missing_data_ok: bool = False,
) -> None:
    """Raise ConfigError with one sentence per problem, from the first check that finds any.

    ``schema`` (the schema file or its content) lets numbers be checked against the
    types it declares; ``directory`` is where the workflow runs (default: here);
    ``missing_data_ok`` lets a dataset not yet downloaded pass (a dry run).
    """
    if isinstance(schema, (str, Path)):
        schema = yaml.safe_load(Path(schema).read_text())
    workspace = Workspace(Path(directory) if directory is not None else Path.cwd(), schema, missing_data_ok)
    for check in CHECKS:
        problems = [sentence(problem) for problem in check(config, workspace)]
        if problems:
            raise ConfigError("\n".join(problems))


def fill_plugin_defaults(config: dict[str, Any]) -> None:
    """Write every configured method's and used metric's own defaults into
    ``method_settings`` and ``metric_settings``, as the schema's defaults are written
    into the rest: a setting given at its default value then makes the same job
    parameters as one left out, so it reruns nothing."""
    methods = config.setdefault("method_settings", {})
    for name in config["methods"]:
        methods[name] = {**METHODS[name].defaults, **methods.get(name, {})}
    metrics = config.setdefault("metric_settings", {})
    for name in _used_metrics(config):
        defaults = {key: value for key, value in METRICS[name].defaults.items() if value is not REQUIRED}
        metrics[name] = {**defaults, **metrics.get(name, {})}


def sentence(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


def _names(values: Iterable[str]) -> str:
    return ", ".join(sorted(values))


# --------------------------------------------------------------------------- values


def _integer_only(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    return "integer" in kinds and "number" not in kinds


def _whole_floats(schema: dict[str, Any], value: Any, key: str) -> Iterator[tuple[str, float]]:
    """(key, value) of every float where the schema wants an integer. JSON Schema
    counts 2.0 as an integer, but the workflow puts these values in file names
    ("order2.0_seed0") and ranges, where only a Python int works."""
    if isinstance(value, float) and _integer_only(schema):
        yield key, value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            sub = properties.get(name, extra)
            if isinstance(sub, dict):
                yield from _whole_floats(sub, item, f"{key}.{name}" if key else str(name))
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            yield from _whole_floats(schema["items"], item, key)


@config_check
def integers(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    if workspace.schema is None:
        return
    for key, value in _whole_floats(workspace.schema, config, ""):
        yield f"config key {key!r} holds {value!r}, which is not an integer; write it as {int(value)}"


@config_check
def experiment_names(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """The schema keeps names to one path component; these clash with other folders."""
    folded: dict[str, str] = {}
    for name in config["experiments"]:
        if name in layout.RESERVED_EXPERIMENT_NAMES:
            yield (
                f"config key 'experiments.{name}' names an experiment {name!r}, but "
                f"{layout.path(layout.EXPERIMENT, experiment=name)} holds the workflow's own files; choose a name "
                f"other than {', '.join(layout.RESERVED_EXPERIMENT_NAMES)}"
            )
        other = folded.setdefault(name.lower(), name)
        if other != name:
            # One folder on a case-insensitive file system (macOS, Windows).
            yield f"config keys 'experiments.{other}' and 'experiments.{name}' differ only in case; rename one"


# --------------------------------------------------------------------------- methods and metrics



@config_check
def methods(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    unknown = [m for m in config["methods"] if m not in METHODS]
    if unknown:
        yield (
            f"config key 'methods' names unknown method(s) {', '.join(map(repr, unknown))}; "
            f"known methods: {_names(METHODS)}"
        )


@config_check
def method_settings(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """Each method checks its own settings, as a job would build it."""
    for name, given in config.get("method_settings", {}).items():
        if name not in METHODS:
            yield f"config key 'method_settings.{name}' names no registered method; known: {_names(METHODS)}"
            continue
        try:
            get_method(name, given)
        except ValueError as error:
            yield f"config key {error}"


@config_check
def schedulers(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    evaluation = config["evaluation"]
    named = {"evaluation.scheduler": evaluation.get("scheduler")}
    # Any registered method may have one, whether this config runs it or not: a preset
    # names merge_and_init's, and a study of fewer methods keeps the preset's.
    for method, scheduler in evaluation.get("method_schedulers", {}).items():
        if method != "base" and method not in METHODS:
            yield (
                f"config key 'evaluation.method_schedulers.{method}' names no registered method; "
                f"known: base (the untouched model), {_names(METHODS)}"
            )
        named[f"evaluation.method_schedulers.{method}"] = scheduler
    for key, scheduler in named.items():
        if scheduler and scheduler_class(scheduler) is None:
            yield f"config key {key!r} is {scheduler!r}, which is not a diffusers scheduler class (e.g. EulerDiscreteScheduler)"


@config_check
def metrics(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    for experiment, spec in config["experiments"].items():
        key = f"experiments.{experiment}.metrics"
        domain = spec["domain"]
        for name in metric_names(spec):
            if name not in METRICS:
                yield f"config key {key!r} names metric {name!r}, which is not registered; known: {_names(METRICS)}"
            elif domain not in METRICS[name].domains:
                usable = [m for m, cls in METRICS.items() if domain in cls.domains]
                yield (
                    f"config key {key!r} names metric {name!r}, which scores {' and '.join(METRICS[name].domains)} "
                    f"only, but the experiment's domain is {domain}; metrics for {domain}: {_names(usable)}"
                )


@config_check
def metric_settings(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """What a metric backend would refuse when a scoring job builds it, found now."""
    settings = config.get("metric_settings", {})
    for name, given in settings.items():
        if name not in METRICS:
            yield f"config key 'metric_settings.{name}' names no registered metric; known: {_names(METRICS)}"
            continue
        for unknown in METRICS[name].unknown_settings(given):
            yield (
                f"config key 'metric_settings.{name}.{unknown}' is not a setting of metric {name!r}; "
                f"it reads {_names(METRICS[name].defaults) or 'none'}"
            )
    for name, user in _used_metrics(config).items():
        for setting in METRICS[name].missing_settings(settings.get(name)):
            yield (
                f"config key 'metric_settings.{name}.{setting}' is required by metric {name!r} "
                f"({user} uses it) but is not set"
            )


def _used_metrics(config: dict[str, Any]) -> dict[str, str]:
    """Every registered metric the config scores with, and who uses it (for messages)."""
    used = {m: f"experiment {e!r}" for e, spec in config["experiments"].items() for m in metric_names(spec)}
    retention = config.get("retention", {})
    if retention.get("enabled"):
        for name in retention.get("metrics") or []:
            used.setdefault(name, "retention.metrics")
    return {name: user for name, user in used.items() if name in METRICS}


@config_check
def beyond_the_paper(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """Retention and composition need metrics that can score them."""
    retention, composition = config.get("retention", {}), config.get("composition", {})
    if retention.get("enabled"):
        for name in retention.get("metrics") or []:
            if name not in METRICS:
                yield f"config key 'retention.metrics' names metric {name!r}, which is not registered; known: {_names(METRICS)}"
            elif not METRICS[name].scores_retention:
                able = [m for m, cls in METRICS.items() if cls.scores_retention]
                yield f"config key 'retention.metrics' names metric {name!r}, which cannot score retention; these can: {_names(able)}"
            else:
                for experiment, spec in config["experiments"].items():
                    if spec["domain"] not in METRICS[name].domains:
                        yield (
                            f"config key 'retention.metrics' names metric {name!r}, which scores "
                            f"{' and '.join(METRICS[name].domains)} only, but experiment {experiment!r} is of {spec['domain']}"
                        )
        if not retention.get("metrics"):
            for experiment, spec in config["experiments"].items():
                if not retention_metrics(metric_names(spec)):
                    yield (
                        f"config key 'retention.enabled' is true, but experiment {experiment!r} scores with no metric "
                        f"that can score retention ({', '.join(metric_names(spec))}); name some in 'retention.metrics'"
                    )
    if composition.get("enabled"):
        for domain, templates in composition.get("templates", {}).items():
            for template in templates:
                try:
                    template.format(a="", b="")
                except (KeyError, IndexError, ValueError) as error:
                    yield (
                        f"config key 'composition.templates.{domain}' holds {template!r}, which has a placeholder "
                        f"other than {{a}} and {{b}} ({type(error).__name__}: {error}); write a literal brace as {{{{ or }}}}"
                    )
        for experiment, spec in config["experiments"].items():
            if not composition_metrics(metric_names(spec)):
                yield (
                    f"config key 'composition.enabled' is true, but experiment {experiment!r} scores with no metric "
                    f"that compares samples with references ({', '.join(metric_names(spec))})"
                )
            if spec["n_tasks"] < 2:
                yield (
                    f"config key 'composition.enabled' is true, but experiment {experiment!r} has "
                    f"n_tasks {spec['n_tasks']}: composition pairs two learnt concepts"
                )


# --------------------------------------------------------------------------- base model


def _is_local(name: str, workspace: Workspace) -> bool:
    return name.startswith(("/", ".", "~")) or workspace.path(name).exists() or not HUB_ID.fullmatch(name)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _model_folder_problem(key: str, name: str, workspace: Workspace) -> str | None:
    folder = workspace.path(name)
    if not folder.is_dir():
        return (
            f"config key {key!r} is {name!r}, which is neither 'tiny', an existing folder nor a hub id "
            "of the form org/name (e.g. stabilityai/stable-diffusion-xl-base-1.0)"
        )
    index = _read_json(folder / "model_index.json")
    if index is None:
        return (
            f"config key {key!r} is the folder {name!r}, which has no readable model_index.json, so it is not "
            f"a diffusers model folder; expected {SUPPORTED_PIPELINES_HINT} (written by save_pretrained)"
        )
    # Deferred: it imports diffusers, which only a local model needs here.
    from continual_lora.models.conditioning import CONDITIONERS

    family = index.get("_class_name")
    if family not in CONDITIONERS:
        return (
            f"config key {key!r} is the folder {name!r}, a {family} model, a family this workflow cannot "
            f"condition; supported pipelines: {_names(CONDITIONERS)}"
        )
    return None


def _vae_folder_problem(name: str, workspace: Workspace) -> str | None:
    if _read_json(workspace.path(name) / "config.json") is None:
        return (
            f"config key 'base_model.vae' is {name!r}, which is neither a hub id of the form org/name nor a "
            "folder with the config.json of an AutoencoderKL"
        )
    return None


@config_check
def base_model(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    model = config["base_model"]
    if model["name"] != TINY and _is_local(model["name"], workspace):
        problem = _model_folder_problem("base_model.name", model["name"], workspace)
        if problem:
            yield problem
    if model.get("vae") and _is_local(model["vae"], workspace):
        problem = _vae_folder_problem(model["vae"], workspace)
        if problem:
            yield problem


def _downsampling(unet: dict[str, Any], vae: dict[str, Any]) -> tuple[int, int]:
    """(VAE factor, UNet factor): the VAE halves the image at every level but the
    last, and the UNet the latents at every down block but the last."""
    return 2 ** (len(vae["block_out_channels"]) - 1), 2 ** (len(unet["down_block_types"]) - 1)


def _tiny_configs(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from continual_lora.models import tiny

    settings = tiny.TinyModelSettings(resolution=config["tiny_model"]["resolution"])
    return tiny._unet_config(settings), tiny._vae_config(settings)


def _local_configs(config: dict[str, Any], workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]] | None:
    model = config["base_model"]
    folder = workspace.path(model["name"])
    vae = workspace.path(model["vae"]) if model.get("vae") and _is_local(model["vae"], workspace) else folder / "vae"
    unet_config = _read_json(folder / "unet" / "config.json")
    vae_config = _read_json(vae / "config.json")
    if unet_config is None or vae_config is None:
        return None
    return unet_config, vae_config


def _model_configs(config: dict[str, Any], workspace: Workspace) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(UNet config, VAE config) of the embedded model or a local folder; None for a
    hub model, which cannot be read offline and is left to the job."""
    name = config["base_model"]["name"]
    if name == TINY:
        return _tiny_configs(config)
    if _is_local(name, workspace):
        configs = _local_configs(config, workspace)
        if configs is None:
            raise ConfigError(
                f"config key 'base_model.name' is the folder {name!r}, which lacks unet/config.json or "
                f"vae/config.json; expected {SUPPORTED_PIPELINES_HINT}"
            )
        return configs
    return None


@config_check
def resolution(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    try:
        configs = _model_configs(config, workspace)
    except ConfigError as problem:
        yield str(problem)
        return
    if configs is None:
        return
    vae_factor, unet_factor = _downsampling(*configs)
    multiple = vae_factor * unet_factor
    size = config["training"]["resolution"]
    if size % multiple:
        yield (
            f"config key 'training.resolution' is {size}, which the base model cannot take: it must be a "
            f"multiple of {multiple} (its VAE downsamples by {vae_factor}, its UNet by {unet_factor} more), "
            f"e.g. {max(multiple, size // multiple * multiple)}"
        )


def _unet_linear_names(unet_config: dict[str, Any]) -> list[str]:
    """The names of the UNet's linear layers, from its config alone: built on the meta
    device, it allocates no weights (an SDXL UNet in a third of a second)."""
    import torch
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(unet_config)
    return [name for name, module in unet.named_modules() if isinstance(module, torch.nn.Linear)]


def _short_names(names: list[str]) -> list[str]:
    """The shortest suffix that names each kind of layer (``to_q``, ``to_out.0``)."""
    parts = [name.split(".") for name in names]
    return sorted({".".join(p[-2:]) if p[-1].isdigit() else p[-1] for p in parts})


@config_check
def lora_target_modules(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """Every name in lora.target_modules is a linear layer of the UNet, found here
    rather than in the first training job. It runs after the resolution check, which
    has reported a local folder without the configs.

    The attention projections (the default targets) are in every UNet an SD or SDXL
    pipeline has, so only other names are looked up: building the UNet needs diffusers,
    whose import would add seconds to every ``snakemake`` call."""
    targets = config["lora"]["target_modules"]
    configs = _model_configs(config, workspace)
    if configs is None or set(targets) <= set(DEFAULT_TARGET_MODULES):
        return
    linears = _unet_linear_names(configs[0])
    unmatched = [target for target in targets if not any(is_target(name, [target]) for name in linears)]
    if unmatched:
        yield (
            f"config key 'lora.target_modules' names {' and '.join(map(repr, unmatched))}, but no linear layer "
            f"of the base model's UNet is named so (a name matches a module's path or its last parts); its "
            f"linear layers end in {_names(_short_names(linears))}"
        )


# --------------------------------------------------------------------------- results and datasets


@config_check
def results_directory(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    results = workspace.directory / layout.RESULTS
    if results.exists() and not results.is_dir():
        yield f"{str(results)!r} is a file, but the workflow writes its results into a directory of that name"
        return
    writable = results if results.exists() else workspace.directory
    if not os.access(writable, os.W_OK | os.X_OK):
        yield (
            f"the results directory {str(results)!r} cannot be written by this user; run from a directory "
            "you can write to (snakemake --directory) or fix its permissions"
        )


@config_check
def datasets(config: dict[str, Any], workspace: Workspace) -> Iterator[str]:
    """Every image the first task will read opens, before any job: the selected
    concepts only, headers and a small-scale decode, so it stays quick."""
    for name, experiment in experiments_from_config(config).items():
        prefix = f"experiments.{name}"
        try:
            experiment.source.check(experiment.n_tasks)
        except DatasetMissing as error:
            if not workspace.missing_data_ok:
                yield f"config key '{prefix}.{error.key}': {error.detail}"
        except DatasetError as error:
            yield f"config key '{prefix}.{error.key}': {error.detail}"
        except (OSError, ValueError) as error:
            yield f"config key '{prefix}.dataset': {error}"


def missing_datasets(config: dict[str, Any]) -> list[str]:
    """One line per experiment whose dataset is not there yet: which, where it belongs,
    and what belongs there."""
    lines = []
    for name, experiment in experiments_from_config(config).items():
        try:
            experiment.source.concepts(experiment.n_tasks)
        except DatasetMissing as error:
            source, n = experiment.source, experiment.n_tasks
            lines.append(
                f"experiments.{name}.dataset.path: {str(error.path)!r} is not there yet; put "
                f"{source.expected_content} there. Until then its {n} concepts show as "
                f"{source.name}_missing_01..{n:02d}."
            )
        except (OSError, ValueError):
            continue  # a dataset that is there but wrong: check_config's to report
    return lines
