"""What 16-bit precision does to the numbers, measured on the embedded tiny model.

The paper trains and samples in float32, and so do the presets; bf16 training and
16-bit sampling are the faster, opt-in recipe. This script trains the same chain of
tasks for merge_and_init and magmax (the methods that fuse earlier tasks into the
frozen model) in float32 and in bf16, with the same seeds, and once more in float32
with another training seed, for scale: a precision effect well below the
seed-to-seed spread is lost in the paper's mean and std over runs. Then:

- update: the relative L2 difference of the final update W_T - W0 from the float32
  chain's, and the share of its elements that adding it into 16-bit weights would
  round away (what the pipeline avoids by keeping it beside them in float32);
- scores: ``colour_structure`` (on samples) and ``denoise`` (on the model) of every
  task, for the model after the last task, trained and sampled in each precision.

    python benchmarks/precision_effect.py --results /tmp/run/results --out precision.json
    python benchmarks/precision_effect.py --model M --concepts C1 C2 --steps 2 --quick --out q.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
import yaml
from benchlib import REPO, machine, write_json

from continual_lora import checkpoint, layout
from continual_lora.data.concepts import CONCEPT_FILE, read_concept
from continual_lora.generation import GenerationSettings, generate_samples, read_index
from continual_lora.lora import LoraSpec, targeted_linears
from continual_lora.models.loading import checkpoint_deltas, load_pipeline
from continual_lora.scoring import ModelHandle, ScoringInput, get_metric
from continual_lora.training import TrainingSettings, train_task

CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
METHODS = ("merge_and_init", "magmax")
# name: (training precision, training seed)
CHAINS = {"float32": ("no", 0), "bf16": ("bf16", 0), "float32, seed 1": ("no", 1)}
# name: (chain, sampling and scoring precision)
EVALUATIONS = {
    "float32 / float32": ("float32", "float32"),
    "bf16 / float32": ("bf16", "float32"),
    "float32 / bfloat16": ("float32", "bfloat16"),
    "float32 / float16": ("float32", "float16"),
    "float32 seed 1 / float32": ("float32, seed 1", "float32"),
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", help="a finished default run (its tiny model and data)")
    parser.add_argument("--model", help="a diffusers model folder (default: RESULTS/models/tiny)")
    parser.add_argument("--concepts", nargs="+", help="prepared concept folders, in task order")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--steps", type=int, help="training steps per task (default: config.yaml's)")
    parser.add_argument(
        "--learning-rate", type=float,
        help="default: config.yaml's 5e-3, whose updates are most of W0; about 2e-5 gives the paper's "
        "regime of updates a few thousandths of W0, where 16-bit rounding bites",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="one sample per prompt, 2 sampler steps: for the tests")
    parser.add_argument("--out", default="benchmarks/results/precision_effect.json")
    return parser.parse_args(argv)


def inputs(args) -> tuple[Path, list[Path]]:
    results = Path(args.results)
    model = Path(args.model) if args.model else layout.in_results(results, layout.TINY_MODEL, model="tiny")
    if args.concepts:
        concepts = [Path(c) for c in args.concepts]
    else:
        data = layout.in_results(results, layout.DATA, experiment="tiny_objects")
        concepts = sorted(p.parent for p in data.glob(f"*/{CONCEPT_FILE}"))
    return model, concepts[: args.tasks]


def training_settings(args) -> dict:
    settings = dict(CONFIG["training"])
    if args.steps:
        settings["steps"] = args.steps
    if args.learning_rate:
        settings["learning_rate"] = args.learning_rate
    return settings


def train_chain(model, concepts, method, precision, seed, training: dict, out: Path) -> Path:
    settings = training | {"mixed_precision": precision}
    spec = LoraSpec.from_config(CONFIG["lora"])
    previous = None
    for task, concept in enumerate(concepts, start=1):
        folder = out / f"task{task}"
        train_task(base_model=model, method=method, task_index=task, concept_dir=concept, previous_handoff=previous,
                   spec=spec, settings=TrainingSettings.from_config(settings), training_seed=seed, out_dir=folder, device="cpu",
                   log=lambda line: None)  # fmt: skip
        previous = folder / checkpoint.HANDOFF
    return previous


def relative_difference(a: dict, b: dict) -> float:
    num = sum(float((a[k].double() - b[k].double()).pow(2).sum()) for k in a)
    den = sum(float(b[k].double().pow(2).sum()) for k in b)
    return (num / den) ** 0.5


def rounded_away(model, update: dict, dtype: torch.dtype) -> float:
    """Share of the update's elements (kept by float32) that W0 + update in ``dtype`` loses."""
    base = {name: layer.weight.detach() for name, layer in targeted_linears(load_pipeline(model).unet, LoraSpec(1, 1)).items()}
    lost = kept = 0
    for name, delta in update.items():
        w0 = base[name]
        in_float32 = (w0 + delta) - w0 != 0
        low = (w0.to(dtype) + delta.to(dtype)) - w0.to(dtype) == 0
        lost += int((in_float32 & low).sum())
        kept += int(in_float32.sum())
    return lost / kept


def scores(model, handoff: Path, concepts, dtype: str, quick: bool, tmp: Path) -> dict[str, list[float]]:
    deltas = checkpoint_deltas(handoff)
    pipeline = load_pipeline(model, deltas, dtype=dtype)
    evaluation = CONFIG["evaluation"]
    settings = GenerationSettings(
        templates=tuple(evaluation["templates"]["objects"]),
        samples_per_prompt=1 if quick else evaluation["samples_per_prompt"],
        inference_steps=2 if quick else evaluation["inference_steps"],
        guidance_scale=evaluation["guidance_scale"],
        latent_seed=42,
        batch_size=evaluation["batch_size"],
        resolution=CONFIG["training"]["resolution"],
    )
    prepared = [read_concept(c) for c in concepts]
    generate_samples(pipeline, [(i, p.concept) for i, p in enumerate(prepared, start=1)], settings, tmp)
    from PIL import Image

    rows = read_index(tmp)
    colour = get_metric("colour_structure", CONFIG["metric_settings"]["colour_structure"], "cpu")
    denoise = get_metric("denoise", {}, "cpu")
    handle = ModelHandle(pipeline, deltas)
    out = {"colour_structure": [], "denoise": []}
    for task, concept_dir in enumerate(concepts, start=1):
        mine = [r for r in rows if r["task"] == str(task)]
        samples = [Image.open(tmp / r["file"]).convert("RGB") for r in mine]
        job = ScoringInput.from_concept_dir(concept_dir, samples, [r["prompt"] for r in mine], model=handle)
        out["colour_structure"].append(colour.score(job))
        out["denoise"].append(denoise.score(job))
    return out


def main(argv=None) -> dict:
    args = parse_args(argv)
    model, concepts = inputs(args)
    if not (model / "model_index.json").is_file() or len(concepts) < args.tasks:
        sys.exit(f"need a model at {model} and {args.tasks} prepared concepts: run the default workflow first")
    torch.set_num_threads(1)  # as a workflow job runs, so the numbers are a job's numbers
    started = time.perf_counter()
    training = training_settings(args)
    result = {"machine": machine(), "model": str(model), "concepts": [c.name for c in concepts],
              "training": training, "methods": {}}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for method in METHODS:
            handoffs, seconds = {}, {}
            for name, (precision, seed) in CHAINS.items():
                clock = time.perf_counter()
                handoffs[name] = train_chain(model, concepts, method, precision, seed, training, tmp / method / name)
                seconds[name] = round(time.perf_counter() - clock, 2)
            updates = {name: checkpoint_deltas(path) for name, path in handoffs.items()}
            reference = updates["float32"]
            w0_norm = {
                name: float(layer.weight.norm())
                for name, layer in targeted_linears(load_pipeline(model).unet, LoraSpec(1, 1)).items()
            }
            evaluated = {}
            for name, (chain, dtype) in EVALUATIONS.items():
                evaluated[name] = scores(model, handoffs[chain], concepts, dtype, args.quick, tmp / method / "samples" / name)
            result["methods"][method] = {
                "train_seconds": seconds,
                "update_over_w0": sum(float(d.norm()) for d in reference.values()) / sum(w0_norm.values()),
                "update_relative_difference": {
                    name: relative_difference(updates[name], reference) for name in CHAINS if name != "float32"
                },
                "rounded_away_if_added_into": {
                    name: rounded_away(model, reference, dtype) for name, dtype in DTYPES.items()
                },
                "scores": evaluated,
            }
    result["seconds"] = round(time.perf_counter() - started, 1)
    write_json(Path(args.out), result)
    for method, found in result["methods"].items():
        print(f"{method}: update/W0 {found['update_over_w0']:.4f}; rounded away if added: "
              + ", ".join(f"{k} {v:.1%}" for k, v in found["rounded_away_if_added_into"].items()))  # fmt: skip
        print("  update vs float32: " + ", ".join(f"{k} {v:.4f}" for k, v in found["update_relative_difference"].items()))
        base = found["scores"]["float32 / float32"]
        for name, values in found["scores"].items():
            diffs = {m: sum(abs(a - b) for a, b in zip(v, base[m])) / len(v) for m, v in values.items()}
            means = {m: sum(v) / len(v) for m, v in values.items()}
            print(f"  {name:26s} " + "  ".join(f"{m} {means[m]:.4f} (|d| {diffs[m]:.4f})" for m in means))
    return result


if __name__ == "__main__":
    main()
