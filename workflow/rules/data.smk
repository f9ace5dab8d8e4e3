rule prepare_concept:
    output:
        directory("results/{experiment}/data/{concept}"),
    log:
        "results/logs/{experiment}/data/{concept}.log",
    params:
        concept=get_concept,
        dataset=get_dataset_settings,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/prepare_concept.py"
