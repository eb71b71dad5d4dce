# The context sweep's figures and table (config `contexts`; the benchmark jobs are bench_context in bench.smk).


rule context_figures:
    input:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
    output:
        ttft=figure("context_ttft", "Context"),
        prefill=figure("context_prefill", "Context"),
        decode=figure("context_decode", "Context"),
        speedup=figure("context_speedup", "Context"),
        memory=figure("context_memory", "Context"),
        pdfs=expand(f"{RESULTS}/{{{{testbed}}}}/figures/{{fig}}.pdf", fig=CONTEXT_FIGURES),
    params:
        baseline=BASELINE,
    log:
        f"{RESULTS}/logs/{{testbed}}/context_figures.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/context_figures.py"


rule context_table:
    input:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
    output:
        csv=report(f"{RESULTS}/{{testbed}}/tables/context.csv", category="Context",
                   caption="../../report/table_context.rst"),
        tex=f"{RESULTS}/{{testbed}}/tables/context.tex",
    log:
        f"{RESULTS}/logs/{{testbed}}/context_table.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/context_table.py"
