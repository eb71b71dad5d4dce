# edgebench: models -> benchmarks -> Parquet -> statistics and scaling -> figures, tables -> report.
# Quickstart: snakemake --cores 1 all      The user's plan: snakemake --profile lambda (config/plan.yaml)
from snakemake.utils import min_version

min_version("9.0")


# The quickstart config, unless --configfile names another (Snakemake would merge the two, mixing their models).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



report: "report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/build.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/context.smk"
include: "workflow/rules/concurrency.smk"


# Kernel development (accuracy gate, sanitizer, kernel benchmark) lives with the kernels, only when asked for.
if config["kernels"]["run"]:

    include: "kernels/tools/rules.smk"


# Everything but the benchmarks runs where Snakemake runs (on a cluster: the login node, which can download models);
# only benchmark jobs are submitted to an executor such as Slurm. Build steps mark themselves local.
localrules:
    all,
    model_from_ollama,
    model_from_package,
    model_from_path,
    model_synthetic,
    aggregate,
    analysis,
    tables,
    figures,
    context_figures,
    context_table,
    edge_analysis,
    edge_table,
    edge_figure,
    compare_testbeds,


rule all:
    input:
        all_outputs(),
    default_target: True
