# Configuration, validation and every input function of the workflow. Backends are known only through the
# registry (edgebench.backends): their options, and what their jobs need built first.
import functools
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from edgebench import EdgebenchError
from edgebench.backends import build_inputs, build_steps
from edgebench.config import resolve_testbed, validate
from edgebench.context import context_text_path

try:
    validate(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
except EdgebenchError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

RESULTS = config["results"]
TESTBED = resolve_testbed(config)  # the machine's name where the config says auto, as the report shows it
# Several GPU types in one pass (on Slurm, each testbed's jobs ask for its GPU model); otherwise this machine.
TESTBEDS = list(config.get("testbeds") or {}) or [TESTBED]
MODELS = list(config["models"])
BACKENDS = list(config["backends"])
PROMPTS = list(config["prompts"])
CONTEXTS = list(config["contexts"])  # context sweep: prompt lengths in tokens (workflow/rules/context.smk)
BASELINE = config.get("baseline") or BACKENDS[0]
SRC = str(Path(workflow.basedir) / "src")
CONTEXT_TEXT = str(context_text_path())  # the context sweep's shipped text
# What backends' build steps make (compiled kernels), and the steps themselves (workflow/rules/build.smk).
BUILD = str(Path(workflow.basedir) / "build")
BUILD_STEPS = build_steps()
# Outputs that optional rule files add to `all` and inputs they add to the analysis (kernels/tools/rules.smk).
EXTRA_OUTPUTS = []
GATE_OUTPUTS = {}  # analysis input name -> path with {testbed}


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


def testbed_has_gpu(testbed):
    """Whether this testbed's jobs run on a GPU: it expects one or, without testbeds, this machine has one."""
    return bool(testbed_spec(testbed).get("expect_gpu")) or (not config.get("testbeds") and this_machine_has_a_gpu())


def bench_inputs(wildcards):
    """The model record, and whatever the backend declares its job needs built first (as `built_<option>`)."""
    inputs = {"record": model_record(wildcards)}
    options = config["backends"][wildcards.backend]
    for option, product in build_inputs(wildcards.backend, options, testbed_has_gpu(wildcards.testbed)).items():
        inputs[f"built_{option}"] = f"{BUILD}/{product}"
    return inputs


def testbed_spec(testbed):
    return (config.get("testbeds") or {}).get(testbed, {})


def run_files(testbed):
    """Every benchmark job's runs: the named prompts, then the context sweep's lengths (ctx{tokens})."""
    return expand(f"{RESULTS}/{testbed}/runs/{{backend}}/{{model}}/{{prompt}}.parquet",
                  backend=BACKENDS, model=MODELS, prompt=PROMPTS) + \
        expand(f"{RESULTS}/{testbed}/runs/{{backend}}/{{model}}/ctx{{tokens}}.parquet",
               backend=BACKENDS, model=MODELS, tokens=CONTEXTS)


def bench_settings():
    """Everything that changes what a benchmark measures: a change reruns the benchmarks (params are tracked)."""
    keys = ("runs", "warmup", "max_new_tokens", "temperature", "seed", "num_ctx", "threads", "prompt_format",
            "ignore_eos")
    return {k: config[k] for k in keys}


def context_settings(tokens):
    """A context job's settings: the raw prompt (a chat template would add tokens), num_ctx grown to fit it."""
    from edgebench.context import grown_num_ctx

    s = bench_settings()
    return {**s, "prompt_format": "raw", "num_ctx": grown_num_ctx(s["num_ctx"], tokens, s["max_new_tokens"])}


FIGURES = ["throughput_vs_size", "speedup", "latency_distribution", "ttft", "memory_vs_size", "energy_per_token"]
TABLES = ["summary", "criteria", "scaling"]
CONTEXT_FIGURES = ["context_ttft", "context_prefill", "context_decode", "context_speedup", "context_memory"]


def all_outputs():
    out = []
    for testbed in TESTBEDS:
        out += [f"{RESULTS}/{testbed}/{name}.parquet" for name in ("runs", "summary", "scaling", "criteria")]
        out += expand(f"{RESULTS}/{testbed}/figures/{{fig}}.png", fig=FIGURES)
        out += expand(f"{RESULTS}/{testbed}/tables/{{table}}.{{ext}}", table=TABLES, ext=["csv", "tex"])
        if CONTEXTS:
            out += expand(f"{RESULTS}/{testbed}/figures/{{fig}}.png", fig=CONTEXT_FIGURES)
            out += expand(f"{RESULTS}/{testbed}/tables/context.{{ext}}", ext=["csv", "tex"])
    out += EXTRA_OUTPUTS
    if len(TESTBEDS) > 1 or config["compare_testbeds"]:
        out.append(f"{RESULTS}/comparison/throughput_by_testbed.png")
    return out


def figure(name, category="Figures"):
    """A figure of a testbed, flagged for the report with its caption from report/fig_{name}.rst."""
    return report(f"{RESULTS}/{{testbed}}/figures/{name}.png", category=category,
                  caption=f"../../report/fig_{name}.rst")


def cuda_arch():
    """The compute capabilities builds are made for, as the Makefile's ARCH ("90", "75 80 86"): the config's, else
    this machine's GPUs, else H100/H200's 90."""
    from edgebench.build import cuda_arch as resolve

    try:
        return resolve(config["kernels"]["arch"])
    except EdgebenchError as exc:
        raise WorkflowError(str(exc)) from None


BUILD_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cu", ".cuh", ".h", ".hpp")


def build_sources(step):
    """The C/C++/CUDA sources and the Makefile under a build step's folder: a change to any of them rebuilds."""
    root = Path(workflow.basedir) / step.sources
    return sorted(str(p) for p in root.rglob("*") if p.suffix in BUILD_SOURCE_SUFFIXES or p.name == "Makefile")


def make_folder(files):
    """The folder of the top-level Makefile among a build step's sources."""
    return os.path.dirname(min((f for f in files if os.path.basename(f) == "Makefile"), key=len))


def gate_inputs(wildcards):
    """Accuracy gates an optional rule file contributes to the accuracy criterion (e.g. the kernel gate)."""
    return {name: path.format(testbed=wildcards.testbed) for name, path in GATE_OUTPUTS.items()}
