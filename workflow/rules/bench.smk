# One benchmark job per testbed x backend x model x prompt. Every job asks for the `gpu` resource: profiles limit it
# to 1 so that no two measurements share the machine (on a CPU-only machine `--cores 1` serialises them as well); on
# Slurm it becomes `--gpus=1`, or `--gpus=MODEL:1` with the testbed's `gpu_model`. A backend whose job needs
# something built first (its build step, e.g. compiled GPU kernels) gets it as an input, so `all` builds it first.


rule bench:
    input:
        unpack(bench_inputs),
    output:
        runs=f"{RESULTS}/{{testbed}}/runs/{{backend}}/{{model}}/{{prompt}}.parquet",
    wildcard_constraints:
        backend=constraint(BACKENDS),
        model=constraint(MODELS),
        prompt=constraint(PROMPTS),
    params:
        settings=bench_settings(),
        prompt=lambda wc: config["prompts"][wc.prompt],
        backend_options=lambda wc: config["backends"][wc.backend],
        expect_gpu=lambda wc: testbed_spec(wc.testbed).get("expect_gpu"),
    resources:
        gpu=1,
        gpu_model=lambda wc: testbed_spec(wc.testbed).get("gpu_model"),
    log:
        f"{RESULTS}/logs/{{testbed}}/bench/{{backend}}/{{model}}/{{prompt}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/bench.py"


# The context sweep: one job per testbed x backend x model x length. The prompt is built in the job, from the model's
# GGUF tokenizer and the shipped text (an input: a change to the text reruns the sweep); num_ctx grows to fit it.
rule bench_context:
    input:
        unpack(bench_inputs),
        text=CONTEXT_TEXT,
    output:
        runs=f"{RESULTS}/{{testbed}}/runs/{{backend}}/{{model}}/ctx{{tokens}}.parquet",
    wildcard_constraints:
        backend=constraint(BACKENDS),
        model=constraint(MODELS),
        tokens=constraint([str(n) for n in CONTEXTS]),
    params:
        settings=lambda wc: context_settings(int(wc.tokens)),
        context_tokens=lambda wc: int(wc.tokens),
        backend_options=lambda wc: config["backends"][wc.backend],
        expect_gpu=lambda wc: testbed_spec(wc.testbed).get("expect_gpu"),
    resources:
        gpu=1,
        gpu_model=lambda wc: testbed_spec(wc.testbed).get("gpu_model"),
    log:
        f"{RESULTS}/logs/{{testbed}}/bench/{{backend}}/{{model}}/ctx{{tokens}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/bench.py"
