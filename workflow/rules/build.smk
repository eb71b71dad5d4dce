# Build steps that backends declare (edgebench.backends.BuildStep), one rule each, named by the backend: e.g. a GPU
# engine's compiled kernels. `make` needs no GPU, only the compiler (kernels.nvcc) and the architecture
# (kernels.arch). Every value that reaches the shell is quoted (a checkout path with a space builds).

for step in BUILD_STEPS:

    rule:
        name:
            step.rule
        input:
            build_sources(step),
        output:
            [f"{BUILD}/{product}" for product in step.products],
        params:
            # From the inputs and outputs themselves (no loop variable: it would be the last step's by then).
            sources=lambda wc, input: make_folder(input),
            build=lambda wc, output: os.path.dirname(output[0]),
            arch=lambda wc: cuda_arch(),
            nvcc=config["kernels"]["nvcc"],
        log:
            f"{RESULTS}/logs/{step.rule}.log",
        threads: 2
        localrule: True
        conda:
            "../../envs/cuda-build.yaml"
        shell:
            "make -C {params.sources:q} -j{threads} BUILD={params.build:q} ARCH={params.arch:q} NVCC={params.nvcc:q}"
            " > {log:q} 2>&1 || (tail -n 20 {log:q} >&2; exit 1)"
