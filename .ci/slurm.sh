#!/usr/bin/env bash
# A single-node SLURM on this machine, for the SLURM profile test (tests/workflow/test_slurm.py).
#
#   .ci/slurm.sh start    install slurm-wlm + munge if missing, write slurm.conf, start munged,
#                         slurmctld and slurmd, wait until the node is idle (exit 1 otherwise)
#   .ci/slurm.sh stop     stop the daemons that `start` started
#   .ci/slurm.sh status   sinfo, and which daemons are running
#
# Needs root and Debian (apt-get). Both subcommands are idempotent. Daemon state, logs and pid
# files live under $GUIDEBENCH_SLURM_DIR (default /tmp/guidebench-slurm); the configuration is
# written to /etc/slurm/slurm.conf (where Debian's sinfo/sbatch/squeue look, so nothing else
# needs SLURM_CONF), unless a slurm.conf that this script did not write is already there.
# No accounting database: `sacct` fails, so Snakemake needs `--slurm-status-command squeue`.
set -euo pipefail

SCRATCH=${GUIDEBENCH_SLURM_DIR:-/tmp/guidebench-slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# Written by GuideBench .ci/slurm.sh"
MUNGE_PIDFILE=/run/munge/munged.pid
WAIT_S=${GUIDEBENCH_SLURM_WAIT_S:-60}

log() { echo "slurm.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# pid from a pid file if that process is alive and is the named program.
live_pid() {
    local pidfile=$1 name=$2 pid
    [[ -r $pidfile ]] || return 1
    pid=$(tr -dc 0-9 <"$pidfile")
    [[ -n $pid && -d /proc/$pid ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    echo "$pid"
}

stop_daemon() {
    local pidfile=$1 name=$2 pid i
    if ! pid=$(live_pid "$pidfile" "$name"); then
        rm -f "$pidfile"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -d /proc/$pid ]] || break
        sleep 0.1
    done
    if [[ -d /proc/$pid ]]; then
        log "$name did not stop in 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sinfo >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    ((${#missing[@]})) || return 0
    log "installing slurm-wlm and munge (missing: ${missing[*]})"
    # Keep the packages' init scripts from starting daemons: this script starts its own.
    local policy=/usr/sbin/policy-rc.d ours_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && ours_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } || rc=$?
    ((ours_policy)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get install slurm-wlm munge failed (exit $rc)"
}

ensure_munge_key() {
    local key=/etc/munge/munge.key
    id munge >/dev/null 2>&1 || die "user 'munge' does not exist (is the munge package installed?)"
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s $key ]]; then
        log "creating $key"
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$key" --force
        else
            dd if=/dev/urandom of="$key" bs=1 count=1024 status=none
        fi
    fi
    chown munge:munge "$key"
    chmod 0400 "$key"
}

start_munged() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        log "munged is already running"
        return 0
    fi
    log "starting munged (as user munge)"
    runuser -u munge -- /usr/sbin/munged
    touch "$SCRATCH/munged.started-by-us"
    local i
    for ((i = 0; i < 50; i++)); do
        munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "munged does not answer (munge -n | unmunge fails); see /var/log/munge/munged.log"
}

write_conf() {
    local host cpus mem_kb real_mb
    host=$(hostname)
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    real_mb=$((mem_kb * 9 / 10 / 1024)) # below the machine's: slurmd drains a node that has less
    if [[ -e $CONF ]] && ! head -n1 "$CONF" | grep -qF "$MARKER"; then
        die "$CONF exists and was not written by this script; not overwriting it"
    fi
    mkdir -p /etc/slurm "$SCRATCH/state" "$SCRATCH/spool"
    cat >"$SCRATCH/slurm.conf" <<EOF
$MARKER (single-node test cluster; state in $SCRATCH)
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
ReturnToService=2
MpiDefault=none
StateSaveLocation=$SCRATCH/state
SlurmdSpoolDir=$SCRATCH/spool
SlurmctldPidFile=$SCRATCH/slurmctld.pid
SlurmdPidFile=$SCRATCH/slurmd.pid
SlurmctldLogFile=$SCRATCH/slurmctld.log
SlurmdLogFile=$SCRATCH/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Finished jobs stay visible to squeue for a while (Snakemake's status checks use squeue).
MinJobAge=300
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$real_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    if ! cmp -s "$SCRATCH/slurm.conf" "$CONF" 2>/dev/null; then
        cp "$SCRATCH/slurm.conf" "$CONF"
        log "wrote $CONF (NodeName=$host CPUs=$cpus RealMemory=$real_mb)"
        return 1 # changed: running daemons must restart
    fi
    return 0
}

node_state() { sinfo -h -N -o '%t' 2>/dev/null | head -n1; }

cmd_start() {
    [[ $(id -u) == 0 ]] || die "must run as root"
    mkdir -p "$SCRATCH"
    install_packages
    ensure_munge_key
    start_munged
    if ! write_conf; then
        stop_daemon "$SCRATCH/slurmd.pid" slurmd
        stop_daemon "$SCRATCH/slurmctld.pid" slurmctld
    fi
    if live_pid "$SCRATCH/slurmctld.pid" slurmctld >/dev/null; then
        log "slurmctld is already running"
    else
        log "starting slurmctld"
        slurmctld || die "slurmctld failed to start; see $SCRATCH/slurmctld.log"
    fi
    if live_pid "$SCRATCH/slurmd.pid" slurmd >/dev/null; then
        log "slurmd is already running"
    else
        log "starting slurmd"
        slurmd || die "slurmd failed to start; see $SCRATCH/slurmd.log"
    fi
    local deadline=$((SECONDS + WAIT_S)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case $state in
            idle | mix | alloc) break ;;
            down* | drain* | fail* | inval*) scontrol update nodename="$(hostname)" state=resume 2>/dev/null || true ;;
        esac
        sleep 1
    done
    if [[ ! $state =~ ^(idle|mix|alloc)$ ]]; then
        log "the node is not idle after ${WAIT_S} s (sinfo state: '${state:-no answer}')"
        sinfo -N -l >&2 || true
        for f in slurmctld slurmd; do
            log "last lines of $SCRATCH/$f.log:"
            tail -n 20 "$SCRATCH/$f.log" >&2 2>/dev/null || true
        done
        die "single-node SLURM did not come up"
    fi
    log "SLURM is up: node $(hostname) is $state"
    sinfo >&2
}

cmd_stop() {
    stop_daemon "$SCRATCH/slurmd.pid" slurmd
    stop_daemon "$SCRATCH/slurmctld.pid" slurmctld
    if [[ -e $SCRATCH/munged.started-by-us ]]; then
        stop_daemon "$MUNGE_PIDFILE" munged
        rm -f "$SCRATCH/munged.started-by-us"
    fi
    log "stopped"
}

cmd_status() {
    local d
    for d in slurmctld slurmd; do
        if pid=$(live_pid "$SCRATCH/$d.pid" "$d"); then echo "$d: running (pid $pid)"; else echo "$d: not running"; fi
    done
    if pid=$(live_pid "$MUNGE_PIDFILE" munged); then echo "munged: running (pid $pid)"; else echo "munged: not running"; fi
    sinfo 2>&1 || true
}

case ${1:-} in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
