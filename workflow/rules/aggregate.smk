# All runs of a testbed into one tidy table, and its statistics.


rule aggregate:
    input:
        runs=lambda wc: run_files(wc.testbed),
    output:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
        summary=f"{RESULTS}/{{testbed}}/summary.parquet",
    log:
        f"{RESULTS}/logs/{{testbed}}/aggregate.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/aggregate.py"
