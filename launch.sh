#!/usr/bin/env bash
# Run a command here, on a SLURM cluster, or on every worker of a Cloud TPU VM.
#
#   ./launch.sh local [--dry-run] -- CMD...
#   ./launch.sh slurm [--nodes N] [--gpus-per-node G] [--tasks-per-node T] [--partition P] [--array SPEC]
#                     [--job-name NAME] [--output DIR] [--sbatch OPTION]... [--dry-run] -- CMD...
#   ./launch.sh tpu --tpu NAME --zone ZONE [--project PROJECT] [--dry-run] -- CMD...
#
# local  runs CMD in this shell.
# slurm  writes DIR/NAME.sbatch (DIR: --output, default runs/slurm; NAME: --job-name, default scaling)
#        running CMD under srun, one process per GPU (G per node) or, without GPUs, one per host
#        (--tasks-per-node overrides both), submits it from here and prints the job id. Each process's
#        jax.distributed.initialize() finds its peers from SLURM's variables (scaling/sharding.py).
#        --array SPEC makes it a job array; --sbatch passes any other option (--sbatch --time=4:00:00).
# tpu    copies this git checkout (tracked and untracked files, not ignored ones) to ~/scaling on every
#        worker (outside a git checkout it is an error), installs it (pip install -e '.[tpu]') and runs
#        CMD in ~/scaling on all workers at once.
# --dry-run prints the exact commands (and the sbatch script) instead of running them.
set -euo pipefail

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
die() { echo "launch.sh: $*" >&2; exit 2; }

# Print a command shell-quoted: plain words bare, others in single quotes, or double, or as bash's ${word@Q}.
quote() {
  local words=() word
  for word in "$@"; do
    if [[ $word =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then words+=("$word")
    elif [[ $word != *"'"* ]]; then words+=("'$word'")
    elif [[ ! $word =~ [\$\`\\\"!] ]]; then words+=("\"$word\"")
    else words+=("${word@Q}"); fi
  done
  echo "${words[*]}"
}

# Run a command, or print it with --dry-run.
run() {
  if ((dry_run)); then quote "$@"; else "$@"; fi
}

local_mode() {
  run "${cmd[@]}"
}

sbatch_script() {
  echo "#!/bin/bash"
  echo "#SBATCH --job-name=$job_name"
  echo "#SBATCH --nodes=$nodes"
  echo "#SBATCH --ntasks-per-node=$tasks_per_node"
  if ((gpus_per_node)); then echo "#SBATCH --gpus-per-node=$gpus_per_node"; fi
  if [[ -n $partition ]]; then echo "#SBATCH --partition=$partition"; fi
  if [[ -n $array ]]; then
    echo "#SBATCH --array=$array"
    echo "#SBATCH --output=$output/%x-%A_%a.out"
  else
    echo "#SBATCH --output=$output/%x-%j.out"
  fi
  local option
  for option in "${sbatch_options[@]}"; do echo "#SBATCH $option"; done
  echo "# Written by launch.sh: one process per task; jax.distributed.initialize() reads SLURM_* in each."
  echo "set -euo pipefail"
  echo "srun --kill-on-bad-exit=1 $(quote "${cmd[@]}")"
}

slurm_mode() {
  if ((tasks_per_node == 0)); then tasks_per_node=$((gpus_per_node > 0 ? gpus_per_node : 1)); fi
  local script=$output/$job_name.sbatch
  if ((dry_run)); then
    echo "# $script"
    sbatch_script
    quote sbatch --parsable "$script"
    return
  fi
  command -v sbatch >/dev/null || die "sbatch not found: run on a SLURM login node (or start scripts/slurm_local.sh)"
  mkdir -p "$output"
  sbatch_script >"$script"
  local job
  job=$(sbatch --parsable "$script")
  echo "launch.sh: submitted job ${job%%;*} ($script; logs in $output)" >&2
  echo "${job%%;*}"
}

tpu_mode() {
  [[ -n $tpu && -n $zone ]] || die "tpu: --tpu NAME and --zone ZONE are required"
  local where=(--zone="$zone") archive=${TMPDIR:-/tmp}/scaling-$tpu.tar.gz
  if [[ -n $project ]]; then where+=(--project="$project"); fi
  cd "$(dirname "$0")"
  [[ $(git rev-parse --show-toplevel 2>/dev/null) == "$(pwd -P)" ]] ||
    die "tpu: $(pwd -P) is not a git checkout, whose files (as git lists them) tpu copies: run it from a clone"
  run bash -c "git ls-files -z --cached --others --exclude-standard | tar -czf $(quote "$archive") --null -T -"
  run gcloud compute tpus tpu-vm scp "$archive" "$tpu:scaling.tar.gz" --worker=all "${where[@]}"
  local install='mkdir -p ~/scaling && tar -xzf ~/scaling.tar.gz -C ~/scaling && cd ~/scaling'
  install+=' && python3 -m pip install -q -e ".[tpu]"'
  run gcloud compute tpus tpu-vm ssh "$tpu" --worker=all "${where[@]}" --command "$install"
  run gcloud compute tpus tpu-vm ssh "$tpu" --worker=all "${where[@]}" --command "cd ~/scaling && $(quote "${cmd[@]}")"
}

mode=${1:-}
case $mode in
  local | slurm | tpu) shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; die "the first argument is the mode: local, slurm or tpu" ;;
esac

dry_run=0 nodes=1 gpus_per_node=0 tasks_per_node=0 partition="" array="" job_name=scaling output=runs/slurm
tpu="" zone="" project="" sbatch_options=() cmd=()
declare -A OPTIONS=(  # mode:option -> the variable it sets
  [slurm:--nodes]=nodes [slurm:--gpus-per-node]=gpus_per_node [slurm:--tasks-per-node]=tasks_per_node
  [slurm:--partition]=partition [slurm:--array]=array [slurm:--job-name]=job_name [slurm:--output]=output
  [slurm:--sbatch]=sbatch_options [tpu:--tpu]=tpu [tpu:--zone]=zone [tpu:--project]=project
)
while (($#)); do
  case $1 in
    --) shift; cmd=("$@"); break ;;
    --dry-run) dry_run=1; shift; continue ;;
  esac
  name=${OPTIONS[$mode:$1]:-}
  [[ -n $name ]] || die "$mode: unknown option $1 (see ./launch.sh --help)"
  (($# >= 2)) || die "$mode: $1 needs a value"
  if [[ $name == sbatch_options ]]; then sbatch_options+=("$2"); else printf -v "$name" '%s' "$2"; fi
  shift 2
done
((${#cmd[@]})) || die "$mode: give the command after --, e.g. ./launch.sh $mode -- python -m scaling.train ..."
for number in "$nodes" "$gpus_per_node" "$tasks_per_node"; do
  [[ $number =~ ^[0-9]+$ ]] || die "slurm: --nodes, --gpus-per-node and --tasks-per-node take numbers, got $number"
done

"${mode}_mode"
