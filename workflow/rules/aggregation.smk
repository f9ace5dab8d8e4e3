rule summarize_experiment:
    input:
        get_experiment_scores,
    output:
        summary=report(
            "results/{experiment}/tables/summary.csv",
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="Tables",
        ),
        markdown="results/{experiment}/tables/summary.md",
        latex="results/{experiment}/tables/summary.tex",
        per_run="results/{experiment}/tables/per_run.csv",
        matrices=directory("results/{experiment}/tables/matrices"),
    log:
        "results/logs/{experiment}/summarize.log",
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/summarize_experiment.py"


rule plot_scores:
    input:
        scores=get_experiment_scores,
        per_run="results/{experiment}/tables/per_run.csv",
    output:
        report(
            directory("results/{experiment}/figures/scores"),
            patterns=["{name}.png"],
            caption="../report/score_figures.rst",
            category="{experiment}",
            subcategory="Forgetting",
        ),
    log:
        "results/logs/{experiment}/plot_scores.log",
    params:
        methods=METHODS,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_scores.py"


rule plot_samples:
    input:
        unpack(get_final_samples),
        base="results/{experiment}/base/samples",
    output:
        report(
            directory("results/{experiment}/figures/samples"),
            patterns=["{name}.png"],
            caption="../report/sample_grids.rst",
            category="{experiment}",
            subcategory="Samples",
        ),
    log:
        "results/logs/{experiment}/plot_samples.log",
    params:
        methods=METHODS,
        templates=get_grid_templates,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_samples.py"


rule plot_sign_conflicts:
    input:
        unpack(get_first_run_task_loras),
    output:
        report(
            directory("results/{experiment}/figures/sign_conflicts"),
            patterns=["{name}.png"],
            caption="../report/sign_conflicts.rst",
            category="{experiment}",
            subcategory="Sign conflicts",
        ),
    log:
        "results/logs/{experiment}/plot_sign_conflicts.log",
    params:
        methods=METHODS,
        n_tasks=lambda wildcards: EXPERIMENTS[wildcards.experiment].n_tasks,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/plot_sign_conflicts.py"
