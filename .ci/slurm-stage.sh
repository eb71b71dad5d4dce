#!/usr/bin/env bash
# CI stage: a real single-node Slurm (Debian's munge, slurmctld, slurmd) with one fake GPU; the quickstart pipeline
# through `--profile slurm`; every benchmark job must have gone through sbatch. Stops the daemons it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq munge slurmctld slurmd slurm-client > /dev/null
.venv/bin/pip install -q -e ".[slurm]"
bash .ci/slurm/start-cluster.sh
trap 'bash .ci/slurm/stop-cluster.sh' EXIT
out=$(mktemp -d)
rm -rf .snakemake/slurm_logs
if ! .venv/bin/snakemake all --profile slurm --config results="$out" > "$out/snakemake.log" 2>&1; then
  tail -40 "$out/snakemake.log"
  exit 1
fi
ls "$out"/*/runs.parquet
# The number of benchmark jobs (named prompts and the context sweep), from Snakemake's own plan of the same run (job
# stats of a dry run in a fresh folder; the table is printed twice, the first one counts).
expected=$(.venv/bin/snakemake all -n --cores 1 --config results="$(mktemp -d)" | \
  awk '$1 == "total" {done = 1} !done && ($1 == "bench" || $1 == "bench_context") {n += $2} END {print n + 0}')
submitted=$(grep -c "has been submitted with SLURM jobid" "$out/snakemake.log" || true)
bench_logs=$(find .snakemake/slurm_logs/rule_bench .snakemake/slurm_logs/rule_bench_context -name "*.log" 2>/dev/null | wc -l)
other=$(find .snakemake/slurm_logs -mindepth 1 -maxdepth 1 ! -name rule_bench ! -name rule_bench_context | wc -l)
echo "benchmark jobs: expected $expected, submitted to Slurm $submitted, Slurm job logs $bench_logs; other rules on Slurm: $other"
[ "$submitted" -eq "$expected" ] && [ "$bench_logs" -eq "$expected" ] && [ "$other" -eq 0 ]
echo "slurm stage: passed"
