"""CPU benchmarks of the pipeline on the embedded tiny model, with the default config.

Sections (each a key of the JSON it writes):

- startup: seconds a job spends starting Python and importing what its script imports;
- loading: load_pipeline of the base model, and of the model after a task (adapter and
  delta handoffs);
- training: LoRA training steps per second, and every phase of a train_task job;
- generation: images per second by batch size, and where a batch's time goes;
- evaluation: one checkpoint's `denoise` score next to generate-then-score
  (generate_samples + colour_structure), both through the package's entry points;
- checkpoints: bytes a task writes for each method next to the whole UNet saved with
  save_pretrained; at SDXL scale computed from the architecture's shapes, and the CPU
  time of turning an SDXL rank-64 adapter into weight deltas (checkpoint_deltas);
- rules: wall time per rule of a finished run, from Snakemake's benchmark files and
  its log (``--results``, default results/);
- dry_run: `snakemake --dry-run` of config/sdxl.yaml (2 017 jobs) on miniature
  datasets written to a temporary folder.

    python benchmarks/cpu_suite.py --results /tmp/dr/results --out cpu.json
    python benchmarks/cpu_suite.py --quick --out quick.json   # seconds, for the tests
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import yaml
from benchlib import REPO, Clock, load_average, machine, write_json

from continual_lora import layout

CONFIG = REPO / "config.yaml"
PRESET = REPO / "config" / "sdxl.yaml"
SCHEMA_DEFAULT_LATENT_SEED = 42

# What each rule's script imports before it does any work (workflow/scripts/*.py,
# after Snakemake's preamble, which unpickles the job and imports snakemake.logging).
SCRIPT_IMPORTS = {
    "train_task": "from continual_lora.lora import LoraSpec; from continual_lora.training import TrainingSettings, train_task",
    "generate_samples": "from continual_lora.data.concepts import Concept; from continual_lora.generation import GenerationSettings, generate_samples; from continual_lora.models.loading import checkpoint_deltas, load_pipeline",
    "score_samples": "from continual_lora.evaluation import score_samples; from continual_lora.models.loading import resolve_device; from continual_lora.scoring import ModelHandle",
    "audit_chain": "from continual_lora.audit import audit_run",
    "summarize_experiment": "from continual_lora.aggregation import per_run_scores, read_scores, summary_table, to_latex, to_markdown, write_mean_matrices; from continual_lora.atomic import atomic_directory, atomic_output",
    "plot_scores": "import pandas as pd; from continual_lora.aggregation import read_scores; from continual_lora.atomic import atomic_directory; from continual_lora.reporting import score_figures",
}
PREAMBLE_IMPORTS = "import pickle; from snakemake.logging import logger; from snakemake.iocontainers import Snakemake"


# --------------------------------------------------------------------------- setup


class Context:
    """The model, concepts and config every section shares, made once."""

    def __init__(self, args, tmp: Path):
        from continual_lora.data.sources import make_source
        from continual_lora.lora import LoraSpec

        self.args, self.tmp = args, tmp
        self.config = yaml.safe_load(CONFIG.read_text())
        self.spec = LoraSpec.from_config(self.config["lora"])
        self.resolution = 32 if args.quick else self.config["training"]["resolution"]
        self.model, self.model_kind = self._model()
        source = make_source("objects", {"source": "synthetic", "seed": 0, "resolution": self.resolution})
        self.concepts = source.concepts(args.tasks)
        self.concept_dirs = {}
        for concept in self.concepts:
            folder = tmp / "data" / concept.name
            source.prepare(concept, folder)
            self.concept_dirs[concept.name] = folder

    def _model(self) -> tuple[Path, str]:
        if self.args.model:
            return Path(self.args.model), f"given: {self.args.model}"
        pretrained = Path(self.args.results) / "models" / "tiny"
        if not self.args.quick and (pretrained / "model_index.json").exists():
            return pretrained, f"the default run's pretrained tiny model ({pretrained})"
        from continual_lora.data.sources import RARE_TOKENS
        from continual_lora.data.synthetic import GENERIC_CLASSES
        from continual_lora.models.tiny import TinyModelSettings, build_tiny_pipeline, build_tokenizer

        # Same architecture as the embedded model; random weights time the same.
        root = self.tmp / "tiny"
        tokenizer = build_tokenizer([f"a photo of a {w}" for w in GENERIC_CLASSES], root / "tokenizer", RARE_TOKENS[:10])
        build_tiny_pipeline(TinyModelSettings(resolution=self.resolution), tokenizer).save_pretrained(root / "model")
        return root / "model", f"tiny architecture at {self.resolution} px, random weights (built here)"

    def handoff(self, fmt: str) -> Path:
        """A task's handoff file of the given format, with a non-zero update."""
        from continual_lora import checkpoint
        from continual_lora.lora import deltas_to_state, factor_deltas, factors_to_state
        from continual_lora.models.loading import load_pipeline

        path = self.tmp / "handoffs" / f"{fmt}.safetensors"
        if not path.exists():
            factors = random_factors(load_pipeline(self.model).unet, self.spec)
            tensors = factors_to_state(factors) if fmt == "adapter" else deltas_to_state(factor_deltas(factors, self.spec.scale))
            checkpoint.save_tensors(path, tensors, fmt, self.spec.scale)
        return path


def random_factors(unet, spec, seed: int = 0):
    """Factors as after training: A as drawn, B small and non-zero."""
    from continual_lora.lora import fresh_factors, linear_shapes

    generator = torch.Generator().manual_seed(seed)
    factors = fresh_factors(linear_shapes(unet, spec), spec.rank, generator)
    return {m: (a, torch.randn(b.shape, generator=generator) * 1e-2) for m, (a, b) in factors.items()}


def timed(fn, repeats: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeats`` calls, and the last call's value."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), value


# --------------------------------------------------------------------------- sections


def section_startup(ctx: Context) -> dict:
    """Seconds from exec to the script's first line of work, per rule, in fresh interpreters."""
    repeats = 1 if ctx.args.quick else 3

    def run(code: str) -> float:
        return timed(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True), repeats)[0]

    result = {"repeats": repeats, "python_s": run("pass")}
    if ctx.args.quick:
        result["train_task_imports_s"] = run(SCRIPT_IMPORTS["train_task"])
        return result
    result["snakemake_preamble_s"] = run(PREAMBLE_IMPORTS)
    result["torch_s"] = run("import torch")
    result["diffusers_s"] = run("import diffusers.pipelines, torch; from diffusers import DiffusionPipeline, StableDiffusionPipeline")
    for rule, code in SCRIPT_IMPORTS.items():
        result[f"{rule}_imports_s"] = run(f"{PREAMBLE_IMPORTS}; {code}")
    return result


def section_loading(ctx: Context) -> dict:
    from continual_lora.models.loading import checkpoint_deltas, load_pipeline

    repeats = 1 if ctx.args.quick else 3
    result = {"repeats": repeats, "base_s": timed(lambda: load_pipeline(ctx.model), repeats)[0]}
    for fmt in ("adapter", "delta"):
        handoff = ctx.handoff(fmt)
        result[f"checkpoint_deltas_{fmt}_s"] = timed(lambda h=handoff: checkpoint_deltas(h), repeats)[0]
        result[f"with_{fmt}_handoff_s"] = timed(lambda h=handoff: load_pipeline(ctx.model, checkpoint_deltas(h)), repeats)[0]
    return result


def section_training(ctx: Context) -> dict:
    """The phases of a train_task job (TaskTrainer's), each timed, with the default
    config's settings and its first method, on the first task."""
    from continual_lora.data.concepts import read_concept
    from continual_lora.methods import get_method
    from continual_lora.training import TaskTrainer, TrainingSettings

    settings = TrainingSettings.from_config(ctx.config["training"], resolution=ctx.resolution)
    method = ctx.config["methods"][0]
    warmup, steps = (1, 2) if ctx.args.quick else (3, ctx.args.train_steps)
    clock, times = Clock(), {}
    prepared = read_concept(ctx.concept_dirs[ctx.concepts[0].name])
    trainer = TaskTrainer(
        base_model=ctx.model, continual=get_method(method), previous=None, spec=ctx.spec, settings=settings, seed=0,
        task=1, device="cpu",
    )  # fmt: skip
    with clock(times, "load_s"):
        trainer.load()
    with clock(times, "attach_s"):
        trainer.start()
    with clock(times, "cache_s"):
        trainer.cache(prepared)
    for _ in range(warmup):
        trainer.step()
    with clock(times, "steps_s"):
        for _ in range(steps):
            trainer.step()
    with clock(times, "save_s"):
        trainer.save(ctx.tmp / "train_out")
    step_s = times["steps_s"] / steps
    return {
        "settings": {"method": method, "batch_size": settings.batch_size, "resolution": settings.resolution,
                     "rank": ctx.spec.rank, "mixed_precision": settings.mixed_precision, "config_steps": settings.steps},
        "lora_parameters": sum(p.numel() for p in trainer.train_step.params),
        "timed_steps": steps,
        "step_s": step_s,
        "steps_per_s": 1.0 / step_s,
        "images_per_s": settings.batch_size / step_s,
        "load_s": times["load_s"],
        # The method's start: its update fused in, the adapter attached, the optimizer made.
        "attach_s": times["attach_s"],
        "cache_s": times["cache_s"],
        "save_s": times["save_s"],
        # The config's steps at the measured rate, next to the job's fixed costs.
        "config_steps_s": settings.steps * step_s,
        "fixed_costs_s": times["load_s"] + times["attach_s"] + times["cache_s"] + times["save_s"],
    }


def generation_settings(ctx: Context, **changes):
    from continual_lora.generation import GenerationSettings

    evaluation = ctx.config["evaluation"]
    settings = dict(
        templates=tuple(evaluation["templates"]["objects"]),
        samples_per_prompt=evaluation["samples_per_prompt"],
        inference_steps=2 if ctx.args.quick else evaluation["inference_steps"],
        guidance_scale=evaluation["guidance_scale"],
        latent_seed=evaluation.get("latent_seed", SCHEMA_DEFAULT_LATENT_SEED),
        batch_size=evaluation["batch_size"],
        resolution=ctx.resolution,
    )
    return GenerationSettings(**settings | changes)


class ComponentTimer:
    """Wall time spent inside each named module's forward, through hooks."""

    def __init__(self, modules: dict):
        self.totals = defaultdict(float)
        self.handles = []
        for name, module in modules.items():
            starts = []
            self.handles.append(module.register_forward_pre_hook(lambda m, a, s=starts: s.append(time.perf_counter())))
            self.handles.append(
                module.register_forward_hook(lambda m, a, o, s=starts, n=name: self.totals.__setitem__(n, self.totals[n] + time.perf_counter() - s.pop()))
            )

    def remove(self):
        for handle in self.handles:
            handle.remove()


def section_generation(ctx: Context) -> dict:
    from continual_lora.generation import generate_samples
    from continual_lora.models.loading import load_pipeline

    pipeline = load_pipeline(ctx.model)
    n_tasks = 1 if ctx.args.quick else min(2, len(ctx.concepts))
    tasks = [(i + 1, c) for i, c in enumerate(ctx.concepts[:n_tasks])]
    default_batch = ctx.config["evaluation"]["batch_size"]
    # The config's own batch size always, profiled, whatever it is.
    batch_sizes = [default_batch] if ctx.args.quick else sorted({1, 4, 8, 16, default_batch})
    result = {"inference_steps": generation_settings(ctx).inference_steps, "batch_size": default_batch, "by_batch_size": {}}
    generate_samples(pipeline, tasks[:1], generation_settings(ctx, inference_steps=1), ctx.tmp / "gen_warmup")
    for batch in batch_sizes:
        settings = generation_settings(ctx, batch_size=batch)
        timer = None
        if batch == default_batch:
            timer = ComponentTimer({"unet": pipeline.unet, "vae_decoder": pipeline.vae.decoder, "text_encoder": pipeline.text_encoder})
        seconds, rows = timed(lambda s=settings, b=batch: generate_samples(pipeline, tasks, s, ctx.tmp / f"gen_b{b}"))
        entry = {"images": len(rows), "seconds": seconds, "images_per_s": len(rows) / seconds}
        if timer is not None:
            timer.remove()
            entry["profile_s"] = {**timer.totals, "other": seconds - sum(timer.totals.values())}
        result["by_batch_size"][str(batch)] = entry
    result["images_per_s"] = result["by_batch_size"][str(default_batch)]["images_per_s"]
    return result


def section_evaluation(ctx: Context) -> dict:
    """One checkpoint scored on every task it has seen: the denoise metric's job against
    generating the samples and scoring them with colour_structure."""
    from continual_lora.evaluation import score_samples
    from continual_lora.generation import generate_samples
    from continual_lora.models.loading import checkpoint_deltas, load_pipeline
    from continual_lora.scoring import ModelHandle

    handoff = ctx.handoff("adapter")
    tasks = [(i + 1, c) for i, c in enumerate(ctx.concepts)]
    samples = ctx.tmp / "eval_samples"
    clock, times = Clock(), {}
    with clock(times, "generate_load_s"):
        pipeline = load_pipeline(ctx.model, checkpoint_deltas(handoff))
    with clock(times, "generate_s"):
        rows = generate_samples(pipeline, tasks, generation_settings(ctx), samples)
    del pipeline

    def score(metrics: dict, name: str):
        with clock(times, name):
            score_samples(
                samples_dir=samples, concept_dirs=ctx.concept_dirs, metrics=metrics,
                model=lambda: ModelHandle.load(ctx.model, handoff), method="bench", run="r", after_task=len(tasks),
                out_csv=ctx.tmp / f"{name}.csv", log=lambda _: None,
            )  # fmt: skip

    settings = ctx.config.get("metric_settings", {})
    score({"colour_structure": settings.get("colour_structure", {})}, "colour_structure_s")
    score({"denoise": settings.get("denoise", {})}, "denoise_s")
    generate_then_score = times["generate_load_s"] + times["generate_s"] + times["colour_structure_s"]
    from continual_lora.scoring import ScoringInput
    from continual_lora.scoring.denoise import DenoiseMetric, noise_prediction_error

    # Inside the denoise score of one task: the checkpoint's error, and the base
    # model's, which is the same for every checkpoint that has seen the task.
    metric = DenoiseMetric(settings.get("denoise", {}), "cpu")
    handle = ModelHandle.load(ctx.model, handoff)
    job = ScoringInput.from_concept_dir(ctx.concept_dirs[ctx.concepts[0].name], [], [], model=handle)
    with clock(times, "denoise_one_task_s"):
        metric.score(job)
    resolution = handle.pipeline.unet.config.sample_size * handle.pipeline.vae_scale_factor
    with clock(times, "denoise_one_task_model_error_s"):
        noise_prediction_error(
            handle.pipeline, job.references, job.concept.prompt, resolution=resolution, n_timesteps=metric.settings["n_timesteps"],
            n_noises=metric.settings["n_noises"], seed=metric.settings["seed"], batch_size=metric.settings["batch_size"],
        )  # fmt: skip
    denoise = metric.settings
    n_refs = len(list((ctx.concept_dirs[ctx.concepts[0].name] / "reference").iterdir()))
    return {
        "tasks_seen": len(tasks),
        "images": len(rows),
        "inference_steps": generation_settings(ctx).inference_steps,
        "guidance_scale": generation_settings(ctx).guidance_scale,
        # UNet evaluations per task: sampling runs the batch twice (guidance) per
        # step; denoise runs each (reference, timestep, noise) once, for the model
        # and again for the base.
        "unet_rows_per_task": {
            "generation": 2 * len(rows) // len(tasks) * generation_settings(ctx).inference_steps,
            "denoise": 2 * n_refs * denoise["n_timesteps"] * denoise["n_noises"],
        },
        **times,
        "generate_then_score_s": generate_then_score,
        "denoise_over_generate_then_score": times["denoise_s"] / generate_then_score,
        "per_task_s": {"denoise": times["denoise_s"] / len(tasks), "generate_then_score": generate_then_score / len(tasks)},
    }


def file_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else Path(path).stat().st_size


def section_checkpoints(ctx: Context) -> dict:
    """What each task writes, per method, for a 3-task chain; against save_pretrained."""
    from continual_lora import checkpoint
    from continual_lora.lora import factors_to_state, fresh_factors, linear_shapes
    from continual_lora.methods import get_method
    from continual_lora.models.loading import load_pipeline

    unet = load_pipeline(ctx.model).unet
    shapes = linear_shapes(unet, ctx.spec)
    result = {"tiny": {"methods": {}}}
    for method in ctx.config["methods"]:
        continual = get_method(method)
        generator = torch.Generator().manual_seed(0)
        previous, per_task = None, []
        for task in range(1, 4):
            start = continual.start(previous, fresh_factors(shapes, ctx.spec.rank, generator), ctx.spec)
            # Training moves both factors; a perturbation stands in for it.
            trained = {m: (a + 1e-2 * torch.randn(a.shape, generator=generator), b + 1e-2 * torch.randn(b.shape, generator=generator))
                       for m, (a, b) in start.init.items()}  # fmt: skip
            handoff = continual.hand_on(previous, trained, ctx.spec, task=task)
            out = ctx.tmp / "checkpoints" / method / f"task{task}"
            checkpoint.save_tensors(out / checkpoint.HANDOFF, handoff, continual.handoff_format, ctx.spec.scale)
            checkpoint.save_tensors(out / checkpoint.TASK_LORA, factors_to_state(trained), "adapter", ctx.spec.scale)
            checkpoint.save_tensors(out / checkpoint.INIT_LORA, factors_to_state(start.init), "adapter", ctx.spec.scale)
            per_task.append({name: file_bytes(out / name) for name in (checkpoint.HANDOFF, checkpoint.TASK_LORA, checkpoint.INIT_LORA)})
            previous = handoff
        result["tiny"]["methods"][method] = {
            "format": continual.handoff_format,
            **{k: per_task[-1][k] for k in per_task[-1]},
            "per_task_bytes": sum(per_task[-1].values()),
            "same_every_task": all(p == per_task[0] for p in per_task),
        }
    for dtype in (torch.float32, torch.float16):
        folder = ctx.tmp / "checkpoints" / f"unet_{dtype}".replace("torch.", "")
        unet.to(dtype).save_pretrained(folder)
        result["tiny"][f"save_pretrained_{str(dtype).removeprefix('torch.')}_bytes"] = file_bytes(folder)
    whole = result["tiny"]["save_pretrained_float32_bytes"]
    for method, entry in result["tiny"]["methods"].items():
        entry["per_task_over_save_pretrained_float32"] = entry["per_task_bytes"] / whole
        entry["handoff_over_save_pretrained_float32"] = entry[checkpoint.HANDOFF] / whole
    result["sdxl_computed"] = sdxl_checkpoint_bytes()
    if not ctx.args.quick:
        result["sdxl_checkpoint_deltas_cpu"] = sdxl_delta_cost()
    return result


def sdxl_linear_shapes(rank: int = 64):
    from diffusers import UNet2DConditionModel
    from sdxl_arch import SDXL_UNET

    from continual_lora.lora import LoraSpec, linear_shapes

    spec = LoraSpec.from_config(yaml.safe_load(PRESET.read_text())["lora"])
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    return unet, spec, linear_shapes(unet, spec)


def sdxl_checkpoint_bytes() -> dict:
    """Tensor bytes (float32, as checkpoint.save_tensors stores them; the file adds a
    header of a few hundred kB) from the SDXL architecture built on the meta device."""
    unet, spec, shapes = sdxl_linear_shapes()
    params = sum(p.numel() for p in unet.parameters())
    adapter = 4 * sum(spec.rank * (o + i) for o, i in shapes.values())
    delta = 4 * sum(o * i for o, i in shapes.values())
    from continual_lora.methods import get_method

    # handoff (an adapter or a delta, by the method's format) + task_lora + init_lora.
    preset = yaml.safe_load(PRESET.read_text())
    handoff = {"adapter": adapter, "delta": delta}
    per_task = {m: handoff[get_method(m).handoff_format] + 2 * adapter for m in preset["methods"]}
    checkpoints_per_method = sum(
        e["n_tasks"] * len(e["order_seeds"]) * len(e["training_seeds"]) for e in preset["experiments"].values()
    )
    return {
        "method": "computed from shapes, not written",
        "targeted_modules": len(shapes),
        "unet_parameters": params,
        "adapter_bytes": adapter,
        "delta_bytes": delta,
        "per_task_bytes": per_task,
        "save_pretrained_float16_bytes": 2 * params,
        "save_pretrained_float32_bytes": 4 * params,
        "per_task_over_save_pretrained_float16": {m: b / (2 * params) for m, b in per_task.items()},
        # Every task of every run of config/sdxl.yaml, all methods.
        "paper_checkpoints": checkpoints_per_method * len(per_task),
        "paper_total_bytes": checkpoints_per_method * sum(per_task.values()),
        "paper_total_save_pretrained_float16_bytes": checkpoints_per_method * len(per_task) * 2 * params,
    }


def sdxl_delta_cost() -> dict:
    """checkpoint_deltas of an SDXL rank-64 adapter handoff on the CPU: the package's
    float64 product against the same product in float32."""
    from continual_lora.lora import factor_deltas

    _, spec, shapes = sdxl_linear_shapes()
    generator = torch.Generator().manual_seed(0)
    factors = {m: (torch.randn(spec.rank, i, generator=generator), torch.randn(o, spec.rank, generator=generator)) for m, (o, i) in shapes.items()}
    seconds64, deltas = timed(lambda: factor_deltas(factors, spec.scale))
    del deltas

    def float32():
        return {m: spec.scale * (b @ a) for m, (a, b) in factors.items()}

    seconds32, deltas32 = timed(float32)
    del deltas32
    return {"modules": len(shapes), "factor_deltas_float64_s": seconds64, "matmul_float32_s": seconds32,
            "float64_over_float32": seconds64 / seconds32, "load_average": load_average()}  # fmt: skip


# --------------------------------------------------------------------------- a finished run


def number(text: str) -> float:
    return float(text) if text not in ("", "NA", "-") else 0.0


def section_rules(results: Path) -> dict:
    """Per rule: jobs, total and mean wall seconds, mean peak RSS, from benchmark files
    (each named after its rule, continual_lora.layout.benchmark);
    from the Snakemake log, every rule's job time (1 s resolution) and the run's wall."""
    root = layout.in_results(results, layout.BENCHMARKS)
    result = {"results": str(results)}
    if not root.is_dir():
        result["benchmarks"] = f"no {root}: run the workflow first"
    else:
        per_rule = defaultdict(list)
        for tsv in sorted(root.rglob("*.tsv")):
            with open(tsv, newline="") as handle:
                for row in csv.DictReader(handle, delimiter="\t"):
                    per_rule[tsv.stem].append((number(row["s"]), number(row["max_rss"]), number(row["cpu_time"])))
        # CPU seconds are less sensitive than wall seconds to what else ran on the machine.
        result["benchmarks"] = {
            rule: {"jobs": len(v), "total_s": sum(s for s, _, _ in v), "mean_s": sum(s for s, _, _ in v) / len(v),
                   "total_cpu_s": sum(c for _, _, c in v), "mean_max_rss_mb": sum(r for _, r, _ in v) / len(v)}
            for rule, v in sorted(per_rule.items())
        }
        result["benchmarks_total_s"] = sum(r["total_s"] for r in result["benchmarks"].values())
    log = latest_log(results)
    if log is not None:
        result["log"] = parse_log(log)
    return result


def latest_log(results: Path) -> Path | None:
    logs = sorted((results.parent / ".snakemake" / "log").glob("*.snakemake.log"))
    complete = [log for log in logs if "Finished jobid" in log.read_text(errors="replace")]
    return complete[-1] if complete else None


STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def parse_log(log: Path) -> dict:
    started, rules, finished = {}, {}, {}
    first = last = None
    stamp = None
    current = None
    for line in log.read_text(errors="replace").splitlines():
        match = STAMP.match(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y")
            first, last = first or stamp, stamp
            continue
        rule = re.match(r"^(?:local)?rule (\w+):$", line)
        if rule:
            current = rule.group(1)
            continue
        jobid = re.match(r"^\s+jobid: (\d+)$", line)
        if jobid and current:
            started[jobid.group(1)], rules[jobid.group(1)] = stamp, current
            current = None
            continue
        done = re.match(r"^Finished jobid: (\d+)", line)
        if done:
            finished[done.group(1)] = stamp
    per_rule = defaultdict(lambda: {"jobs": 0, "total_s": 0.0})
    for job, end in finished.items():
        if job in started:
            entry = per_rule[rules[job]]
            entry["jobs"] += 1
            entry["total_s"] += (end - started[job]).total_seconds()
    jobs_s = sum(v["total_s"] for v in per_rule.values())
    wall = (last - first).total_seconds() if first else 0.0
    return {
        "file": str(log),
        "jobs_finished": len(finished),
        "wall_s": wall,
        "jobs_s": jobs_s,
        # With --cores 1 jobs run one at a time: what is left is Snakemake's own time.
        "between_jobs_s": wall - jobs_s,
        "per_rule": dict(sorted(per_rule.items())),
    }


# --------------------------------------------------------------------------- the largest preset's graph


def section_dry_run(ctx: Context) -> dict:
    # The tests' own helpers: the miniature datasets, and the Snakemake command line
    # and its "Job stats:" table (tests/snakemake_harness.py).
    sys.path.insert(0, str(REPO / "tests"))
    from dataset_fixtures import with_dataset_paths, write_datasets
    from snakemake_harness import job_counts, run_snakemake

    root = ctx.tmp / "dry_run"
    config = with_dataset_paths(yaml.safe_load(PRESET.read_text()), write_datasets(root))
    configfile = root / "sdxl.yaml"
    configfile.write_text(yaml.safe_dump(config))
    runs, jobs = [], None
    for _ in range(ctx.args.dry_runs):
        start = time.perf_counter()
        output = run_snakemake(root / "work", configfile, "--dry-run", cores=1)  # raises with the output's tail
        runs.append(time.perf_counter() - start)
        jobs = sum(job_counts(output).values())
    version = timed(lambda: subprocess.run([sys.executable, "-m", "snakemake", "--version"], check=True, capture_output=True))[0]
    return {"preset": "config/sdxl.yaml", "jobs": jobs, "runs_s": runs, "median_s": statistics.median(runs),
            "snakemake_version_s": version}  # fmt: skip


# --------------------------------------------------------------------------- main

SECTIONS = {
    "startup": section_startup,
    "loading": section_loading,
    "training": section_training,
    "generation": section_generation,
    "evaluation": section_evaluation,
    "checkpoints": section_checkpoints,
    "rules": lambda ctx: section_rules(Path(ctx.args.results)),
    "dry_run": section_dry_run,
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(REPO / layout.RESULTS), help="a finished run's results folder (rules section)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "cpu_suite.json"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a few steps, no dry run: seconds")
    parser.add_argument("--model", help="a diffusers folder of the tiny model (default: the run's, else built)")
    parser.add_argument("--tasks", type=int, help="tasks the evaluated checkpoint has seen (default 5; quick 1)")
    parser.add_argument("--train-steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--dry-runs", type=int, default=2)
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run these sections only")
    parser.add_argument("--update", action="store_true", help="replace these sections in an existing --out file")
    args = parser.parse_args(argv)
    args.tasks = args.tasks or (1 if args.quick else 5)
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    started = time.perf_counter()
    result = {"mode": "quick" if args.quick else "full", "machine": machine()}
    tmp = Path(tempfile.mkdtemp(prefix="continual_lora_bench_"))
    try:
        ctx = Context(args, tmp)
        result["model"] = ctx.model_kind
        names = args.only or [n for n in SECTIONS if not (args.quick and n == "dry_run")]
        if args.quick and not args.only:
            result["dry_run"] = {"skipped": "quick mode"}
        result["section_load_average"] = {}
        for name in names:
            t, load = time.perf_counter(), load_average()
            result[name] = SECTIONS[name](ctx)
            # Other work on the machine slows every number; each section says how busy it was.
            result["section_load_average"][name] = {"start": load, "end": load_average()}
            print(f"{name}: {time.perf_counter() - t:.1f} s (load {load[0]} -> {load_average()[0]})", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["machine"]["load_average_end"] = load_average()
    result["wall_s"] = time.perf_counter() - started
    summary = (f"wrote {args.out} in {result['wall_s']:.0f} s (load average {result['machine']['load_average_start']} -> "
               f"{result['machine']['load_average_end']})")  # fmt: skip
    if args.update and Path(args.out).exists():
        # Sections rerun on a quieter machine replace their earlier numbers; the rest stay.
        earlier = json.loads(Path(args.out).read_text())
        earlier.setdefault("reruns", []).append({"sections": names, "machine": result["machine"]})
        earlier["section_load_average"] = earlier.get("section_load_average", {}) | result["section_load_average"]
        result = earlier | {name: result[name] for name in names}
    write_json(args.out, result)
    print(summary)
    return result


if __name__ == "__main__":
    main()
