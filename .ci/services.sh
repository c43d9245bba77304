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
APT_PACKAGES=(munge slurm-wlm postgresql curl iproute2)

say() { printf '%-11s %s\n' "$1:" "$2"; }
die() {
    echo "services.sh: error: $*" >&2
    exit 1
}
alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS COMMAND...: true once COMMAND succeeds; false after SECONDS, or at once if it exits 255.
wait_for() {
    local deadline=$((SECONDS + $1)) rc
    shift
    while true; do
        rc=0
        "$@" >/dev/null 2>&1 || rc=$?
        ((rc == 0)) && return 0
        ((rc == 255 || SECONDS >= deadline)) && return 1
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
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >>"$LOGS/apt.log" 2>&1 ||
        die "apt-get install ${missing[*]} failed; see $LOGS/apt.log"
}

# write_if_changed FILE < content: true if FILE was (re)written, false if it already held the content.
write_if_changed() {
    local content
    content=$(cat)
    [[ -f $1 && $(cat "$1") == "$content" ]] && return 1
    printf '%s\n' "$content" >"$1"
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
# Preemption tests: scontrol requeue works, SIGTERM -> SIGKILL after 10 s (default 30 s), a
# requeued job may start again 31 s later (cred_expire + 1; default 121 s), the scheduler looks
# every 5 s (default 60 s), finished jobs stay visible to squeue/scontrol for 5 minutes.
JobRequeue=1
KillWait=10
AuthInfo=cred_expire=30
SchedulerParameters=sched_interval=5,bf_interval=5
MinJobAge=300
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$SLURM_PARTITION Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

# stop_pidfile FILE [-]: stop the process in FILE (with "-", its whole process group), killing it after 15 s.
stop_pidfile() {
    alive "$1" || return 0
    local target
    target=${2:-}$(cat "$1")
    kill -- "$target"
    wait_for 15 bash -c "! kill -0 -- $target" || kill -KILL -- "$target" 2>/dev/null || true
}

start_slurm() {
    local node conf=/etc/slurm/slurm.conf
    node=$(hostname -s)
    mkdir -p /etc/slurm "$SERVICES_DIR/slurm/state" "$SERVICES_DIR/slurm/spool"
    if slurm_conf | write_if_changed "$conf"; then
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

psql_admin() { runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }

start_postgres() {
    local version password
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)
    if ! pg_lsclusters -h | awk '{print $1, $2}' | grep -qx "$version $PG_CLUSTER"; then
        install -o postgres -g postgres -m 640 /dev/null "$LOGS/postgresql.log"
        pg_createcluster "$version" "$PG_CLUSTER" -p "$PG_PORT" -l "$LOGS/postgresql.log" -- \
            --auth-local=peer --auth-host=scram-sha-256 >"$LOGS/postgresql-create.log"
    fi
    if echo "listen_addresses = '127.0.0.1'" | write_if_changed "/etc/postgresql/$version/$PG_CLUSTER/conf.d/freeze-sweep.conf"; then
        pg_ctlcluster "$version" "$PG_CLUSTER" stop 2>/dev/null || true
    fi
    if ! pg_lsclusters -h | awk -v c="$PG_CLUSTER" '$2 == c {print $4}' | grep -qx online; then
        pg_ctlcluster "$version" "$PG_CLUSTER" start
    fi
    wait_for 30 pg_isready -q -h 127.0.0.1 -p "$PG_PORT" ||
        die "PostgreSQL does not answer; see $LOGS/postgresql.log"
    password=$(secret postgres-mlflow)
    if [[ -z $(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = 'mlflow'") ]]; then
        psql_admin -c "CREATE ROLE mlflow LOGIN"
    fi
    psql_admin -c "ALTER ROLE mlflow PASSWORD '$password'"
    # libpq reads the password from here: it stays off mlflow's command line.
    (umask 077 && echo "127.0.0.1:$PG_PORT:*:mlflow:$password" >"$SECRETS/pgpass")
    for db in mlflow mlflow_auth; do
        if [[ -z $(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
            psql_admin -c "CREATE DATABASE $db OWNER mlflow"
        fi
    done
    say postgresql "running ($version/$PG_CLUSTER) on 127.0.0.1:$PG_PORT, databases mlflow and mlflow_auth"
}

# Fails at once if the server died (exit 255 stops wait_for), so a bad start is not waited on for minutes.
mlflow_up() {
    alive "$1" || return 255
    curl -sf "$2/health"
}

mlflow_auth_ok() { curl -sf -u "admin:$1" "$2/api/2.0/mlflow/users/get?username=admin" >/dev/null; }

start_mlflow() {
    local url=http://127.0.0.1:$MLFLOW_PORT pidfile=$SERVICES_DIR/mlflow.pid db admin_password
    db=postgresql+psycopg2://mlflow@127.0.0.1:$PG_PORT # SQLAlchemy 2.1 picks psycopg 3 for a bare postgresql://
    admin_password=$(secret mlflow-admin)
    [[ -x $VENV/bin/mlflow ]] || die "no mlflow in $VENV (set VENV to the project's virtual environment)"
    "$VENV/bin/python" -c "import psycopg2" 2>/dev/null || die "psycopg2 is missing in $VENV: pip install psycopg2-binary"
    # The basic-auth app reads its settings from an ini file; its users live in their own database.
    # A password check costs about a second of CPU (PBKDF2): checks are cached for 10 minutes.
    if printf '%s\n' "[mlflow]" "default_permission = READ" "database_uri = $db/mlflow_auth" "admin_username = admin" \
        "auth_cache_ttl_seconds = 600" | write_if_changed "$SECRETS/basic_auth.ini"; then
        stop_pidfile "$pidfile" -
    fi
    if ! alive "$pidfile"; then
        mkdir -p "$SERVICES_DIR/mlflow-artifacts"
        # No job execution: it starts six huey worker processes for GenAI features the tests never use.
        PGPASSFILE=$SECRETS/pgpass MLFLOW_AUTH_CONFIG_PATH=$SECRETS/basic_auth.ini \
            MLFLOW_AUTH_ADMIN_PASSWORD=$admin_password MLFLOW_FLASK_SERVER_SECRET_KEY=$(secret mlflow-flask-key) \
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
            setsid "$VENV/bin/mlflow" server --app-name basic-auth --host 127.0.0.1 --port "$MLFLOW_PORT" \
            --workers 1 --backend-store-uri "$db/mlflow" --serve-artifacts \
            --artifacts-destination "$SERVICES_DIR/mlflow-artifacts" >>"$LOGS/mlflow.log" 2>&1 </dev/null &
        echo $! >"$pidfile"
    fi
    # The first start creates MLflow's tables in PostgreSQL: a minute or more on a busy machine.
    wait_for 300 mlflow_up "$pidfile" "$url" || die "mlflow server does not answer on $url; see $LOGS/mlflow.log"
    mlflow_auth_ok "$admin_password" "$url" ||
        die "mlflow server on $url refuses the admin password in $SECRETS/mlflow-admin (database mlflow_auth holds another: drop it and rerun)"
    say mlflow "running (pid $(cat "$pidfile")) on $url, basic auth, artifacts in $SERVICES_DIR/mlflow-artifacts"
}

# Every service port must listen on 127.0.0.1 and nowhere else.
check_loopback_only() {
    local port addresses
    for port in 6817 6818 "$PG_PORT" "$MLFLOW_PORT"; do
        addresses=$(ss -Hltn "sport = :$port" | awk '{print $4}' | sort -u | paste -sd' ')
        [[ $addresses == "127.0.0.1:$port" ]] || die "port $port listens on '$addresses', not on 127.0.0.1:$port only"
    done
}

write_env_file() {
    printf '%s\n' "# Written by .ci/services.sh: what the tests marked slurm and server need." \
        "FREEZE_SWEEP_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT" \
        "FREEZE_SWEEP_TRACKING_USERNAME=admin" \
        "FREEZE_SWEEP_TRACKING_PASSWORD=$(secret mlflow-admin)" \
        "FREEZE_SWEEP_SLURM_PARTITION=$SLURM_PARTITION" >"$ENV_FILE.tmp"
    chmod 600 "$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
    echo "env file:   $ENV_FILE (logs in $LOGS)"
}

main() {
    [[ $(id -u) == 0 ]] || die "run as root (it installs Debian packages and starts daemons)"
    mkdir -p "$LOGS" "$SECRETS"
    chmod 700 "$SECRETS"
    install_packages
    start_munge
    start_slurm
    start_postgres
    start_mlflow
    check_loopback_only
    write_env_file
}

main "$@"
