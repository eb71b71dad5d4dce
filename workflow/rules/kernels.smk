# EdgeLLM's CUDA kernels: built with nvcc (no GPU needed to build), gated on accuracy and compute-sanitizer on a GPU,
# and benchmarked against naive attention and PyTorch SDPA.  In `all` only when the config asks (kernels.run), or as
# the target `kernels`; `compile_kernels` alone runs anywhere nvcc is.


rule compile_kernels:
    input:
        KERNEL_SOURCES,
    output:
        lib=f"{KERNEL_BUILD}/libedgellm.so",
        accuracy=f"{KERNEL_BUILD}/attention_accuracy",
        bench=f"{KERNEL_BUILD}/attention_bench",
    params:
        arch=lambda wc: kernel_arch(),
        nvcc=config["kernels"]["nvcc"],
        sources=lambda wc, input: os.path.dirname(next(f for f in input if f.endswith("Makefile"))),
        build=lambda wc, output: os.path.dirname(output.lib),
    log:
        f"{RESULTS}/logs/compile_kernels.log",
    threads: 2
    conda:
        "../../envs/cuda-build.yaml"
    shell:
        "make -C {params.sources} -j{threads} BUILD={params.build} ARCH={params.arch} NVCC={params.nvcc}"
        " > {log} 2>&1 || (tail -n 20 {log} >&2; exit 1)"


rule kernel_accuracy:
    input:
        accuracy=rules.compile_kernels.output.accuracy,
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
        "../scripts/kernel_accuracy.py"


rule kernel_bench:
    input:
        bench=rules.compile_kernels.output.bench,
        accuracy=f"{RESULTS}/{{testbed}}/kernels/accuracy.parquet",  # speed counts only once the gate passed
        sanitizer=f"{RESULTS}/{{testbed}}/kernels/sanitizer.parquet",
    output:
        bench=f"{RESULTS}/{{testbed}}/kernels/bench.parquet",
        figure=report(f"{RESULTS}/{{testbed}}/kernels/figures/kernel_attention.png", category="Kernels",
                      caption="../../report/fig_kernel_attention.rst"),
    log:
        f"{RESULTS}/logs/{{testbed}}/kernel_bench.log",
    resources:
        gpu=1,
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/kernel_bench.py"


rule kernels:
    input:
        kernel_outputs(TESTBED),
