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


# Edge-deployment recommendation (edgebench.edge): which models measured in the context sweep fit each device
# profile's memory at one of its lengths, and which to deploy; only with a sweep (`contexts`).
from edgebench.edge import EdgeSettings

if CONTEXTS or config.get("edge"):
    try:
        EdgeSettings.from_config(config.get("edge"), CONTEXTS)  # one line for a bad section, at parse time
    except EdgebenchError as exc:
        raise WorkflowError(f"invalid configuration: {exc}") from None
    for _testbed in TESTBEDS:
        EXTRA_OUTPUTS += [f"{RESULTS}/{_testbed}/edge.parquet", f"{RESULTS}/{_testbed}/figures/edge_pareto.png"]
        EXTRA_OUTPUTS += expand(f"{RESULTS}/{_testbed}/tables/{{table}}.{{ext}}", table=["edge"], ext=["csv", "tex"])


rule edge_analysis:
    input:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
    output:
        edge=f"{RESULTS}/{{testbed}}/edge.parquet",
        recommendations=f"{RESULTS}/{{testbed}}/edge_recommendations.parquet",
    params:
        edge=config.get("edge") or {},
        contexts=CONTEXTS,
    log:
        f"{RESULTS}/logs/{{testbed}}/edge_analysis.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/edge_analysis.py"


rule edge_table:
    input:
        edge=f"{RESULTS}/{{testbed}}/edge.parquet",
        recommendations=f"{RESULTS}/{{testbed}}/edge_recommendations.parquet",
    output:
        csv=report(f"{RESULTS}/{{testbed}}/tables/edge.csv", category="Edge deployment",
                   caption="../../report/table_edge.rst"),
        recommendations_csv=f"{RESULTS}/{{testbed}}/tables/edge_recommendations.csv",
        tex=f"{RESULTS}/{{testbed}}/tables/edge.tex",
    params:
        edge=config.get("edge") or {},
        contexts=CONTEXTS,
    log:
        f"{RESULTS}/logs/{{testbed}}/edge_table.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/edge_table.py"


rule edge_figure:
    input:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
    output:
        pareto=figure("edge_pareto", "Edge deployment"),
        pdf=f"{RESULTS}/{{testbed}}/figures/edge_pareto.pdf",
    params:
        edge=config.get("edge") or {},
        contexts=CONTEXTS,
    log:
        f"{RESULTS}/logs/{{testbed}}/edge_figure.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/edge_figure.py"
