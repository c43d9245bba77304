#!/usr/bin/env bash
# Real services on this machine for the tests marked `slurm` and `server`, in one idempotent command:
#   - a single-node SLURM cluster (munged, slurmctld, slurmd; partition `debug`),
#   - PostgreSQL with an `mlflow server` on top (basic auth, artifacts proxied by the server).
# Everything listens on 127.0.0.1 only. Run as root on Debian 12; there is no systemd, so the
# daemons are started by hand and keep running after this script exits. A second call while
# everything runs only checks and prints the states.
#
# Writes $SERVICES_DIR/services.env (tracking URI, admin credentials, partition) for the tests;
# logs go to $SERVICES_DIR/logs. Settings (environment): SERVICES_DIR, VENV (its mlflow and
# psycopg2 serve the tracking server), MLFLOW_PORT, PG_PORT, SLURM_PARTITION.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SERVICES_DIR=${SERVICES_DIR:-/var/lib/freeze-sweep-services}
VENV=${VENV:-$ROOT/.venv}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
PG_PORT=${PG_PORT:-5433}
SLURM_PARTITION=${SLURM_PARTITION:-debug}
PG_CLUSTER=freeze_sweep
LOGS=$SERVICES_DIR/logs
SECRETS=$SERVICES_DIR/secrets
ENV_FILE=$SERVICES_DIR/services.env
APT_PACKAGES=(munge slurm-wlm postgresql curl)

say() { printf '%-11s %s\n' "$1:" "$2"; }
die() {
    echo "services.sh: error: $*" >&2
    exit 1
}
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS COMMAND...: true once COMMAND succeeds, false after SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

install_packages() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return
    echo "installing ${missing[*]}"
    apt-get update -q >"$LOGS/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
        die "apt-get install ${missing[*]} failed; see $LOGS/apt.log"
}

# A secret made once and kept, so that restarts reuse the same credentials.
secret() {
    local file=$SECRETS/$1
    [[ -s $file ]] || (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$file")
    cat "$file"
}

start_munge() {
    if [[ ! -s /etc/munge/munge.key ]]; then
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    touch "$LOGS/munged.log"
    chown munge:munge "$LOGS/munged.log"
    if ! alive /run/munge/munged.pid; then
        runuser -u munge -- /usr/sbin/munged --log-file="$LOGS/munged.log"
    fi
    wait_for 10 bash -c 'munge -n | unmunge' || die "munged does not answer; see $LOGS/munged.log"
    say munge "running (pid $(cat /run/munge/munged.pid))"
}

slurm_conf() {
    local node cpus mem_mb
    node=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    cat <<EOF
# Written by .ci/services.sh: a single-node cluster on 127.0.0.1 (no cgroups, no accounting).
ClusterName=freeze-sweep
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$SERVICES_DIR/slurm/state
SlurmdSpoolDir=$SERVICES_DIR/slurm/spool
SlurmctldPidFile=$SERVICES_DIR/slurm/slurmctld.pid
SlurmdPidFile=$SERVICES_DIR/slurm/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
# Preemption tests: scontrol requeue works, SIGTERM -> SIGKILL after 10 s (default 30 s),
# finished jobs stay visible to squeue/scontrol for 5 minutes.
JobRequeue=1
KillWait=10
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

stop_pidfile() {
    if alive "$1"; then
        kill "$(cat "$1")"
        wait_for 15 bash -c "! kill -0 $(cat "$1")" || die "could not stop the process in $1"
    fi
}

start_slurm() {
    local node conf=/etc/slurm/slurm.conf
    node=$(hostname -s)
    mkdir -p /etc/slurm "$SERVICES_DIR/slurm/state" "$SERVICES_DIR/slurm/spool"
    if ! cmp -s <(slurm_conf) "$conf"; then
        slurm_conf >"$conf"
        # A changed config: restart so that both daemons read it.
        stop_pidfile "$SERVICES_DIR/slurm/slurmd.pid"
        stop_pidfile "$SERVICES_DIR/slurm/slurmctld.pid"
    fi
    rm -f /etc/slurm/cgroup.conf # Debian's slurm 22.05 exits on this machine with any cgroup.conf
    alive "$SERVICES_DIR/slurm/slurmctld.pid" || slurmctld
    wait_for 30 scontrol ping || die "slurmctld does not answer; see $LOGS/slurmctld.log"
    say slurmctld "running (pid $(cat "$SERVICES_DIR/slurm/slurmctld.pid")) on 127.0.0.1:6817"
    alive "$SERVICES_DIR/slurm/slurmd.pid" || slurmd
    if ! wait_for 30 bash -c "sinfo -h -n $node -o %t | grep -Eq '^(idle|mix|alloc)'"; then
        # A node left DOWN or DRAINED by an earlier run: put it back in service once.
        scontrol update nodename="$node" state=resume 2>/dev/null || true
        wait_for 15 bash -c "sinfo -h -n $node -o %t | grep -Eq '^(idle|mix|alloc)'" ||
            die "node $node is $(sinfo -h -n "$node" -o %t); see $LOGS/slurmd.log"
    fi
    say slurmd "running (pid $(cat "$SERVICES_DIR/slurm/slurmd.pid")), node $node $(sinfo -h -n "$node" -o %t), partition $SLURM_PARTITION"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs Debian packages and starts daemons)"
    mkdir -p "$LOGS" "$SECRETS"
    chmod 700 "$SECRETS"
    install_packages
    start_munge
    start_slurm
}

main "$@"
