#!/usr/bin/env bash
# Benchmarks/jobs-vs-slurm.sh [N] — end-to-end job throughput, Drover and Slurm side by side.
#
# Runs N small batch jobs (/bin/true) through a running local Drover (deploy/local/up, ideally
# DROVER_BUILD=release with two or more agents) with job-bench, then, when the Slurm peer of
# ../shared/peers/slurm is running (its start.sh), the same N jobs through sbatch (bench.sh
# indiv N), and prints both figures and their ratio.
set -euo pipefail
N=${1:-300}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
peers=${DROVER_PEERS:-$root/../shared/peers}

bin=$(cd "$root" && swift build -c release --product job-bench >/dev/null && swift build -c release --show-bin-path)
# The management token deploy/local/up wrote, unless one is given.
export DROVER_TOKEN=${DROVER_TOKEN:-$(cat "${DROVER_DATA_DIR:-$root/.drover}/management.token" 2>/dev/null || true)}
drover=$("$bin/job-bench" --jobs "$N" --concurrency 8 | tee /dev/stderr | sed -n 's/^RESULT drover_jobs_per_s=\([0-9.]*\).*/\1/p')

if [ -f "${SLURM_PEER_DIR:-/tmp/drover-slurm-peer}/etc/slurm.conf" ] && command -v sbatch >/dev/null; then
    line=$(bash "$peers/slurm/bench.sh" indiv "$N" | tail -1)
    echo "slurm: $line" >&2
    slurm=$(echo "$line" | awk -F, '{print $8}')
    awk -v d="$drover" -v s="$slurm" 'BEGIN { printf "completed jobs/s: drover %.1f, slurm %.1f, ratio %.2f\n", d, s, d / s }'
else
    echo "Slurm peer not running (see $peers/slurm/README.md); Drover alone: $drover jobs/s"
fi
