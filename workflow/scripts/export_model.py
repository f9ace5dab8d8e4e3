"""Export the model after a run's last task in a form diffusers loads."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.export import export_run
from continual_lora.methods import get_method

params = snakemake.params.export
summary = export_run(
    get_method(params["description"]["method"], params["method_settings"]),
    snakemake.input.handoff,
    list(snakemake.input.task_loras),
    snakemake.output[0],
    description=params["description"],
    base_model=params["base_model"],
    dtype=params["dtype"],
    scheduler=params["scheduler"],
)
print(f"exported {summary['export']['kind']}: {summary['export']['load']}")
