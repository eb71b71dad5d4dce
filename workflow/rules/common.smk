# Configuration, validation and every input function of the workflow.
import functools
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from edgebench import EdgebenchError
from edgebench.config import validate
from edgebench.provenance import testbed_name

try:
    validate(config)
except EdgebenchError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

RESULTS = config["results"]
TESTBED = testbed_name() if config["testbed"] == "auto" else config["testbed"]
# Several GPU types in one pass (on Slurm, each testbed's jobs ask for its GPU model); otherwise this machine.
TESTBEDS = list(config.get("testbeds") or {}) or [TESTBED]
MODELS = list(config["models"])
BACKENDS = list(config["backends"])
PROMPTS = list(config["prompts"])
BASELINE = config.get("baseline") or BACKENDS[0]
SRC = str(Path(workflow.basedir) / "src")


def models_with(source):
    return [m for m in MODELS if source in config["models"][m]]


def constraint(names):
    """A wildcard constraint matching exactly these names (a never-matching one when empty)."""
    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


def model_record(wildcards):
    return f"{RESULTS}/models/{wildcards.model}.json"


@functools.lru_cache(maxsize=None)
def this_machine_has_a_gpu():
    from edgebench.monitor import gpu_identity

    return bool(gpu_identity().get("gpu_name"))


def edgellm_on_gpu(backend, testbed):
    """Whether this testbed's edgellm jobs run the CUDA engine, which needs the kernels built first: device cuda, or
    auto (the default) on a testbed that expects a GPU or, without testbeds, on this machine when it has one."""
    if backend != "edgellm":
        return False
    device = config["backends"][backend].get("device", "auto")
    if device != "auto":
        return device == "cuda"
    return bool(testbed_spec(testbed).get("expect_gpu")) or (not config.get("testbeds") and this_machine_has_a_gpu())


def bench_inputs(wildcards):
    inputs = {"record": model_record(wildcards)}
    if edgellm_on_gpu(wildcards.backend, wildcards.testbed):
        inputs["kernels"] = f"{KERNEL_BUILD}/libedgellm.so"
    return inputs


def testbed_spec(testbed):
    return (config.get("testbeds") or {}).get(testbed, {})


def run_files(testbed):
    return expand(f"{RESULTS}/{testbed}/runs/{{backend}}/{{model}}/{{prompt}}.parquet",
                  backend=BACKENDS, model=MODELS, prompt=PROMPTS)


def bench_settings():
    """Everything that changes what a benchmark measures: a change reruns the benchmarks (params are tracked)."""
    keys = ("runs", "warmup", "max_new_tokens", "temperature", "seed", "num_ctx", "threads", "prompt_format",
            "ignore_eos")
    return {k: config[k] for k in keys}


FIGURES = ["throughput_vs_size", "speedup", "latency_distribution", "ttft", "memory_vs_size", "energy_per_token"]
TABLES = ["summary", "criteria", "scaling"]


def all_outputs():
    out = []
    for testbed in TESTBEDS:
        out += [f"{RESULTS}/{testbed}/{name}.parquet" for name in ("runs", "summary", "scaling", "criteria")]
        out += expand(f"{RESULTS}/{testbed}/figures/{{fig}}.png", fig=FIGURES)
        out += expand(f"{RESULTS}/{testbed}/tables/{{table}}.{{ext}}", table=TABLES, ext=["csv", "tex"])
    if config["kernels"]["run"]:
        for testbed in TESTBEDS:
            out += kernel_outputs(testbed)
    if len(TESTBEDS) > 1 or config["compare_testbeds"]:
        out.append(f"{RESULTS}/comparison/throughput_by_testbed.png")
    return out


def figure(name, category="Figures"):
    """A figure of a testbed, flagged for the report with its caption from report/fig_{name}.rst."""
    return report(f"{RESULTS}/{{testbed}}/figures/{name}.png", category=category,
                  caption=f"../../report/fig_{name}.rst")


def kernel_arch():
    """The compute capability the kernels are built for (config, else this machine's GPU, else H100/H200's 90)."""
    from edgebench.kernels import detect_arch

    try:
        return detect_arch(config["kernels"]["arch"])
    except EdgebenchError as exc:
        raise WorkflowError(str(exc)) from None


# EdgeLLM's CUDA kernels (workflow/rules/kernels.smk).
KERNEL_SOURCES = sorted(
    str(p) for p in Path(workflow.basedir, "kernels").rglob("*") if p.suffix in (".cu", ".cuh", ".h") or p.name == "Makefile"
)
KERNEL_BUILD = str(Path(workflow.basedir) / "build")


def kernel_accuracy_input(wildcards):
    """The kernels' accuracy table for the accuracy criterion, when the config runs the kernel gate."""
    if not config["kernels"]["run"]:
        return {}
    return {"kernel_accuracy": f"{RESULTS}/{wildcards.testbed}/kernels/accuracy.parquet"}


def kernel_outputs(testbed):
    return [f"{RESULTS}/{testbed}/kernels/{name}" for name in
            ("accuracy.parquet", "sanitizer.parquet", "bench.parquet", "figures/kernel_attention.png")]
