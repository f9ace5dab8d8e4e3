"""Markdown tables from the suites' JSON, for benchmarks/README.md (so no number is
copied by hand).

    python benchmarks/tables.py benchmarks/results/cpu_suite.json [gpu_recipes.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds_table(label: str, section: dict, digits: int) -> str:
    """The section's timings (keys ending in ``_s`` with a number), one row each."""
    rows = [[k.removesuffix("_s"), f"{v:.{digits}f}"] for k, v in section.items() if k.endswith("_s") and isinstance(v, float)]
    return table([label, "s"], rows)


def mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def cpu_tables(r: dict) -> str:
    out = []
    m = r["machine"]
    out.append(f"Machine: {m['platform']}, {m['cpu_count']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
               f"diffusers {m.get('diffusers')}; {m['date_utc']}; commit {m['commit']}; model: {r['model']}.")  # fmt: skip
    for rerun in r.get("reruns", []):
        out.append(f"Rerun later: {', '.join(rerun['sections'])} on {rerun['machine']['date_utc']}, "
                   f"commit {rerun['machine']['commit']}.")  # fmt: skip
    loads = r.get("section_load_average", {})
    if loads:
        out.append("Load average (1 min) at the start and end of each section: "
                   + ", ".join(f"{k} {v['start'][0]}-{v['end'][0]}" for k, v in loads.items()) + ".")  # fmt: skip
    if "startup" in r:
        s = r["startup"]
        out.append(f"\n**Per-job start-up** (fresh interpreter, median of {s['repeats']})\n")
        out.append(seconds_table("what", s, 2))
    if "training" in r:
        t = r["training"]
        out.append("\n**Training** (" + ", ".join(f"{k} {v}" for k, v in t["settings"].items()) + ")\n")
        out.append(table(["steps/s", "images/s", "load s", "attach s", "cache s", "save s", f"{t['settings']['config_steps']} steps s"],
                         [[f"{t['steps_per_s']:.1f}", f"{t['images_per_s']:.0f}", f"{t['load_s']:.2f}", f"{t['attach_s']:.2f}",
                           f"{t['cache_s']:.2f}", f"{t['save_s']:.3f}", f"{t['config_steps_s']:.1f}"]]))  # fmt: skip
    if "generation" in r:
        g = r["generation"]
        out.append(f"\n**Generation** ({g['inference_steps']} steps, guidance on)\n")
        rows = []
        for batch, e in g["by_batch_size"].items():
            profile = e.get("profile_s")
            share = ", ".join(f"{k} {v / e['seconds']:.0%}" for k, v in profile.items()) if profile else ""
            rows.append([batch, e["images"], f"{e['seconds']:.2f}", f"{e['images_per_s']:.2f}", share])
        out.append(table(["batch", "images", "s", "images/s", "time inside"], rows))
    if "loading" in r:
        lo = r["loading"]
        out.append(f"\n**Model loading** (median of {lo['repeats']})\n")
        out.append(seconds_table("what", lo, 3))
    if "evaluation" in r:
        e = r["evaluation"]
        out.append(f"\n**One checkpoint, {e['tasks_seen']} tasks seen: denoise against generate-then-score**\n")
        out.append(seconds_table("step", e, 2))
        out.append(f"\ndenoise / generate-then-score = {e['denoise_over_generate_then_score']:.2f}; UNet rows per task: "
                   f"generation {e['unet_rows_per_task']['generation']}, denoise {e['unet_rows_per_task']['denoise']}.")  # fmt: skip
    if "checkpoints" in r:
        c = r["checkpoints"]
        tiny = c["tiny"]
        out.append("\n**Checkpoint bytes per task, tiny model (files written)**\n")
        rows = [[m, e["format"], e["handoff.safetensors"], e["task_lora.safetensors"], e["init_lora.safetensors"], e["per_task_bytes"],
                 f"{e['per_task_over_save_pretrained_float32']:.3f}"] for m, e in tiny["methods"].items()]  # fmt: skip
        out.append(table(["method", "handoff format", "handoff", "task_lora", "init_lora", "per task", "/ save_pretrained fp32"], rows))
        out.append(f"\nWhole UNet with save_pretrained: {tiny['save_pretrained_float32_bytes']} bytes (fp32), "
                   f"{tiny['save_pretrained_float16_bytes']} (fp16).")  # fmt: skip
        x = c["sdxl_computed"]
        out.append(f"\n**SDXL, rank 64 (computed from the architecture's shapes, not written)**: {x['targeted_modules']} modules; "
                   f"adapter {mb(x['adapter_bytes'])}, delta {mb(x['delta_bytes'])}, whole UNet fp16 {mb(x['save_pretrained_float16_bytes'])}.\n")  # fmt: skip
        out.append(table(["method", "per task", "/ save_pretrained fp16"],
                         [[m, mb(b), f"{x['per_task_over_save_pretrained_float16'][m]:.2f}"] for m, b in x["per_task_bytes"].items()]))  # fmt: skip
        if "paper_total_bytes" in x:
            out.append(f"\nAll {x['paper_checkpoints']} checkpoints of the paper: {mb(x['paper_total_bytes'])}, against "
                       f"{mb(x['paper_total_save_pretrained_float16_bytes'])} as fp16 save_pretrained UNets.")  # fmt: skip
        if "sdxl_checkpoint_deltas_cpu" in c:
            d = c["sdxl_checkpoint_deltas_cpu"]
            out.append(f"\nTurning an SDXL rank-64 adapter into its {d['modules']} deltas on this CPU: "
                       f"factor_deltas (float64) {d['factor_deltas_float64_s']:.1f} s, the same product in float32 "
                       f"{d['matmul_float32_s']:.1f} s (load {d['load_average'][0]}).")  # fmt: skip
    if "rules" in r and isinstance(r["rules"].get("benchmarks"), dict):
        rules = r["rules"]
        log = rules.get("log", {}).get("per_rule", {})
        out.append(f"\n**Default run per rule** ({rules['results']})\n")
        names = sorted(set(rules["benchmarks"]) | set(log))
        rows = []
        for name in names:
            b = rules["benchmarks"].get(name)
            lg = log.get(name, {})
            jobs = b["jobs"] if b else lg.get("jobs", "")
            rows.append([name, jobs, f"{b['total_s']:.0f}" if b else f"({lg.get('total_s', 0):.0f})",
                         f"{b['mean_s']:.1f}" if b else "", f"{b['total_cpu_s']:.0f}" if b else "",
                         f"{b['mean_max_rss_mb']:.0f}" if b else ""])  # fmt: skip
        out.append(table(["rule", "jobs", "wall s", "mean s", "cpu s", "max RSS MB"], rows))
        if "log" in rules:
            lg = rules["log"]
            if lg["jobs_s"] <= lg["wall_s"]:  # one job at a time: the rest is Snakemake's own time
                overlap = f"between jobs: {lg['between_jobs_s']:.0f} s"
            else:
                overlap = (f"jobs ran side by side, their times sum to {lg['jobs_s']:.0f} s, "
                           f"{lg['jobs_s'] / lg['wall_s']:.2f} x the wall time")  # fmt: skip
            out.append(f"\nRun wall time from the log: {lg['wall_s']:.0f} s for {lg['jobs_finished']} jobs; "
                       f"{overlap}. Parenthesised: from the log (1 s resolution), "
                       "for rules without a benchmark file.")  # fmt: skip
    if "dry_run" in r and "median_s" in r["dry_run"]:
        d = r["dry_run"]
        out.append(f"\n**Dry run of {d['preset']}**: {d['jobs']} jobs, {', '.join(f'{s:.1f}' for s in d['runs_s'])} s "
                   f"(snakemake --version alone: {d['snakemake_version_s']:.1f} s).")  # fmt: skip
    return "\n".join(out)


def gpu_tables(r: dict) -> str:
    m = r["machine"]
    out = [f"Device: {m.get('gpu', m['device'])}; {m['date_utc']}; commit {m['commit']}; {r['bitsandbytes']}."]
    peak = "peak_allocated_bytes" if r["mode"] == "gpu" else "peak_process_rss_bytes"
    if r["training"]:
        out.append(comparison_tables(r, peak))
    if r.get("extras"):
        out.append("\n" + extras_tables(r, peak))
    return "\n".join(out)


def extras_tables(r: dict, peak: str) -> str:
    """One row per variant: its step time or sampling rate, its memory, and the paper's
    GPU-hours with it in place of ours (where the comparison ran too)."""
    hours = r.get("paper_reproduction", {}).get("variants_gpu_hours", {})
    rows = []
    for name, e in r["extras"].items():
        if name == "scoring" or "error" in e:
            continue
        measured = f"{e['step_s']:.3f} s/step" if "step_s" in e else f"{e['images_per_s']:.3f} images/s"
        detail = f"batch {e['batch_size']}, {e['sampler_step_s']:.3f} s per sampler step" if "sampler_step_s" in e else (
            f"{e['timed_steps']} timed steps")  # fmt: skip
        total = f"{hours[name]['total_h']:.0f}" if name in hours else ""
        rows.append([name, measured, detail, mb(e[peak]), total])
    out = [table(["variant", "measured", "how", "peak memory", "paper GPU-h"], rows)]
    failed = [f"{name}: {e['error']}" for name, e in r["extras"].items() if "error" in e]
    if failed:
        out.append("Failed: " + "; ".join(failed))
    scoring = r["extras"].get("scoring")
    if scoring and "error" not in scoring:
        rows = [[metric, f"{s['parameters'] / 1e6:.1f} M", f"{1000 * s['s_per_image']:.1f}", f"{s['load_s']:.2f}", mb(s[peak])]
                for metric, s in scoring.items() if isinstance(s, dict)]  # fmt: skip
        out.append(f"\nScoring {scoring['images']} images of {scoring['image_size']} px:\n")
        out.append(table(["metric", "parameters", "ms/image", "load s", "peak memory"], rows))
        if "scoring_h" in r.get("paper_reproduction", {}):
            out.append(f"\nThe paper's scoring: {r['paper_reproduction']['scoring_h']:.2f} GPU-h.")
    return "\n".join(out)


def comparison_tables(r: dict, peak: str) -> str:
    out = []
    rows = [[name, f"{t['step_s']:.3f}", mb(t[peak]), t["optimizer_used"], t["attention_processor"]] for name, t in r["training"].items()]
    out.append(table(["training", "s/step", "peak memory", "optimizer", "attention"], rows))
    rows = [[name, g["batch_size"], g["dtype"], f"{g['images_per_s']:.3f}", mb(g[peak])] for name, g in r["generation"].items()]
    out.append("\n" + table(["generation", "batch", "dtype", "images/s", "peak memory"], rows))
    out.append("\n" + table(["ratio", "value"], [[k, f"{v:.2f}"] for k, v in r["ratios"].items()]))
    hours = r["paper_reproduction"]["gpu_hours"]
    if isinstance(hours, dict):
        rows = [[name, f"{h['train_h']:.0f}", f"{h['generate_h']:.0f}", f"{h['total_h']:.0f}"] for name, h in hours.items()]
        out.append("\n" + table(["paper reproduction", "training GPU-h", "generation GPU-h", "total GPU-h"], rows))
    return "\n".join(out)


if __name__ == "__main__":
    for path in sys.argv[1:]:
        payload = json.loads(Path(path).read_text())
        print(gpu_tables(payload) if "generation" in payload else cpu_tables(payload))
        print()
