"""The benchmark scripts run and write the JSON they promise. Their numbers are
measurements, reported in benchmarks/README.md; here only their presence and sign."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"

TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def assert_positive(payload: dict, *keys: str) -> None:
    for key in keys:
        value = payload[key]
        assert isinstance(value, (int, float)) and value > 0, (key, value)


def test_the_gpu_script_runs_both_recipes_in_smoke_mode(tmp_path):
    out = tmp_path / "gpu.json"
    printed = run("gpu_recipes.py", "--smoke", "--out", str(out))
    result = json.loads(out.read_text())

    assert result["mode"] == "smoke"
    assert result["architecture"]["lora_rank"] == 64  # config/sdxl.yaml's
    for recipe in ("ours", "reference"):
        train = result["training"][recipe]
        assert_positive(train, "step_s", "steps_per_s", "peak_process_rss_bytes", "lora_parameters")
        # Smoke mode takes no warm-up steps: one loss per timed step.
        assert len(train["losses"]) == train["timed_steps"] and all(loss > 0 for loss in train["losses"])
        assert train["lora_dtype"] == "float32"
        generation = result["generation"][recipe]
        assert_positive(generation, "images_per_s", "s_per_image", "generate_s", "peak_process_rss_bytes")
        assert generation["images_returned"] == generation["images"] == generation["batch_size"]
    ours, reference = result["training"]["ours"], result["training"]["reference"]
    # The preset is the paper's recipe (float32, checkpointing, 8-bit AdamW); the
    # reference differs in encoding every step's image and sampling the adapter unfused.
    for recipe in (ours, reference):
        assert recipe["settings"]["mixed_precision"] == "no" and recipe["settings"]["gradient_checkpointing"] is True
        assert recipe["settings"]["optimizer"] == "adamw_8bit" and recipe["optimizer_used"]
    assert reference["vae_encodes_every_step"] and reference["vae_dtype"] == "float32"
    assert not ours["vae_encodes_every_step"]
    assert result["generation"]["ours"]["batch_size"] == result["generation"]["reference"]["batch_size"] == 5
    assert result["generation"]["ours"]["lora"] != result["generation"]["reference"]["lora"]
    assert set(result["ratios"]) == {
        "train_step_time_reference_over_ours",
        "train_peak_memory_reference_over_ours",
        "generation_images_per_s_ours_over_reference",
        "generation_peak_memory_ours_over_reference",
    }
    assert_positive(result["ratios"], *result["ratios"])
    # 2 domains x 4 methods x 8 runs x 10 tasks; 55 checkpoint-task pairs x 40 images
    # per run, plus the base model's 10 x 40 per domain.
    workload = result["paper_reproduction"]
    assert workload["train_jobs"] == 640 and workload["train_steps"] == 640 * 850
    assert workload["images"] == 2 * (4 * 8 * 55 * 40 + 10 * 40)
    assert "train_step_time_reference_over_ours" in printed
    # Metric by metric, the images each paper metric scores over the whole paper.
    assert workload["images_scored_by_metric"] == {"clip_i": workload["images"] // 2, "dino": workload["images"],
                                                   "csd": workload["images"] // 2}  # fmt: skip


def test_the_gpu_scripts_variants_run_in_smoke_mode(tmp_path):
    out = tmp_path / "extras.json"
    extras = ["scoring", "train-no-checkpointing", "generate-float32-extrapolated", "generate-float16-fused",
              "generate-compiled", "train-classic-attention"]  # fmt: skip
    # The eager backend: the compiled path in seconds; inductor is what the GPU run uses.
    run("gpu_recipes.py", "--smoke", "--only-extras", "--compile-backend", "eager", "--out", str(out), "--extras", *extras)
    result = json.loads(out.read_text())

    assert list(result["extras"]) == extras and not result["training"]
    assert not [name for name, extra in result["extras"].items() if "error" in extra]
    scoring = result["extras"]["scoring"]
    for metric, width in (("dino", 32), ("clip_i", 512), ("csd", 16)):  # the smoke networks' feature sizes
        assert scoring[metric]["features"] == [scoring["images"], width]
        assert_positive(scoring[metric], "s_per_image", "parameters")
    assert result["extras"]["train-no-checkpointing"]["settings"]["gradient_checkpointing"] is False
    assert result["extras"]["train-classic-attention"]["attention_processor"] == "AttnProcessor"
    extrapolated = result["extras"]["generate-float32-extrapolated"]
    assert extrapolated["timed_steps"] == [2, 4] and extrapolated["timing"] == "extrapolated to 2 steps"
    # (A sampler step's time is the difference of two tiny timings here: noise, not checked.)
    assert_positive(extrapolated, "images_per_s")
    # The batch's time at the preset's step count, from the two timed batches.
    assert abs(extrapolated["generate_s"] - (extrapolated["fixed_s_per_batch"] + 2 * extrapolated["sampler_step_s"])) < 1e-9
    assert result["extras"]["generate-float16-fused"]["update"] == "fused"
    assert result["extras"]["generate-float16-fused"]["dtype"] == "float16"
    assert result["extras"]["generate-compiled"]["compiled"] is True


def test_the_cpu_suite_runs_in_quick_mode(tmp_path):
    # A finished run in miniature: benchmark files, each named after its rule
    # (continual_lora.layout.benchmark), and Snakemake's log.
    results = tmp_path / "run" / "results"
    for path, seconds in [("models/tiny/pretrain_tiny_model.tsv", 5.5), ("exp/naive/order0_seed0/task1/train_task.tsv", 2.0),
                          ("exp/base/generate_base_samples.tsv", 1.5),
                          ("exp/naive/order0_seed0/task1/score_samples.tsv", 1.0)]:  # fmt: skip
        (results / "benchmarks" / path).parent.mkdir(parents=True, exist_ok=True)
        (results / "benchmarks" / path).write_text(TSV_HEADER + f"{seconds}\t0:00:0{int(seconds)}\t400.0\t1\t1\t1\t0\t0\t50\t1\n")
    log = tmp_path / "run" / ".snakemake" / "log" / "2026-01-01T000000.000000.snakemake.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "[Thu Jan  1 00:00:00 2026]\nlocalrule prepare_concept:\n    output: x\n    jobid: 3\n"
        "[Thu Jan  1 00:00:02 2026]\nFinished jobid: 3 (Rule: prepare_concept)\n"
        "[Thu Jan  1 00:00:03 2026]\nlocalrule train_task:\n    output: y\n    jobid: 1\n"
        "[Thu Jan  1 00:00:07 2026]\nFinished jobid: 1 (Rule: train_task)\n"
    )
    out = tmp_path / "cpu.json"
    run("cpu_suite.py", "--quick", "--results", str(results), "--out", str(out))
    result = json.loads(out.read_text())

    assert result["mode"] == "quick" and result["dry_run"] == {"skipped": "quick mode"}
    assert_positive(result["startup"], "python_s", "train_task_imports_s")
    assert_positive(result["loading"], "base_s", "with_adapter_handoff_s", "with_delta_handoff_s")
    assert_positive(result["training"], "step_s", "steps_per_s", "load_s", "cache_s", "fixed_costs_s")
    assert_positive(result["generation"], "images_per_s")
    profiled = result["generation"]["by_batch_size"][str(result["generation"]["batch_size"])]
    assert set(profiled["profile_s"]) >= {"unet", "vae_decoder", "text_encoder"}
    assert_positive(result["evaluation"], "denoise_s", "generate_s", "colour_structure_s", "denoise_over_generate_then_score")

    methods = result["checkpoints"]["tiny"]["methods"]
    assert set(methods) == {"naive", "merge_and_init", "ortho_init", "magmax"}
    for entry in methods.values():
        assert_positive(entry, "handoff.safetensors", "per_task_bytes", "per_task_over_save_pretrained_float32")
        assert entry["same_every_task"]
    # A delta handoff holds whole weight matrices, an adapter only its factors.
    assert methods["magmax"]["handoff.safetensors"] > methods["naive"]["handoff.safetensors"]
    sdxl = result["checkpoints"]["sdxl_computed"]
    assert sdxl["unet_parameters"] == 2_567_463_684 and sdxl["targeted_modules"] == 70 * 8

    rules = result["rules"]
    assert rules["benchmarks"]["pretrain_tiny_model"] == {
        "jobs": 1, "total_s": 5.5, "mean_s": 5.5, "total_cpu_s": 1.0, "mean_max_rss_mb": 400.0
    }
    assert {"train_task", "generate_base_samples", "score_samples"} <= set(rules["benchmarks"])
    assert rules["log"]["wall_s"] == 7 and rules["log"]["jobs_s"] == 6 and rules["log"]["between_jobs_s"] == 1
    assert rules["log"]["per_rule"]["train_task"] == {"jobs": 1, "total_s": 4.0}


def test_the_precision_script_compares_the_chains_and_their_scores(tmp_path, tiny_model_dir, object_concepts_dir):
    out = tmp_path / "precision.json"
    concepts = [str(c) for c in object_concepts_dir]
    run("precision_effect.py", "--model", str(tiny_model_dir), "--concepts", *concepts, "--tasks", "2",
        "--steps", "2", "--quick", "--out", str(out))  # fmt: skip
    result = json.loads(out.read_text())
    for method in ("merge_and_init", "magmax"):
        found = result["methods"][method]
        assert set(found["update_relative_difference"]) == {"bf16", "float32, seed 1"}
        assert all(value > 0 for value in found["update_relative_difference"].values())
        assert 0 <= found["rounded_away_if_added_into"]["float16"] <= found["rounded_away_if_added_into"]["bfloat16"] <= 1
        assert set(found["scores"]) == {
            "float32 / float32", "bf16 / float32", "float32 / bfloat16", "float32 / float16", "float32 seed 1 / float32"
        }  # fmt: skip
        for values in found["scores"].values():
            assert len(values["colour_structure"]) == len(values["denoise"]) == 2
