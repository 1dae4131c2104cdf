#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying the SLURM launcher.
#
#   scripts/slurm_local.sh [start]   install nothing; configure and start munged, slurmctld, slurmd,
#                                    wait until the node is idle (does nothing when already up)
#   scripts/slurm_local.sh stop      stop the daemons this script started
#
# Needs root and Debian's slurmctld, slurmd and munge packages
# (apt-get install -y slurmctld slurmd munge slurm-client). State, spool and logs live under
# $SLURM_LOCAL_DIR (default /tmp/slurm-local); /etc/slurm/slurm.conf is made a link to the config
# written there, unless it is another cluster's file.
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/slurm-local}
CONF=/etc/slurm/slurm.conf
NODE=localhost

die() { echo "slurm_local: $*" >&2; exit 1; }

node_idle() { sinfo -h -n "$NODE" -o '%t' 2>/dev/null | grep -qE '^(idle|mix|alloc)'; }

stop() {
  for pidfile in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munged.pid"; do
    if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      kill "$(cat "$pidfile")"
    fi
    rm -f "$pidfile"
  done
}

write_config() {
  local cpus memory
  cpus=$(nproc)
  memory=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$DIR/slurm.conf" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster on localhost.
ClusterName=local
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
  if [[ -L $CONF || ! -e $CONF ]]; then
    mkdir -p "$(dirname "$CONF")"
    ln -sfn "$DIR/slurm.conf" "$CONF"
  elif ! cmp -s "$CONF" "$DIR/slurm.conf"; then
    die "$CONF belongs to another cluster; run with SLURM_CONF=$DIR/slurm.conf or move it away"
  fi
}

start() {
  [[ $EUID -eq 0 ]] || die "run as root (the daemons run as root on this one-node cluster)"
  for tool in munge munged slurmctld slurmd sinfo sbatch; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y slurmctld slurmd munge slurm-client"
  done
  if node_idle; then
    echo "slurm_local: node $NODE is up"
    return
  fi
  stop
  write_config
  export SLURM_CONF=$DIR/slurm.conf
  if ! munge -n >/dev/null 2>&1; then  # no munged answering yet: start one
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    [[ -f /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create
    runuser -u munge -- munged
    cp /run/munge/munged.pid "$DIR/munged.pid"
  fi
  slurmctld -c
  slurmd -N "$NODE"
  for _ in $(seq 60); do
    if node_idle; then
      echo "slurm_local: node $NODE is up ($(nproc) CPUs); config $DIR/slurm.conf, logs $DIR/log"
      return
    fi
    sleep 1
  done
  die "node $NODE did not come up within 60 s; see $DIR/log"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 [start|stop]" ;;
esac
