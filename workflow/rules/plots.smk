# Figures (PNG for the report, PDF beside each for the paper), each with a caption in report/.


rule figures:
    input:
        runs=f"{RESULTS}/{{testbed}}/runs.parquet",
        summary=f"{RESULTS}/{{testbed}}/summary.parquet",
        scaling=f"{RESULTS}/{{testbed}}/scaling.parquet",
    output:
        throughput_vs_size=figure("throughput_vs_size"),
        speedup=figure("speedup"),
        latency_distribution=figure("latency_distribution"),
        ttft=figure("ttft"),
        memory_vs_size=figure("memory_vs_size"),
        energy_per_token=figure("energy_per_token"),
        pdfs=expand(f"{RESULTS}/{{{{testbed}}}}/figures/{{fig}}.pdf", fig=FIGURES),
    log:
        f"{RESULTS}/logs/{{testbed}}/figures.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/figures.py"


rule compare_testbeds:
    input:
        scaling=expand(f"{RESULTS}/{{testbed}}/scaling.parquet", testbed=TESTBEDS + config["compare_testbeds"]),
    output:
        png=report(f"{RESULTS}/comparison/throughput_by_testbed.png", category="Testbeds",
                   caption="../../report/fig_throughput_by_testbed.rst"),
        pdf=f"{RESULTS}/comparison/throughput_by_testbed.pdf",
    log:
        f"{RESULTS}/logs/compare_testbeds.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/compare_testbeds.py"
