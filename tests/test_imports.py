"""What the light jobs import: the config checks of every `snakemake` call and the jobs
that write tables, figures and audits read the metric and method registries and the
checkpoint files, and must not pull in transformers, diffusers or peft, which cost a
job seconds of start-up (benchmarks/README.md)."""

import subprocess
import sys

LIGHT_MODULES = (
    "continual_lora.aggregation",
    "continual_lora.atomic",
    "continual_lora.audit",
    "continual_lora.checkpoint",
    "continual_lora.config",
    "continual_lora.data.synthetic",  # the Snakefile's own imports
    "continual_lora.experiment",
    "continual_lora.reporting",
    "continual_lora.scoring",
)
HEAVY_LIBRARIES = ("transformers", "diffusers", "peft")


def test_the_registries_tables_figures_and_audits_leave_the_model_libraries_unimported():
    code = (
        "import sys\n"
        + "".join(f"import {module}\n" for module in LIGHT_MODULES)
        + f"print(' '.join(m for m in {HEAVY_LIBRARIES!r} if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
    # The registries are whole all the same: every backend registered itself.
    check = "from continual_lora.scoring import METRICS; from continual_lora.methods import METHODS; print(len(METRICS), len(METHODS))"
    counts = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout.split()
    assert counts == ["6", "10"]
