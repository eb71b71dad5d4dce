#!/usr/bin/env bash
# Stop the daemons start-cluster.sh started, and wait until they are gone.
daemons=(slurmd slurmctld slurmscriptd munged)
running() { for d in "${daemons[@]}"; do pgrep -x "$d" > /dev/null && return 0; done; return 1; }
for d in "${daemons[@]}"; do pkill -x "$d" || true; done
for _ in $(seq 1 20); do
  running || exit 0
  sleep 0.5
done
for d in "${daemons[@]}"; do pkill -9 -x "$d" || true; done
