# The concurrency sweep (config `concurrency`): one benchmark job per testbed x backend x model x number of clients,
# N requests in flight at once in a closed loop (edgebench.concurrency). Server backends (those with a url) run every
# number; an in-process engine runs 1 only, and the table says so. Then one statistics file per testbed with goodput
# against the config's `goodput_limits`, its table and its figures.
from edgebench import concurrency_dag

CONCURRENCY = list(config["concurrency"])
CONCURRENCY_PROMPT = config.get("concurrency_prompt") or PROMPTS[0]
if CONCURRENCY_PROMPT not in config["prompts"]:
    raise WorkflowError(f"invalid configuration: config key concurrency_prompt: {CONCURRENCY_PROMPT!r} is not one "
                        f"of the prompts ({', '.join(PROMPTS)})")
CONCURRENCY_FIGURES = ["concurrency_throughput", "concurrency_latency"]
CONCURRENCY_CLIENTS = sorted({str(n) for b in BACKENDS for n in concurrency_dag.levels(b, CONCURRENCY)})
EXTRA_OUTPUTS.extend(concurrency_dag.outputs(RESULTS, TESTBEDS, CONCURRENCY, CONCURRENCY_FIGURES))


localrules:
    concurrency_summary,
    concurrency_figures,


rule bench_concurrency:
    input:
        unpack(bench_inputs),
    output:
        runs=f"{RESULTS}/{{testbed}}/concurrency/{{backend}}/{{model}}/c{{clients}}.parquet",
    wildcard_constraints:
        backend=constraint(BACKENDS),
        model=constraint(MODELS),
        clients=constraint(CONCURRENCY_CLIENTS),
    params:
        settings=bench_settings(),
        prompt_id=CONCURRENCY_PROMPT,
        prompt=config["prompts"][CONCURRENCY_PROMPT],
        clients=lambda wc: int(wc.clients),
        backend_options=lambda wc: config["backends"][wc.backend],
        expect_gpu=lambda wc: testbed_spec(wc.testbed).get("expect_gpu"),
    resources:
        gpu=1,
        gpu_model=lambda wc: testbed_spec(wc.testbed).get("gpu_model"),
    log:
        f"{RESULTS}/logs/{{testbed}}/concurrency/{{backend}}/{{model}}/c{{clients}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/concurrency_bench.py"


rule concurrency_summary:
    input:
        lambda wc: concurrency_dag.point_files(RESULTS, wc.testbed, BACKENDS, MODELS, CONCURRENCY),
    output:
        summary=f"{RESULTS}/{{testbed}}/concurrency.parquet",
        csv=f"{RESULTS}/{{testbed}}/tables/concurrency.csv",
        tex=f"{RESULTS}/{{testbed}}/tables/concurrency.tex",
    params:
        limits=config["goodput_limits"],
    log:
        f"{RESULTS}/logs/{{testbed}}/concurrency_summary.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/concurrency_summary.py"


rule concurrency_figures:
    input:
        summary=f"{RESULTS}/{{testbed}}/concurrency.parquet",
    output:
        throughput=figure("concurrency_throughput", "Concurrency"),
        latency=figure("concurrency_latency", "Concurrency"),
        pdfs=expand(f"{RESULTS}/{{{{testbed}}}}/figures/{{fig}}.pdf", fig=CONCURRENCY_FIGURES),
    params:
        limits=config["goodput_limits"],
    log:
        f"{RESULTS}/logs/{{testbed}}/concurrency_figures.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/concurrency_figures.py"
