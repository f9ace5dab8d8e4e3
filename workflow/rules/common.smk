from snakemake.utils import min_version, validate

from dataclasses import asdict

from continual_lora.data import synthetic
from continual_lora.experiment import experiments_from_config, metric_names, parse_run

min_version("9.0")


validate(config, schema="../schemas/config.schema.yaml")
# The checks open model folders and dataset images, and import the method and metric
# registries (torch); the main process has done them before any job was scheduled,
# so a job's own Snakemake process (on a cluster node) skips them. The registries'
# defaults are written in there too, where Snakemake decides what to rerun; a job
# builds its method and metrics with the same defaults itself.
if workflow.is_main_process:
    from continual_lora.config import check_config, fill_plugin_defaults

    check_config(config, schema=workflow.source_path("../schemas/config.schema.yaml"))
    fill_plugin_defaults(config)


EXPERIMENTS = experiments_from_config(config)
METHODS = list(config["methods"])
TINY_MODEL = "results/models/tiny"
CHECKPOINT = "results/{experiment}/{method}/{run}/task{task}/checkpoint"


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


def base_model_ref():
    """What the scripts load (continual_lora.models.loading.ModelSource): the embedded
    model's folder, or a hub id or path with its optional VAE and variant."""
    return config["base_model"] | {"name": TINY_MODEL} if uses_tiny_model() else config["base_model"]


def get_base_model(wildcards=None):
    """The base model as a workflow input: the embedded model when it is built here."""
    return TINY_MODEL if uses_tiny_model() else []


def concept_dir(experiment, concept):
    return f"results/{experiment}/data/{concept}"


def checkpoint_file(experiment, method, run, task, name):
    folder = CHECKPOINT.format(experiment=experiment, method=method, run=run, task=task)
    return f"{folder}/{name}"


def get_concept(wildcards):
    return asdict(EXPERIMENTS[wildcards.experiment].concept(wildcards.concept))


def get_dataset_settings(wildcards):
    return canonical(EXPERIMENTS[wildcards.experiment].dataset)


def get_tiny_sample_prompts():
    """Class-level prompts: what the pretrained tiny model should already draw."""
    return [f"a photo of a {class_word}" for class_word in synthetic.GENERIC_CLASSES]


def get_train_task_input(wildcards):
    """Task t sees its own prepared data, the base model W0, and for t > 1 task t-1's
    handoff: nothing else of an earlier task, as the continual regime demands."""
    experiment = EXPERIMENTS[wildcards.experiment]
    task = int(wildcards.task)
    inputs = {"concept": concept_dir(experiment.name, experiment.task(wildcards.run, task).name)}
    if get_base_model():
        inputs["base_model"] = get_base_model()
    if task > 1:
        inputs["previous"] = checkpoint_file(
            wildcards.experiment, wildcards.method, wildcards.run, task - 1, "handoff.safetensors"
        )
    return inputs


def get_train_task_params(wildcards):
    return canonical({
        "base_model": base_model_ref(),
        "training_seed": parse_run(wildcards.run)[1],
        "lora": config["lora"],
        "training": config["training"],
        "device": config["device"],
    })


def experiment_metrics(experiment):
    """The experiment's metric backends with their settings, in config order."""
    spec = config["experiments"][experiment]
    names = metric_names(spec)
    return {name: config["metric_settings"].get(name, {}) for name in names}


def get_seen_concepts(wildcards):
    """The prepared data of every task of the run up to task t (what is evaluated)."""
    experiment = EXPERIMENTS[wildcards.experiment]
    seen = experiment.tasks(wildcards.run)[: int(wildcards.task)]
    return {concept.name: concept_dir(experiment.name, concept.name) for concept in seen}


def get_all_concepts(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    return {concept.name: concept_dir(experiment.name, concept.name) for concept in experiment.concepts}


def get_generation_params(wildcards):
    """(task index in the run, concept) of every task to sample, and the sampler."""
    experiment = EXPERIMENTS[wildcards.experiment]
    if hasattr(wildcards, "task"):
        tasks = [(i, asdict(c)) for i, c in enumerate(experiment.tasks(wildcards.run)[: int(wildcards.task)], start=1)]
    else:
        tasks = [(None, asdict(c)) for c in experiment.concepts]
    evaluation = config["evaluation"]
    method = getattr(wildcards, "method", "base")
    return canonical({
        "base_model": base_model_ref(),
        "device": config["device"],
        "tasks": tasks,
        **evaluated_method(method),
        "settings": {
            "templates": evaluation["templates"][experiment.domain],
            "samples_per_prompt": evaluation["samples_per_prompt"],
            "inference_steps": evaluation["inference_steps"],
            "guidance_scale": evaluation["guidance_scale"],
            "latent_seed": evaluation["latent_seed"],
            "noise_device": evaluation["noise_device"],
            "batch_size": evaluation["batch_size"],
            "resolution": config["training"]["resolution"],
            "scheduler": evaluation["method_schedulers"].get(method, evaluation["scheduler"]),
        },
        "dtype": evaluation["dtype"],
    })


def evaluated_method(method):
    """Which method's checkpoints a job evaluates ("base": none), with its settings,
    which may choose the model evaluated (ortho_init's evaluate)."""
    return {"method": method, "method_settings": config["method_settings"].get(method, {})}


def get_scoring_params(wildcards):
    return canonical({
        "base_model": base_model_ref(),
        "device": config["device"],
        "metrics": experiment_metrics(wildcards.experiment),
        "dtype": config["evaluation"]["dtype"],
        **evaluated_method(getattr(wildcards, "method", "base")),
        "run": getattr(wildcards, "run", ""),
        "after_task": int(getattr(wildcards, "task", 0)),
    })


def get_experiment_scores(wildcards):
    """Every scores.csv of an experiment: the base model's and each checkpoint's."""
    experiment = EXPERIMENTS[wildcards.experiment]
    files = [f"results/{experiment.name}/base/scores.csv"]
    for method in METHODS:
        for run in experiment.runs:
            for task in range(1, experiment.n_tasks + 1):
                files.append(f"results/{experiment.name}/{method}/{run}/task{task}/scores.csv")
    return files


def get_final_samples(wildcards):
    """Per method, the samples after the last task of the experiment's first run."""
    experiment = EXPERIMENTS[wildcards.experiment]
    run = experiment.runs[0]
    return {method: f"results/{experiment.name}/{method}/{run}/task{experiment.n_tasks}/samples" for method in METHODS}


def get_grid_templates(wildcards):
    """The first two templates, as the paper shows two prompts per domain."""
    domain = EXPERIMENTS[wildcards.experiment].domain
    return dict(enumerate(config["evaluation"]["templates"][domain][:2]))


def get_first_run_task_loras(wildcards):
    experiment = EXPERIMENTS[wildcards.experiment]
    run = experiment.runs[0]
    return {
        f"{method}_task{task}": checkpoint_file(experiment.name, method, run, task, "task_lora.safetensors")
        for method in METHODS
        for task in range(1, experiment.n_tasks + 1)
    }


def get_run_checkpoints(wildcards):
    """Every task's checkpoint of one run, for analyses of the whole chain."""
    n_tasks = EXPERIMENTS[wildcards.experiment].n_tasks
    return {
        f"{kind}{task}": checkpoint_file(wildcards.experiment, wildcards.method, wildcards.run, task, f"{kind}.safetensors")
        for task in range(1, n_tasks + 1)
        for kind in ("handoff", "task_lora", "init_lora")
    }


def get_final_outputs():
    outputs = []
    if uses_tiny_model():
        outputs.append("results/models/tiny_samples.png")
    for experiment in EXPERIMENTS.values():
        for method in METHODS:
            for run in experiment.runs:
                outputs.append(f"results/{experiment.name}/{method}/{run}/chain_audit.json")
        outputs.append(f"results/{experiment.name}/tables/summary.csv")
        for figure_set in ("scores", "samples", "sign_conflicts"):
            outputs.append(f"results/{experiment.name}/figures/{figure_set}")
    return outputs
