# Scaling analysis, the plan's success criteria, and the paper's tables.


rule analysis:
    input:
        unpack(gate_inputs),
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
        summary=f"{RESULTS}/{{testbed}}/summary.parquet",
    output:
        scaling=f"{RESULTS}/{{testbed}}/scaling.parquet",
        criteria=f"{RESULTS}/{{testbed}}/criteria.parquet",
    params:
        baseline=BASELINE,
        bandwidths=config["gpu_peak_bandwidth_gbs"],
        criteria=config["criteria"],
    log:
        f"{RESULTS}/logs/{{testbed}}/analysis.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/analysis.py"


rule tables:
    input:
        summary=f"{RESULTS}/{{testbed}}/summary.parquet",
        scaling=f"{RESULTS}/{{testbed}}/scaling.parquet",
        criteria=f"{RESULTS}/{{testbed}}/criteria.parquet",
    output:
        summary_csv=f"{RESULTS}/{{testbed}}/tables/summary.csv",
        summary_tex=report(f"{RESULTS}/{{testbed}}/tables/summary.tex", category="Tables",
                           caption="../../report/table_summary.rst"),
        criteria_csv=report(f"{RESULTS}/{{testbed}}/tables/criteria.csv", category="Success criteria",
                            caption="../../report/table_criteria.rst"),
        criteria_tex=f"{RESULTS}/{{testbed}}/tables/criteria.tex",
        scaling_csv=report(f"{RESULTS}/{{testbed}}/tables/scaling.csv", category="Tables",
                           caption="../../report/table_scaling.rst"),
        scaling_tex=f"{RESULTS}/{{testbed}}/tables/scaling.tex",
    log:
        f"{RESULTS}/logs/{{testbed}}/tables.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/tables.py"
