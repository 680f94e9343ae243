#!/usr/bin/env bash
# A local leafnet swarm on loopback, for trying the node and the CLI by hand.
#
#   scripts/swarm.sh start N     start N nodes (node0 is everyone's bootstrap), wait until
#                                every node is connected and has a non-empty routing table, then
#                                publish each node's profile (name nodeK)
#   scripts/swarm.sh status      one line per node: pid, peer id, connected peers, routing table
#   scripts/swarm.sh accounts    one line per node: index and leaf account id
#   scripts/swarm.sh restart K   stop node K and start it again with the same data dir
#   scripts/swarm.sh stop        stop every node of the swarm (only the PIDs this script wrote)
#
# Leaf payments work out of the box: `start N` creates every node's account key first
# (`leafnet account id`) and writes all N account ids as the `[leaf] genesis` of every node's
# leafnet.toml (with `certifications_needed = 2`), so the swarm is one local leaf network whose
# accounts are all members; each node publishes a profile, which is how payers find payees:
#   leafnet --data-dir .swarm/node0 pay <node1's account id> 5 --memo coffee
#
# Environment:
#   LEAFNET_SWARM_DIR       swarm directory (default: <repo>/.swarm); node K is <dir>/nodeK
#   LEAFNET_SWARM_PORT      base p2p port (default 17800): node K listens on TCP and UDP/QUIC
#                           base+2K on 127.0.0.1
#   LEAFNET_SWARM_API_PORT  base control API port (default 18800): node K uses 127.0.0.1:base+K
#   LEAFNET_SWARM_TIMEOUT   seconds to wait for the nodes to be ready (default 120)
#   LEAFNET_BIN             the leafnet binary (default: target/release/leafnet, built with
#                           `cargo build --release -p leafnet-node` when missing or older than
#                           the sources)
#
# Each node's settings are in <dir>/nodeK/leafnet.toml, so
# `leafnet --data-dir <dir>/nodeK node run` runs the very same node by hand. The script adds
# node.log (the node's output), node.pid and peer_id (last seen peer id) to each data dir,
# and swarm.size to the swarm directory.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF=${BASH_SOURCE[0]}

# The node reads LEAFNET_* variables as flags (network, listen, bootstrap, api, ...). Inherited
# ones would end up in every node's leafnet.toml and command line, so drop them; keep ours.
for v in $(compgen -e); do
    case $v in
        LEAFNET_SWARM_* | LEAFNET_BIN) ;;
        LEAFNET_*) unset "$v" ;;
    esac
done

SWARM_DIR=${LEAFNET_SWARM_DIR:-$ROOT/.swarm}
P2P_BASE=${LEAFNET_SWARM_PORT:-17800}
API_BASE=${LEAFNET_SWARM_API_PORT:-18800}
TIMEOUT=${LEAFNET_SWARM_TIMEOUT:-120}
BIN=${LEAFNET_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/leafnet}
STOP_WAIT=10
# [leaf] certifications_needed of the swarm's network (every account is a genesis member).
LEAF_K=2
# The [leaf] genesis array of the swarm (TOML), set by cmd_start before any config is written.
GENESIS_TOML=""

die() {
    printf 'swarm: %s\n' "$*" >&2
    exit 1
}

say() {
    printf '%s\n' "$*" >&2
}

usage() {
    cat >&2 <<EOF
usage: $SELF start N | status | accounts | restart K | stop

  start N     start N nodes on 127.0.0.1 (network "local"), wait until all are connected and
              publish their profiles; their leaf accounts are the network's genesis members
  status      one line per node: index, pid, alive/dead, peer id, connected peers, routing table
  accounts    one line per node: index and leaf account id (no node needs to run)
  restart K   stop node K (SIGTERM, SIGKILL after ${STOP_WAIT} s) and start it again
  stop        stop all nodes of the swarm

environment: LEAFNET_SWARM_DIR (default $ROOT/.swarm), LEAFNET_SWARM_PORT (17800),
             LEAFNET_SWARM_API_PORT (18800), LEAFNET_SWARM_TIMEOUT (120 s), LEAFNET_BIN
EOF
    exit 2
}

is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

for v in P2P_BASE API_BASE TIMEOUT; do
    is_uint "${!v}" || die "$v must be a number, not '${!v}'"
done

# A path as the user would type it from the current directory.
show() {
    case $1 in
        "$PWD"/*) printf '%s' "${1#"$PWD"/}" ;;
        *) printf '%s' "$1" ;;
    esac
}

# The swarm directory as an absolute path (nodes are started with absolute data dirs, so the
# pid check against /proc/PID/cmdline does not depend on the current directory).
abs_swarm_dir() {
    case $SWARM_DIR in
        /*) printf '%s' "$SWARM_DIR" ;;
        *) printf '%s/%s' "$PWD" "${SWARM_DIR#./}" ;;
    esac
}
SWARM=$(abs_swarm_dir)

node_dir() { printf '%s/node%s' "$SWARM" "$1"; }
p2p_port() { printf '%s' $((P2P_BASE + 2 * $1)); }
api_port() { printf '%s' $((API_BASE + $1)); }

# The indices of the nodes that exist in the swarm directory, in order.
node_indices() {
    local d
    for d in "$SWARM"/node*; do
        [[ -d $d ]] || continue
        d=${d##*/node}
        is_uint "$d" && printf '%s\n' "$d"
    done | sort -n
}

# N of the last `start N` (0 if unknown).
swarm_size() {
    local n=0
    [[ -f $SWARM/swarm.size ]] && n=$(<"$SWARM/swarm.size")
    is_uint "$n" || n=0
    printf '%s' "$n"
}

# True when PID is a live leafnet process running the node of data dir DIR.
is_our_node() {
    local pid=$1 dir=$2 i
    local -a argv=()
    is_uint "$pid" || return 1
    { mapfile -d '' -t argv <"/proc/$pid/cmdline"; } 2>/dev/null || return 1
    # A zombie has an empty command line.
    ((${#argv[@]} > 0)) || return 1
    [[ ${argv[0]##*/} == leafnet* || ${argv[0]##*/} == "${BIN##*/}" ]] || return 1
    for ((i = 1; i < ${#argv[@]} - 1; i++)); do
        if [[ ${argv[i]} == --data-dir && ${argv[i + 1]} == "$dir" ]]; then
            return 0
        fi
    done
    return 1
}

# The PID of node K if it is running (from its pid file), else fails.
running_pid() {
    local dir=$SWARM/node$1 pid
    [[ -f $dir/node.pid ]] || return 1
    pid=$(<"$dir/node.pid")
    is_our_node "$pid" "$dir" || return 1
    printf '%s' "$pid"
}

# Builds the release binary when it is missing or older than the sources of leafnet-node.
ensure_binary() {
    if [[ -n ${LEAFNET_BIN:-} ]]; then
        [[ -x $BIN ]] || die "LEAFNET_BIN=$BIN is not an executable file"
        return 0
    fi
    local newer=""
    if [[ -x $BIN ]]; then
        newer=$(find "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" "$ROOT/node" "$ROOT/config" \
            "$ROOT/storage" "$ROOT/protocols" -newer "$BIN" \
            \( -name '*.rs' -o -name Cargo.toml -o -name Cargo.lock \) -print -quit \
            2>/dev/null || true)
        [[ -z $newer ]] && return 0
        say "swarm: $(show "$newer") is newer than $(show "$BIN"); running cargo build"
    else
        say "swarm: $(show "$BIN") is missing; building"
    fi
    cargo build --release -p leafnet-node --manifest-path "$ROOT/Cargo.toml" >&2 ||
        die "cargo build failed"
    [[ -x $BIN ]] || die "cargo build did not produce $BIN"
}

# Starts node K in the background (its own session, so Ctrl-C on this script does not reach
# it). The second argument is "new" (truncate node.log) or "again" (append to it).
spawn_node() {
    local k=$1 mode=$2 dir
    dir=$(node_dir "$k")
    # A node killed with SIGKILL leaves api.addr behind; it is rewritten on start.
    rm -f "$dir/api.addr"
    [[ -f $dir/node.key ]] || rm -f "$dir/peer_id"
    if [[ $mode == new ]]; then
        : >"$dir/node.log"
    else
        printf '\n==== swarm.sh: restarting at %s ====\n' "$(date '+%F %T')" >>"$dir/node.log"
    fi
    setsid nohup "$BIN" --data-dir "$dir" node run </dev/null >>"$dir/node.log" 2>&1 &
    local pid=$! i
    printf '%s\n' "$pid" >"$dir/node.pid"
    # Until setsid and nohup have exec'd the node, /proc/PID/cmdline is not yet leafnet's.
    for ((i = 0; i < 200; i++)); do
        is_our_node "$pid" "$dir" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.01
    done
}

# Globals set by query_node: Q_STATE (text for humans), Q_ID, Q_CONN, Q_RT.
Q_STATE="" Q_ID="" Q_CONN="" Q_RT=""

# Asks node K for its status. Fails (with Q_STATE set) when it is not running or not answering.
query_node() {
    local k=$1 dir=$SWARM/node$1 json
    Q_ID="" Q_CONN="" Q_RT=""
    if ! running_pid "$k" >/dev/null; then
        Q_STATE=dead
        return 1
    fi
    if ! json=$("$BIN" --data-dir "$dir" --json status 2>/dev/null); then
        Q_STATE="running, API not answering"
        return 1
    fi
    # Fields of the JSON object; these three names occur once each (bash only, no jq).
    [[ $json =~ \"peer_id\":[[:space:]]*\"([^\"]+)\" ]] && Q_ID=${BASH_REMATCH[1]}
    [[ $json =~ \"connected_peers\":[[:space:]]*([0-9]+) ]] && Q_CONN=${BASH_REMATCH[1]}
    [[ $json =~ \"routing_table_size\":[[:space:]]*([0-9]+) ]] && Q_RT=${BASH_REMATCH[1]}
    if [[ -z $Q_ID || -z $Q_CONN || -z $Q_RT ]]; then
        Q_STATE="running, unexpected status output"
        return 1
    fi
    if [[ ! -f $dir/peer_id || $(<"$dir/peer_id") != "$Q_ID" ]]; then
        printf '%s\n' "$Q_ID" >"$dir/peer_id"
    fi
    Q_STATE="connected peers $Q_CONN, routing table $Q_RT"
}

# Ready: connected to at least one peer with a non-empty routing table. A swarm of one node has
# nobody to connect to, so there the API answering is enough.
SOLO=0
node_ready() {
    query_node "$1" || return 1
    ((SOLO)) && return 0
    ((Q_CONN >= 1 && Q_RT >= 1))
}

# The last lines of node K's log, indented.
log_tail() {
    local dir
    dir=$(node_dir "$1")
    [[ -f $dir/node.log ]] || return 0
    tail -n "${2:-3}" "$dir/node.log" | sed 's/^/        /' >&2
}

stop_hint() {
    local prefix=""
    [[ -n ${LEAFNET_SWARM_DIR:-} ]] && prefix="LEAFNET_SWARM_DIR=$LEAFNET_SWARM_DIR "
    printf '%s%s stop' "$prefix" "$SELF"
}

# Polls the given nodes about once a second until all are ready. On timeout, or as soon as one
# of them has died, lists the nodes that are not ready and fails.
wait_ready() {
    local total=$# start=$SECONDS last="" last_t=$SECONDS line k dead
    local -a pending=("$@") still
    local tty=0
    [[ -t 2 ]] && tty=1
    while :; do
        still=()
        dead=0
        for k in "${pending[@]}"; do
            if ! node_ready "$k"; then
                still+=("$k")
                [[ $Q_STATE == dead ]] && dead=1
            fi
        done
        pending=("${still[@]}")
        line="ready $((total - ${#pending[@]}))/$total ($((SECONDS - start)) s)"
        # On a terminal, one line updated in place; else a line when the count changes, or
        # every 10 s.
        if ((tty)); then
            printf '\r%s ' "$line" >&2
        elif [[ ${line% (*} != "$last" ]] || ((SECONDS - last_t >= 10)); then
            say "$line"
            last=${line% (*} last_t=$SECONDS
        fi
        ((${#pending[@]} == 0)) && break
        if ((dead || SECONDS - start >= TIMEOUT)); then
            ((tty)) && printf '\n' >&2
            if ((dead)); then
                say "swarm: a node died; not ready after $((SECONDS - start)) s:"
            else
                say "swarm: timed out after ${TIMEOUT} s (LEAFNET_SWARM_TIMEOUT); not ready:"
            fi
            for k in "${pending[@]}"; do
                node_ready "$k" && continue
                say "  node$k: $Q_STATE   (log: $(show "$(node_dir "$k")/node.log"))"
                [[ $Q_STATE == dead ]] && log_tail "$k"
            done
            say "The nodes are left running so you can look; stop them with: $(stop_hint)"
            return 1
        fi
        # Nodes usually answer within a second: poll fast at first, then every second.
        if ((SECONDS - start < 3)); then sleep 0.25; else sleep 1; fi
    done
    ((tty)) && printf '\n' >&2
    return 0
}

# Node K's leaf account id (64 hex), from its account key, which is created when missing (the
# node would create it on its first run; the genesis list needs it before).
account_id() {
    local dir id
    dir=$(node_dir "$1")
    mkdir -p "$dir"
    id=$("$BIN" --data-dir "$dir" account id) || die "cannot read or create $(show "$dir")/account.key"
    [[ $id =~ ^[0-9a-f]{64}$ ]] || die "'$BIN account id' printed '$id', not an account id"
    printf '%s' "$id"
}

# Sets the [leaf] genesis (GENESIS_TOML) and certifications_needed in the leafnet.toml of data
# dir DIR, keeping the section's other fields (a file without [leaf] gets one at the end).
set_leaf() {
    local file=$1/leafnet.toml
    awk -v genesis="$GENESIS_TOML" -v k="$LEAF_K" '
        function ours() { print "certifications_needed = " k; print "genesis = " genesis; done = 1 }
        /^[[:space:]]*\[/ { sect = $0; gsub(/[[:space:]]/, "", sect) }
        sect == "[leaf]" && /^[[:space:]]*(genesis|certifications_needed)[[:space:]]*=/ { next }
        { print }
        sect == "[leaf]" && !done && /^[[:space:]]*\[/ { ours() }
        END { if (!done) { print ""; print "[leaf]"; ours() } }
    ' "$file" >"$file.tmp" || die "cannot write $(show "$file").tmp"
    mv "$file.tmp" "$file" || die "cannot write $(show "$file")"
}

# Writes node K's leafnet.toml; extra arguments are more `config init` flags.
write_config() {
    local k=$1 dir port
    shift
    dir=$(node_dir "$k")
    port=$(p2p_port "$k")
    mkdir -p "$dir"
    "$BIN" --data-dir "$dir" config init --force \
        --network local --local true \
        --transport tcp,quic \
        --listen "/ip4/127.0.0.1/tcp/$port,/ip4/127.0.0.1/udp/$port/quic-v1" \
        --api "127.0.0.1:$(api_port "$k")" \
        "$@" >/dev/null ||
        die "cannot write $(show "$dir")/leafnet.toml"
    [[ -n $GENESIS_TOML ]] && set_leaf "$dir"
    return 0
}

# The `config init` flags (one a line) that make node K with peer id ID a bootstrap peer: its TCP
# address and, as well, its QUIC address. The node's transport stack cannot dial TCP while QUIC
# is enabled (each transport is wrapped in its own DNS layer, and libp2p-dns accepts every
# address, so `or_transport` never falls through from QUIC to TCP); the QUIC address keeps the
# swarm working until that is fixed, and costs one extra connection per node once it is.
bootstrap_flags() {
    local port
    port=$(p2p_port "$1")
    printf '%s\n' --bootstrap "/ip4/127.0.0.1/tcp/$port/p2p/$2" \
        --bootstrap "/ip4/127.0.0.1/udp/$port/quic-v1/p2p/$2"
}

cmd_start() {
    local n=${1:-}
    if ! is_uint "$n" || ((n < 1)); then
        usage
    fi
    local last_p2p=$((P2P_BASE + 2 * (n - 1))) last_api=$((API_BASE + n - 1)) k pid
    ((P2P_BASE >= 1 && last_p2p <= 65535 && API_BASE >= 1 && last_api <= 65535)) ||
        die "ports out of range: p2p $P2P_BASE..$last_p2p, API $API_BASE..$last_api"
    if ((API_BASE <= last_p2p && P2P_BASE <= last_api)); then
        die "p2p ports $P2P_BASE..$last_p2p overlap API ports $API_BASE..$last_api"
    fi
    if [[ -d $SWARM ]]; then
        local -a live=()
        while read -r k; do
            pid=$(running_pid "$k") && live+=("node$k (pid $pid)")
        done < <(node_indices)
        if ((${#live[@]})); then
            die "$(show "$SWARM") already has running nodes: ${live[*]:0:5}$( ((${#live[@]} > 5)) && printf ' ...'); stop them first: $(stop_hint)"
        fi
    fi
    ensure_binary
    mkdir -p "$SWARM"
    # The size of the swarm: node dirs of an earlier, larger swarm stay but are not listed.
    printf '%s\n' "$n" >"$SWARM/swarm.size"
    local t0=$SECONDS
    ((n == 1)) && SOLO=1

    # Every node's account key first: all of them are the genesis members of the swarm's leaf
    # network, written into every leafnet.toml.
    local -a ids=()
    for ((k = 0; k < n; k++)); do
        ids+=("\"$(account_id "$k")\"")
    done
    GENESIS_TOML="[$(IFS=,; printf '%s' "${ids[*]}" | sed 's/,/, /g')]"

    say "swarm: starting node0 (bootstrap) in $(show "$SWARM")"
    write_config 0
    spawn_node 0 new
    # node0 must answer before the others can be given its peer id.
    local start=$SECONDS
    until query_node 0; do
        if [[ $Q_STATE == dead ]]; then
            say "swarm: node0 exited; the end of $(show "$(node_dir 0)/node.log"):"
            log_tail 0 10
            exit 1
        fi
        if ((SECONDS - start >= TIMEOUT)); then
            say "swarm: node0's API does not answer after ${TIMEOUT} s; see $(show "$(node_dir 0)/node.log")"
            say "stop it with: $(stop_hint)"
            exit 1
        fi
        sleep 0.2
    done
    local boot_id=$Q_ID
    local -a boot=()
    mapfile -t boot < <(bootstrap_flags 0 "$boot_id")
    say "swarm: node0 is /ip4/127.0.0.1/tcp/$(p2p_port 0)/p2p/$boot_id"

    if ((n > 1)); then
        say "swarm: starting node1$( ((n > 2)) && printf "..node%s" $((n - 1)))"
        # Configs first (quick while only node0 runs), then the nodes, without waiting on each.
        for ((k = 1; k < n; k++)); do
            write_config "$k" "${boot[@]}"
        done
        for ((k = 1; k < n; k++)); do
            spawn_node "$k" new
        done
    fi
    local -a all=()
    for ((k = 0; k < n; k++)); do all+=("$k"); done
    wait_ready "${all[@]}" || exit 1

    # node0 has no bootstrap of its own: once restarted it would wait for someone to dial it.
    # Give it node1 for its next run (the running node0 does not read the file again).
    if ((n > 1)) && [[ -s $(node_dir 1)/peer_id ]]; then
        mapfile -t boot < <(bootstrap_flags 1 "$(<"$(node_dir 1)/peer_id")")
        write_config 0 "${boot[@]}"
    fi

    # A summary over every node (they were ready, but say how well connected).
    local min_c="" max_c=0 min_rt="" max_rt=0
    for ((k = 0; k < n; k++)); do
        query_node "$k" || continue
        ((Q_CONN > max_c)) && max_c=$Q_CONN
        ((Q_RT > max_rt)) && max_rt=$Q_RT
        [[ -z $min_c ]] || ((Q_CONN < min_c)) && min_c=$Q_CONN
        [[ -z $min_rt ]] || ((Q_RT < min_rt)) && min_rt=$Q_RT
    done
    say "swarm: $n node(s) ready in $((SECONDS - t0)) s; connected peers ${min_c:-?}..$max_c, routing table ${min_rt:-?}..$max_rt"

    publish_profiles "$n" || exit 1

    print_usage "$n"
}

# Publishes the profile of nodes 0..N-1 (name nodeK, service leaf), all at once; payers find a
# payee's node through its profile. A publication that fails (the DHT still settling) is retried
# a few times.
publish_profiles() {
    local n=$1 k try t0=$SECONDS
    local -a pids=() failed=()
    for ((k = 0; k < n; k++)); do
        (
            for ((try = 1; try <= 5; try++)); do
                "$BIN" --data-dir "$(node_dir "$k")" profile set --name "node$k" --service leaf \
                    >/dev/null 2>"$(node_dir "$k")/profile.err" && exit 0
                sleep 1
            done
            exit 1
        ) &
        pids+=($!)
    done
    for ((k = 0; k < n; k++)); do
        wait "${pids[k]}" || failed+=("$k")
    done
    if ((${#failed[@]})); then
        for k in "${failed[@]}"; do
            say "swarm: node$k could not publish its profile: $(tail -n 1 "$(node_dir "$k")/profile.err")"
        done
        say "The nodes are left running so you can look; stop them with: $(stop_hint)"
        return 1
    fi
    for ((k = 0; k < n; k++)); do rm -f "$(node_dir "$k")/profile.err"; done
    say "swarm: $n profile(s) published in $((SECONDS - t0)) s"
}

print_usage() {
    local n=$1 bin d0 k prefix=""
    bin=$(show "$BIN")
    d0=$(show "$SWARM")
    [[ -n ${LEAFNET_SWARM_DIR:-} ]] && prefix="LEAFNET_SWARM_DIR=$LEAFNET_SWARM_DIR "
    cat <<EOF

Node K (0..$((n - 1))) has data dir $d0/nodeK, p2p port $((P2P_BASE))+2K (tcp and udp/quic-v1),
API 127.0.0.1:$((API_BASE))+K, log $d0/nodeK/node.log. Bootstrap (node0):
  /ip4/127.0.0.1/tcp/$(p2p_port 0)/p2p/$(<"$SWARM/node0/peer_id")
Use the CLI against node K with
  $bin --data-dir $d0/nodeK status
EOF
    # A few examples, on nodes spread over the swarm.
    local -a cmds=(status peers "dht provide hello" "dht providers hello")
    local m=$((n < ${#cmds[@]} ? n : ${#cmds[@]}))
    for ((k = 0; k < m; k++)); do
        printf '  %s --data-dir %s/node%s %s\n' "$bin" "$d0" "$((m == 1 ? 0 : k * (n - 1) / (m - 1)))" "${cmds[k]}"
    done
    if ((n > 1)); then
        printf 'Pay node1 5 leaf from node0 (every node is a genesis member; see %s accounts):\n' "$SELF"
        printf '  %s --data-dir %s/node0 pay %s 5 --memo coffee\n' "$bin" "$d0" "$(account_id 1)"
    fi
    cat <<EOF
Swarm: ${prefix}$SELF status | accounts | restart K | stop
EOF
}

cmd_status() {
    [[ -d $SWARM ]] || die "no swarm in $(show "$SWARM")"
    local k dir pid state rc=0 any=0 id size
    size=$(swarm_size)
    printf '%-5s %-8s %-7s %-52s %6s %6s\n' node pid state "peer id" peers rtable
    while read -r k; do
        dir=$(node_dir "$k")
        # Unused node dirs of an earlier, larger swarm: only if something runs there.
        ((size == 0 || k < size)) || [[ -f $dir/node.pid ]] || continue
        any=1
        pid=-
        [[ -f $dir/node.pid ]] && pid=$(<"$dir/node.pid")
        if query_node "$k"; then
            printf '%-5s %-8s %-7s %-52s %6s %6s\n' "$k" "$pid" alive "$Q_ID" "$Q_CONN" "$Q_RT"
        else
            rc=1
            id=-
            [[ -s $dir/peer_id ]] && id=$(<"$dir/peer_id")
            state=dead
            [[ $Q_STATE != dead ]] && state=alive
            [[ $pid == - ]] && state=stopped
            printf '%-5s %-8s %-7s %-52s %6s %6s' "$k" "$pid" "$state" "$id" - -
            [[ $Q_STATE != dead ]] && printf '  (%s)' "$Q_STATE"
            printf '\n'
        fi
    done < <(node_indices)
    ((any)) || die "no nodes in $(show "$SWARM")"
    return "$rc"
}

# Sends SIGTERM to the given nodes, waits up to STOP_WAIT seconds, then SIGKILLs the rest, all
# by the PIDs in their pid files (checked against /proc/PID/cmdline). Removes the pid files.
stop_nodes() {
    local k dir pid left i killed=0 stopped=0
    local -a ks=() pids=()
    for k in "$@"; do
        dir=$(node_dir "$k")
        [[ -f $dir/node.pid ]] || continue
        pid=$(<"$dir/node.pid")
        if is_our_node "$pid" "$dir"; then
            kill -TERM "$pid" 2>/dev/null || true
            ks+=("$k")
            pids+=("$pid")
        else
            rm -f "$dir/node.pid"
        fi
    done
    ((${#pids[@]})) || return 0
    for ((i = 0; i < STOP_WAIT * 5; i++)); do
        left=0
        for k in "${!pids[@]}"; do
            is_our_node "${pids[k]}" "$(node_dir "${ks[k]}")" && left=1 && break
        done
        ((left)) || break
        sleep 0.2
    done
    for k in "${!pids[@]}"; do
        dir=$(node_dir "${ks[k]}")
        if is_our_node "${pids[k]}" "$dir"; then
            say "swarm: node${ks[k]} (pid ${pids[k]}) did not stop in ${STOP_WAIT} s; SIGKILL"
            kill -KILL "${pids[k]}" 2>/dev/null || true
            killed=$((killed + 1))
        else
            stopped=$((stopped + 1))
        fi
        rm -f "$dir/node.pid"
    done
    STOPPED=$stopped KILLED=$killed
}

cmd_accounts() {
    [[ -d $SWARM ]] || die "no swarm in $(show "$SWARM")"
    [[ -x $BIN ]] || die "$(show "$BIN") is missing; run '$SELF start N' or cargo build first"
    local k size any=0
    size=$(swarm_size)
    while read -r k; do
        # Unused node dirs of an earlier, larger swarm are left out, as in status.
        ((size == 0 || k < size)) || [[ -f $(node_dir "$k")/node.pid ]] || continue
        [[ -f $(node_dir "$k")/account.key ]] || continue
        any=1
        printf '%s %s\n' "$k" "$(account_id "$k")"
    done < <(node_indices)
    ((any)) || die "no accounts in $(show "$SWARM")"
}

cmd_stop() {
    [[ -d $SWARM ]] || die "no swarm in $(show "$SWARM")"
    local -a ks=()
    mapfile -t ks < <(node_indices)
    STOPPED=0 KILLED=0
    stop_nodes "${ks[@]}"
    say "swarm: stopped $STOPPED node(s)$( ((KILLED)) && printf ', killed %s' "$KILLED") in $(show "$SWARM")"
}

cmd_restart() {
    local k=${1:-}
    is_uint "$k" || usage
    local dir
    dir=$(node_dir "$k")
    [[ -f $dir/leafnet.toml ]] || die "no node$k in $(show "$SWARM") (start the swarm first)"
    [[ -x $BIN ]] || die "$(show "$BIN") is missing; run '$SELF start N' or cargo build first"
    STOPPED=0 KILLED=0
    stop_nodes "$k"
    ((STOPPED + KILLED)) && say "swarm: stopped node$k"
    [[ $(swarm_size) -eq 1 ]] && SOLO=1
    spawn_node "$k" again
    say "swarm: started node$k (pid $(<"$dir/node.pid")); waiting until it is connected"
    local t0=$SECONDS
    wait_ready "$k" || exit 1
    say "swarm: node$k ready in $((SECONDS - t0)) s: $Q_ID, $Q_STATE"
}

case ${1:-} in
    start) [[ $# -eq 2 ]] || usage; cmd_start "$2" ;;
    status) [[ $# -eq 1 ]] || usage; cmd_status ;;
    accounts) [[ $# -eq 1 ]] || usage; cmd_accounts ;;
    restart) [[ $# -eq 2 ]] || usage; cmd_restart "$2" ;;
    stop) [[ $# -eq 1 ]] || usage; cmd_stop ;;
    *) usage ;;
esac
