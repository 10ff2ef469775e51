#!/usr/bin/env bash
# A real single-node Slurm on this machine (for the launcher's `slurm` executor tests): installs Debian's
# slurm-wlm and munge if missing, writes a minimal /etc/slurm/slurm.conf (this host is the controller and the
# only compute node; no cgroups, no accounting database) and starts munged, slurmctld and slurmd.
# Idempotent: a second run finds the daemons up and the node idle and does nothing. Needs root.
#
# Job state comes from `scontrol show job` (finished jobs stay visible for MinJobAge seconds) and from the
# job-completion log (JobCompType=jobcomp/filetxt), since `sacct` needs slurmdbd, which this setup does without.
set -euo pipefail

STATE_DIR=${SLURM_STATE_DIR:-/var/lib/sv-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by scripts/slurm_single_node.sh"
NODE=localhost

if [ "$(id -u)" != "0" ]; then
    echo "slurm_single_node.sh: needs root (it installs packages and starts system daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

if [ -f "$CONF" ] && ! grep -qF "$MARKER" "$CONF"; then
    echo "slurm_single_node.sh: $CONF exists and was not written by this script; refusing to replace it" >&2
    exit 1
fi

mkdir -p "$STATE_DIR"/{ctld,spool,log} /run/munge
chown munge:munge /run/munge
chmod 0755 /run/munge

# One task per core; memory a little under what the machine has, so slurmd's own check accepts the node.
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)

CONF_TEXT="$MARKER
ClusterName=sv-single
SlurmctldHost=$NODE
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE_DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# A job asking for more than the node has is refused by sbatch (with the reason) instead of pending forever.
EnforcePartLimits=ALL
# Finished jobs stay in scontrol's view for an hour (the launcher reads their state and exit code there).
MinJobAge=3600
# Between the SIGTERM and the SIGKILL of a cancelled or timed-out job: time for the trainer to checkpoint.
KillWait=30
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=/run/sv-slurmctld.pid
SlurmdPidFile=/run/sv-slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP"

if [ ! -f "$CONF" ] || [ "$(cat "$CONF")" != "$CONF_TEXT" ]; then
    printf '%s\n' "$CONF_TEXT" >"$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    CHANGED=1
else
    CHANGED=0
fi

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if ! running /run/munge/munged.pid; then
    runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
fi
munge -n | unmunge >/dev/null  # fails loudly when munge cannot authenticate

if [ "$CHANGED" = 1 ] && running /run/sv-slurmctld.pid; then
    scontrol reconfigure
fi
if ! running /run/sv-slurmctld.pid; then
    /usr/sbin/slurmctld
fi
if ! running /run/sv-slurmd.pid; then
    /usr/sbin/slurmd -N "$NODE"
fi

# Wait for the node to register, then bring it back if an earlier run left it down or drained.
for _ in $(seq 1 60); do
    state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
    case "$state" in
        idle* | mixed* | allocated*) break ;;
        down* | drain*) scontrol update NodeName="$NODE" State=RESUME || true ;;
    esac
    sleep 1
done
state=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
case "$state" in
    idle* | mixed* | allocated*) echo "slurm_single_node.sh: Slurm is up (node $NODE: $state, $CPUS CPUs)" ;;
    *)
        echo "slurm_single_node.sh: node $NODE is '${state:-unknown}'; see $STATE_DIR/log/" >&2
        tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
        exit 1
        ;;
esac
