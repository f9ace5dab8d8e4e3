"""An experiment's forgetting tables from all its scores."""

import sys
from pathlib import Path

from continual_lora.aggregation import (
    per_run_scores,
    read_scores,
    summary_table,
    to_latex,
    to_markdown,
    write_mean_matrices,
)

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)

scores = read_scores(list(snakemake.input))
summary = summary_table(scores, snakemake.params.methods)
summary.to_csv(snakemake.output.summary, index=False)
per_run_scores(scores).to_csv(snakemake.output.per_run, index=False)
Path(snakemake.output.markdown).write_text(to_markdown(summary))
caption = f"Average score and average forgetting, experiment {snakemake.wildcards.experiment}."
Path(snakemake.output.latex).write_text(to_latex(summary, caption.replace("_", "\\_")))
write_mean_matrices(scores, snakemake.params.methods, snakemake.output.matrices)
print(summary.to_string())
