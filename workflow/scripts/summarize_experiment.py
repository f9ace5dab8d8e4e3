"""An experiment's forgetting tables from all its scores, and the environment they
were made in."""

import sys

from continual_lora.warm import hand_over

# Where the workflow keeps a warm process (continual_lora.warm), the job runs in a
# fork of it, which has the libraries imported already; this process then ends here.
hand_over()

# Before the imports, so that what the libraries print while importing goes to the log.
sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

from continual_lora.aggregation import (
    per_run_scores,
    read_scores,
    summary_table,
    to_latex,
    to_markdown,
    write_mean_matrices,
)
from continual_lora.atomic import atomic_directory, atomic_output
from continual_lora.composition import read_composition
from continual_lora.environment import environment_record
from continual_lora.retention import read_retention

scores = read_scores(list(snakemake.input.scores))
# Empty where retention or composition is off: the summary is then the paper's alone.
retention = read_retention(list(snakemake.input.retention))
composition = read_composition(list(snakemake.input.composition))
summary = summary_table(scores, snakemake.params.methods, retention, composition)
measured = ["average score", "average forgetting"]
measured += [name for name, frame in (("retention", retention), ("composition", composition)) if not frame.empty]
caption = f"{', '.join(measured[:-1]).capitalize()} and {measured[-1]}, experiment {snakemake.wildcards.experiment}."
with atomic_output(snakemake.output.summary) as tmp:
    summary.to_csv(tmp, index=False)
with atomic_output(snakemake.output.per_run) as tmp:
    per_run_scores(scores).to_csv(tmp, index=False)
with atomic_output(snakemake.output.markdown) as tmp:
    tmp.write_text(to_markdown(summary))
with atomic_output(snakemake.output.latex) as tmp:
    tmp.write_text(to_latex(summary, caption.replace("_", "\\_")))
with atomic_directory(snakemake.output.matrices) as tmp:
    write_mean_matrices(scores, snakemake.params.methods, tmp)
with atomic_output(snakemake.output.environment) as tmp:
    tmp.write_text(environment_record(snakemake.input.metas))
print(summary.to_string())
