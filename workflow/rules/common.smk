from snakemake.logging import logger
from snakemake.utils import min_version, validate

from dataclasses import asdict

from continual_lora import layout
from continual_lora.data.synthetic.catalogue import GENERIC_CLASSES
from continual_lora.experiment import experiments_from_config, metric_names, parse_run
from continual_lora.layout import path

min_version("9.0")


validate(config, schema="../schemas/config.schema.yaml")
# A dry run shows the whole graph before the datasets are downloaded: their concepts
# are stand-ins named so; any other run refuses a missing dataset before any job.
DRY_RUN = workflow.output_settings.dryrun
# The checks open model folders and dataset images, and import the method and metric
# registries (torch); the main process has done them before any job was scheduled,
# so a job's own Snakemake process (on a cluster node) skips them. The registries'
# defaults are written in there too, where Snakemake decides what to rerun; a job
# builds its method and metrics with the same defaults itself.
if workflow.is_main_process:
    from continual_lora.config import check_config, fill_plugin_defaults, missing_datasets

    check_config(config, schema=workflow.source_path("../schemas/config.schema.yaml"), missing_data_ok=DRY_RUN)
    fill_plugin_defaults(config)
    MISSING_DATASETS = missing_datasets(config) if DRY_RUN else []
    if MISSING_DATASETS:
        logger.warning(
            "Dry run without the data: a real run refuses to start until each dataset is in place.\n  "
            + "\n  ".join(MISSING_DATASETS)
        )


EXPERIMENTS = experiments_from_config(config, missing_data_ok=DRY_RUN)
METHODS = list(config["methods"])


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    method="|".join(METHODS),
    run=r"order\d+_seed\d+",
    task=r"[1-9]\d*",
    concept=r"[a-z0-9_]+",


def canonical(value):
    """``value`` with every mapping's keys sorted. Snakemake reruns a job when the text
    of its params changes, and a config whose keys are merely reordered (a preset
    rewritten by a YAML tool) must not retrain anything."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, (list, tuple)):
        return [canonical(item) for item in value]
    return value


def uses_tiny_model():
    return config["base_model"]["name"] == "tiny"


# The embedded model's folder and sample grid, under the name tiny_model.name gives them.
TINY_MODEL = path(layout.TINY_MODEL, model=config["tiny_model"]["name"])
TINY_SAMPLES = path(layout.TINY_SAMPLES, model=config["tiny_model"]["name"])


def tiny_model_settings():
    """What the pretraining is given (continual_lora.models.tiny.TinyModelSettings):
    every tiny_model key but the folder's name."""
    return canonical({key: value for key, value in config["tiny_model"].items() if key != "name"})


def base_model_ref():
    """What the scripts load (continual_lora.models.loading.ModelSource): the embedded
    model's folder, or a hub id or path with its optional VAE and variant."""
    return config["base_model"] | {"name": TINY_MODEL} if uses_tiny_model() else config["base_model"]


def get_base_model(wildcards=None):
    """The base model as a workflow input: the embedded model when it is built here."""
    return TINY_MODEL if uses_tiny_model() else []


def method_settings(method):
    """The settings a method is built with to evaluate its checkpoints."""
    return config["method_settings"].get(method, {})


def training_method_settings(method):
    """The settings a method trains and is audited with: all but those that only choose
    the model evaluated, which must not retrain anything."""
    # Here, not at the top: the registry imports torch, which only the training and
    # audit jobs (and the main process's config checks) load anyway.
    from continual_lora.methods import METHODS as REGISTERED_METHODS

    evaluation_only = REGISTERED_METHODS[method].evaluation_settings
    return {key: value for key, value in method_settings(method).items() if key not in evaluation_only}


def concept_dirs(experiment, concepts):
    return [path(layout.CONCEPT, experiment=experiment.name, concept=concept.name) for concept in concepts]


def seen_concepts(wildcards):
    """The concepts of every task of the run up to task t (what is evaluated), in task order."""
    return EXPERIMENTS[wildcards.experiment].tasks(wildcards.run)[: int(wildcards.task)]


# --------------------------------------------------------------------------- data


def get_concept(wildcards):
    return asdict(EXPERIMENTS[wildcards.experiment].concept(wildcards.concept))


def get_dataset_settings(wildcards):
    return canonical(EXPERIMENTS[wildcards.experiment].dataset)


def get_tiny_sample_prompts():
    """Class-level prompts: what the pretrained tiny model should already draw."""
    return [f"a photo of a {class_word}" for class_word in GENERIC_CLASSES]


# --------------------------------------------------------------------------- training


def get_train_task_input(wildcards):
    """Task t sees its own prepared data, the base model W0, and for t > 1 task t-1's
    handoff: nothing else of an earlier task, as the continual regime demands."""
    experiment = EXPERIMENTS[wildcards.experiment]
    task = int(wildcards.task)
    concept = experiment.task(wildcards.run, task)
    inputs = {"concept": path(layout.CONCEPT, experiment=experiment.name, concept=concept.name)}
    if get_base_model():
        inputs["base_model"] = get_base_model()
    if task > 1:
        inputs["previous"] = path(
            layout.HANDOFF, experiment=experiment.name, method=wildcards.method, run=wildcards.run, task=task - 1
        )
    return inputs


def get_train_task_params(wildcards):
    return canonical({
        "base_model": base_model_ref(),
        "method_settings": training_method_settings(wildcards.method),
        "training_seed": parse_run(wildcards.run)[1],
        "lora": config["lora"],
        "training": config["training"],
        "device": config["device"],
    })


def run_checkpoint_files(wildcards, template):
    """``template`` (a checkpoint file) of every task of one run, in task order."""
    n_tasks = EXPERIMENTS[wildcards.experiment].n_tasks
    return [
        path(template, experiment=wildcards.experiment, method=wildcards.method, run=wildcards.run, task=task)
        for task in range(1, n_tasks + 1)
    ]


def experiment_checkpoint_files(experiment, template):
    """``template`` (a file of one task) of every checkpoint of ``experiment``, by
    method, run and task."""
    return [
        path(template, experiment=experiment.name, method=method, run=run, task=task)
        for method in METHODS
        for run in experiment.runs
        for task in range(1, experiment.n_tasks + 1)
    ]


def get_run_handoffs(wildcards):
    return run_checkpoint_files(wildcards, layout.HANDOFF)


def get_run_init_loras(wildcards):
    return run_checkpoint_files(wildcards, layout.INIT_LORA)


def get_run_task_loras(wildcards):
    return run_checkpoint_files(wildcards, layout.TASK_LORA)


def get_audit_chain_params(wildcards):
    return canonical(training_method_settings(wildcards.method))


# --------------------------------------------------------------------------- evaluation


def get_seen_concept_dirs(wildcards):
    return concept_dirs(EXPERIMENTS[wildcards.experiment], seen_concepts(wildcards))


def get_all_concept_dirs(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return concept_dirs(experiment, experiment.concepts)


def evaluation_scheduler(method):
    """The sampler ``method``'s models are evaluated with: its own, else the common one."""
    evaluation = config["evaluation"]
    return evaluation["method_schedulers"].get(method, evaluation["scheduler"])


def generation_params(experiment, method, tasks):
    """The sampler's settings for ``method``'s model, and ``tasks``: (task index in
    the run or None for the base model, concept) of every task to sample."""
    evaluation = config["evaluation"]
    return canonical({
        "base_model": base_model_ref(),
        "device": config["device"],
        "tasks": [(index, asdict(concept)) for index, concept in tasks],
        "method": method,
        "method_settings": method_settings(method),
        "settings": {
            "templates": evaluation["templates"][experiment.domain],
            "samples_per_prompt": evaluation["samples_per_prompt"],
            "inference_steps": evaluation["inference_steps"],
            "guidance_scale": evaluation["guidance_scale"],
            "latent_seed": evaluation["latent_seed"],
            "noise_device": evaluation["noise_device"],
            "batch_size": evaluation["batch_size"],
            "resolution": config["training"]["resolution"],
            "scheduler": evaluation_scheduler(method),
        },
        "dtype": evaluation["dtype"],
        "allow_tf32": evaluation["allow_tf32"],
    })


def get_generate_samples_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return generation_params(experiment, wildcards.method, enumerate(seen_concepts(wildcards), start=1))


def get_generate_base_samples_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return generation_params(experiment, "base", [(None, concept) for concept in experiment.concepts])


def scoring_params(experiment, method, concepts, run, after_task):
    """The metrics and the model they may query; ``concepts`` names the concept folders
    of the job's input, in their order."""
    spec = config["experiments"][experiment.name]
    return canonical({
        "base_model": base_model_ref(),
        "device": config["device"],
        "metrics": {name: config["metric_settings"].get(name, {}) for name in metric_names(spec)},
        "dtype": config["evaluation"]["dtype"],
        "allow_tf32": config["evaluation"]["allow_tf32"],
        "method": method,
        "method_settings": method_settings(method),
        "concepts": [concept.name for concept in concepts],
        "run": run,
        "after_task": after_task,
    })


def get_score_samples_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    concepts = seen_concepts(wildcards)
    return scoring_params(experiment, wildcards.method, concepts, wildcards.run, int(wildcards.task))


def get_score_base_samples_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return scoring_params(experiment, "base", experiment.concepts, "", 0)


# --------------------------------------------------------------------------- beyond the paper


def retention_enabled():
    return config["retention"]["enabled"]


def composition_enabled():
    return config["composition"]["enabled"]


def prompt_generation_params(experiment, method, prompts, samples_per_prompt=None):
    """``generation_params`` for free prompts ((group, prompt) pairs) instead of tasks."""
    params = generation_params(experiment, method, [])
    del params["tasks"]
    params["prompts"] = [list(pair) for pair in prompts]
    params["settings"]["templates"] = []
    if samples_per_prompt:
        params["settings"]["samples_per_prompt"] = samples_per_prompt
    return params


def retention_generation_params(experiment, method):
    """Every model draws the general prompts with the base model's sampler, so that
    retention compares models, not samplers (a method's own, evaluation.method_schedulers,
    would count as drift)."""
    from continual_lora.retention import prompt_samples

    retention = config["retention"]
    prompts = prompt_samples(retention["prompts"][experiment.domain])
    params = prompt_generation_params(experiment, method, prompts, retention["samples_per_prompt"])
    params["settings"]["scheduler"] = evaluation_scheduler("base")
    return params


def get_sample_retention_params(wildcards):
    return retention_generation_params(EXPERIMENTS[wildcards.experiment], wildcards.method)


def get_sample_base_retention_params(wildcards):
    return retention_generation_params(EXPERIMENTS[wildcards.experiment], "base")


def beyond_scoring_params(experiment, method, run, candidates, **more):
    """What a retention or composition scoring job needs: the metrics it may score
    with and their settings (the job keeps those that can score it), nothing else, so
    that a change to another metric's settings reruns none of these jobs."""
    return canonical({
        "device": config["device"],
        "metrics": {name: config["metric_settings"].get(name, {}) for name in candidates},
        "method": method,
        "run": run,
        **more,
    })


def retention_candidates(experiment):
    """``retention.metrics`` where set, else the experiment's own metrics."""
    return config["retention"]["metrics"] or metric_names(config["experiments"][experiment.name])


def get_score_retention_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return beyond_scoring_params(
        experiment, wildcards.method, wildcards.run, retention_candidates(experiment), after_task=int(wildcards.task)
    )


def get_experiment_retention_scores(wildcards):
    """Every checkpoint's retention scores of an experiment; none where retention is off."""
    if not retention_enabled():
        return []
    return experiment_checkpoint_files(EXPERIMENTS[wildcards.experiment], layout.RETENTION_SCORES)


def get_first_run_final_retention_samples(wildcards):
    """Per method, in METHODS order, the general prompts drawn after the first run's last task."""
    experiment = EXPERIMENTS[wildcards.experiment]
    where = {"experiment": experiment.name, "run": experiment.runs[0], "task": experiment.n_tasks}
    return [path(layout.RETENTION_SAMPLES, method=method, **where) for method in METHODS]


def get_final_checkpoint(wildcards):
    """The run's model after its last task: its handoff and trained adapter."""
    return {"handoff": get_run_handoffs(wildcards)[-1], "task_lora": get_run_task_loras(wildcards)[-1]}


def composition_generation_params(experiment, method):
    from continual_lora.composition import prompt_samples

    templates = config["composition"]["templates"][experiment.domain]
    return prompt_generation_params(experiment, method, prompt_samples(experiment.concepts, templates))


def get_sample_composition_params(wildcards):
    return composition_generation_params(EXPERIMENTS[wildcards.experiment], wildcards.method)


def get_sample_base_composition_params(wildcards):
    return composition_generation_params(EXPERIMENTS[wildcards.experiment], "base")


def composition_scoring_params(experiment, method, run):
    candidates = metric_names(config["experiments"][experiment.name])
    return beyond_scoring_params(experiment, method, run, candidates, concepts=[c.name for c in experiment.concepts])


def get_score_composition_params(wildcards):
    return composition_scoring_params(EXPERIMENTS[wildcards.experiment], wildcards.method, wildcards.run)


def get_score_base_composition_params(wildcards):
    return composition_scoring_params(EXPERIMENTS[wildcards.experiment], "base", "")


def get_experiment_composition_scores(wildcards):
    """The base model's and every run's composition scores; none where composition is off."""
    if not composition_enabled():
        return []
    experiment = EXPERIMENTS[wildcards.experiment]
    files = [path(layout.BASE_COMPOSITION_SCORES, experiment=experiment.name)]
    for method in METHODS:
        for run in experiment.runs:
            files.append(path(layout.COMPOSITION_SCORES, experiment=experiment.name, method=method, run=run))
    return files


def get_first_run_composition_samples(wildcards):
    """Per method, in METHODS order, the concept pairs drawn by the first run's final model."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run = experiment.runs[0]
    return [path(layout.COMPOSITION_SAMPLES, experiment=experiment.name, method=method, run=run) for method in METHODS]


# --------------------------------------------------------------------------- aggregation


def get_experiment_scores(wildcards):
    """Every scores.csv of an experiment: the base model's and each checkpoint's."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return [path(layout.BASE_SCORES, experiment=experiment.name), *experiment_checkpoint_files(experiment, layout.SCORES)]


def get_experiment_metas(wildcards):
    """Every checkpoint's meta.json of an experiment, with what it was trained with."""
    return experiment_checkpoint_files(EXPERIMENTS[wildcards.experiment], layout.META)


def get_final_samples(wildcards):
    """Per method, in METHODS order, the samples after the last task of the experiment's first run."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run, task = experiment.runs[0], experiment.n_tasks
    return [path(layout.SAMPLES, experiment=experiment.name, method=method, run=run, task=task) for method in METHODS]


def get_first_run_samples(wildcards):
    """The samples after every task of the experiment's first run: per method in
    METHODS order, its tasks in order."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run = experiment.runs[0]
    return [
        path(layout.SAMPLES, experiment=experiment.name, method=method, run=run, task=task)
        for method in METHODS
        for task in range(1, experiment.n_tasks + 1)
    ]


def get_plot_samples_params(wildcards):
    """The methods of the input's samples, in order, the number of tasks, the concepts
    (those of the concept folders), and the first two templates, as the paper shows two
    prompts per domain."""
    experiment = EXPERIMENTS[wildcards.experiment]
    return {
        "methods": METHODS,
        "n_tasks": experiment.n_tasks,
        "concepts": [concept.name for concept in experiment.concepts],
        "templates": dict(enumerate(config["evaluation"]["templates"][experiment.domain][:2])),
    }


def first_run_task_loras(wildcards):
    """(method, task, task_lora file) of every task of the experiment's first run."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run = experiment.runs[0]
    return [
        (method, task, path(layout.TASK_LORA, experiment=experiment.name, method=method, run=run, task=task))
        for method in METHODS
        for task in range(1, experiment.n_tasks + 1)
    ]


def get_first_run_task_loras(wildcards):
    return [file for _, _, file in first_run_task_loras(wildcards)]


def get_plot_sign_conflicts_params(wildcards):
    """What each input file is: [method, task], in the input's order."""
    return {"task_loras": [[method, task] for method, task, _ in first_run_task_loras(wildcards)]}


# --------------------------------------------------------------------------- export


def get_export_model_input(wildcards):
    """The last task's handoff and every task's trained adapter, in task order (a
    merge_and_init export stacks them); the base model a fused export is built on."""
    inputs = {"handoff": get_run_handoffs(wildcards)[-1], "task_loras": get_run_task_loras(wildcards)}
    if get_base_model():
        inputs["base_model"] = get_base_model()
    return inputs


def get_export_model_params(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    evaluation = config["evaluation"]
    scheduler = evaluation_scheduler(wildcards.method)
    tasks = experiment.tasks(wildcards.run)
    return canonical({
        "base_model": base_model_ref(),
        "method_settings": method_settings(wildcards.method),
        "dtype": evaluation["dtype"],
        "scheduler": scheduler,
        "description": {
            "experiment": experiment.name,
            "method": wildcards.method,
            "run": wildcards.run,
            "after_task": experiment.n_tasks,
            "base_model": base_model_ref(),
            "tasks": [
                {"task": index, "concept": c.name, "prompt": c.prompt, "subject": c.subject}
                for index, c in enumerate(tasks, start=1)
            ],
            "sampling": {
                "templates": evaluation["templates"][experiment.domain],
                "scheduler": scheduler,
                "guidance_scale": evaluation["guidance_scale"],
                "inference_steps": evaluation["inference_steps"],
                "resolution": config["training"]["resolution"],
                "latent_seed": evaluation["latent_seed"],
                "samples_per_prompt": evaluation["samples_per_prompt"],
                "noise_device": evaluation["noise_device"],
            },
        },
    })


def get_exports():
    """The export of every run of every method of every experiment."""
    return [
        path(layout.EXPORT, experiment=experiment.name, method=method, run=run)
        for experiment in EXPERIMENTS.values()
        for method in METHODS
        for run in experiment.runs
    ]


def get_final_outputs():
    outputs = []
    if uses_tiny_model():
        outputs.append(TINY_SAMPLES)
    for experiment in EXPERIMENTS.values():
        for method in METHODS:
            for run in experiment.runs:
                outputs.append(path(layout.CHAIN_AUDIT, experiment=experiment.name, method=method, run=run))
        outputs.append(path(layout.SUMMARY, experiment=experiment.name))
        for figure_set in layout.FIGURE_SETS:
            outputs.append(path(layout.FIGURES, experiment=experiment.name, figure_set=figure_set))
        if retention_enabled():
            outputs.append(path(layout.RETENTION_TABLE, experiment=experiment.name))
        if composition_enabled():
            outputs.append(path(layout.COMPOSITION_TABLE, experiment=experiment.name))
    return outputs


# --------------------------------------------------------------------------- warm starts


def warm_starts_apply():
    """Whether this run's jobs can fork from one warm process (continual_lora.warm):
    they run here, in this Python, for real."""
    return (
        config["warm_starts"]
        and workflow.is_main_process
        and workflow.local_exec
        and not DRY_RUN
        and not workflow.touch
        and not workflow.deployment_settings.deployment_method
    )


onstart:
    if workflow.local_exec and workflow.is_main_process and not DRY_RUN:
        from continual_lora import gpus

        # Each job that uses a GPU then holds one of these alone (continual_lora.gpus).
        offered = gpus.offer(".snakemake/gpu_slots")
        if offered:
            logger.info(f"GPUs for the jobs, one each: {', '.join(offered)}")
    if warm_starts_apply():
        from continual_lora import warm

        warm.start(log_file=".snakemake/warm_starts.log")
