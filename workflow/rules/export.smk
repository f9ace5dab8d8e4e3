# The model after each run's last task, in a form diffusers loads (continual_lora.export).
# Not part of `all`: request it with `snakemake ... export`.
rule export_model:
    input:
        unpack(get_export_model_input),
    output:
        directory(layout.EXPORT),
    log:
        layout.log(layout.RUN, "export_model"),
    benchmark:
        layout.benchmark(layout.RUN, "export_model")
    params:
        export=get_export_model_params,
    conda:
        "../../envs/continual_lora.yaml"
    script:
        "../scripts/export_model.py"


rule export:
    input:
        get_exports(),
