rule prepare_concept:
    output:
        directory(layout.CONCEPT),
    log:
        layout.log(layout.CONCEPT, "prepare_concept"),
    params:
        concept=get_concept,
        dataset=get_dataset_settings,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/prepare_concept.py"
