# Kernel development rules for EdgeLLM's CUDA kernels: the accuracy gate and compute-sanitizer on a GPU, and the
# kernel benchmark against naive attention and PyTorch SDPA. Not part of the benchmark pipeline: the Snakefile
# includes this file only when the config asks (`kernels: {run: true}`); the target `kernels` then runs them alone.
# The binaries come from the compile_kernels build step (kernels/Makefile), which EdgeLLM's backend declares.
KERNEL_TOOLS = Path(workflow.basedir) / "kernels" / "tools"


def kernel_outputs(testbed):
    return [f"{RESULTS}/{testbed}/kernels/{name}" for name in
            ("accuracy.parquet", "sanitizer.parquet", "bench.parquet", "figures/kernel_attention.png",
             "prefill_gate.parquet", "prefill_sanitizer.parquet")]


for _testbed in TESTBEDS:
    EXTRA_OUTPUTS.extend(kernel_outputs(_testbed))
# The gate's fp32 cases join the accuracy criterion of each testbed's analysis.
GATE_OUTPUTS["kernel_accuracy"] = f"{RESULTS}/{{testbed}}/kernels/accuracy.parquet"


rule kernel_accuracy:
    input:
        accuracy=f"{BUILD}/attention_accuracy",
    output:
        accuracy=f"{RESULTS}/{{testbed}}/kernels/accuracy.parquet",
        sanitizer=f"{RESULTS}/{{testbed}}/kernels/sanitizer.parquet",
    log:
        f"{RESULTS}/logs/{{testbed}}/kernel_accuracy.log",
    resources:
        gpu=1,
    conda:
        "../../envs/edgebench.yaml"
    script:
        "scripts/accuracy.py"


rule prefill_gate:
    """The prefill's gate: the quantized GEMMs against float64 for every quant type (gemm_accuracy) and the engine's
    batched prefill against its own token-by-token steps (prefill_accuracy), each compute-sanitizer clean."""
    input:
        gemm=f"{BUILD}/gemm_accuracy",
        prefill=f"{BUILD}/prefill_accuracy",
    output:
        checks=f"{RESULTS}/{{testbed}}/kernels/prefill_gate.parquet",
        sanitizer=f"{RESULTS}/{{testbed}}/kernels/prefill_sanitizer.parquet",
    log:
        f"{RESULTS}/logs/{{testbed}}/prefill_gate.log",
    resources:
        gpu=1,
    conda:
        "../../envs/edgebench.yaml"
    script:
        "scripts/prefill_gate.py"


rule kernel_bench:
    input:
        bench=f"{BUILD}/attention_bench",
        accuracy=f"{RESULTS}/{{testbed}}/kernels/accuracy.parquet",  # speed counts only once the gate passed
        sanitizer=f"{RESULTS}/{{testbed}}/kernels/sanitizer.parquet",
    output:
        bench=f"{RESULTS}/{{testbed}}/kernels/bench.parquet",
        figure=report(f"{RESULTS}/{{testbed}}/kernels/figures/kernel_attention.png", category="Kernels",
                      caption="fig_kernel_attention.rst"),
    log:
        f"{RESULTS}/logs/{{testbed}}/kernel_bench.log",
    resources:
        gpu=1,
    conda:
        "../../envs/edgebench.yaml"
    script:
        "scripts/bench.py"


rule kernels:
    input:
        kernel_outputs(TESTBED),
    localrule: True
