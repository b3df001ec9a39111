#!/usr/bin/env bash
# Servers driven by their own load generators: memcached by memaslap (`memcaslap` in Debian's
# libmemcached-tools) at four set/get mixes, redis-server by redis-benchmark. Each round
# starts the server natively, then crash-resistant under `zhuque run`, and drives both the
# same way. Prints the median throughput of RUNS rounds and the time ratio
# (native throughput / zhuque throughput: above 1 means zhuque is slower).
#
#   bench/servers.sh [RUNS]        (after `cargo build --release`; needs memcached,
#                                   libmemcached-tools, redis-server, redis-tools)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
# Operations per memaslap run and requests per redis-benchmark test.
mc_ops=${MC_OPS:-300000}
redis_requests=${REDIS_REQUESTS:-200000}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
for tool in memcached memcaslap redis-server redis-benchmark redis-cli; do
    command -v "$tool" > /dev/null || {
        echo "$tool is missing: apt-get install memcached libmemcached-tools redis-server redis-tools" >&2
        exit 1
    }
done
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-servers
server_pid=
stop_server() {
    [ -n "$server_pid" ] || return 0
    kill -TERM "$server_pid" 2> /dev/null || true
    wait "$server_pid" 2> /dev/null || true
    server_pid=
}
trap 'stop_server; rm -rf "$work" "$image"' EXIT
load_start=$(loadavg)

# Starts "$@" natively (mode native) or under `zhuque run` (mode zhuque) in the background
# and waits until PORT answers.
start() {
    local mode=$1 port=$2
    shift 2
    if [ "$mode" = native ]; then
        "$@" > "$work/server.out" 2>&1 &
    else
        "$zq" run --image "$image" --fresh -- "$@" > "$work/server.out" 2>&1 &
    fi
    server_pid=$!
    local i=0
    until (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; do
        sleep 0.05
        i=$((i + 1))
        [ $i -lt 400 ] || { echo "$mode server on port $port did not start:" >&2; cat "$work/server.out" >&2; exit 1; }
    done
}

# memaslap's command mix: a proportion of sets, the rest gets (keys and values as default).
mix_config() {
    printf 'key\n64 64 1\nvalue\n1024 1024 1\ncmd\n0 %s\n1 %s\n' "$1" "$(awk -v s="$1" 'BEGIN {print 1 - s}')"
}

memcached_round() { # mode set-proportion -> operations per second
    local port=21211
    mix_config "$2" > "$work/mix.cfg"
    start "$1" "$port" memcached -u root -U 0 -l 127.0.0.1 -p "$port" -m 512 -t 2
    memcaslap -s "127.0.0.1:$port" -T 2 -c 32 -x "$mc_ops" -F "$work/mix.cfg" > "$work/mc.out" 2>&1 \
        || { echo "memaslap failed ($1):" >&2; cat "$work/mc.out" >&2; exit 1; }
    stop_server
    # The final summary line: "Run time: 3.4s Ops: 300000 TPS: 88235 Net_rate: ..."
    awk '/^Run time:/ { for (i = 1; i < NF; i++) if ($i == "TPS:") v = $(i + 1) } END { if (v == "") exit 1; print v }' "$work/mc.out" \
        || { echo "no TPS in memaslap's output ($1):" >&2; cat "$work/mc.out" >&2; exit 1; }
}

redis_round() { # mode -> lines "test<TAB>requests per second"
    local port=26379
    start "$1" "$port" redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no
    redis-benchmark -p "$port" -q -c 32 -n "$redis_requests" -r 100000 -t set,get,incr,lpush,lpop,sadd,hset,mset --csv > "$work/redis.csv" 2> "$work/redis.err" \
        || { echo "redis-benchmark failed ($1):" >&2; cat "$work/redis.err" >&2; exit 1; }
    redis-cli -p "$port" shutdown nosave > /dev/null 2>&1 || true
    wait "$server_pid" 2> /dev/null || true
    server_pid=
    # CSV: "test","rps",...
    awk -F'","' 'NR > 1 { gsub(/"/, "", $1); print $1 "\t" $2 }' "$work/redis.csv"
}

for _ in $(seq "$runs"); do
    for sets in 0.05 0.25 0.75 0.95; do
        for mode in native zhuque; do
            printf '%s\tmemcached, %s%% sets\t%s\n' "$mode" "$(awk -v s="$sets" 'BEGIN {print s * 100}')" \
                "$(memcached_round "$mode" "$sets")" >> "$work/all"
        done
    done
    for mode in native zhuque; do
        redis_round "$mode" | sed "s/^/$mode\tredis /" >> "$work/all"
    done
done

printf 'load average at the start: %s, at the end: %s\n\n' "$load_start" "$(loadavg)"
echo "| server, load (median of $runs rounds) | native ops/s | zhuque ops/s | ratio |"
echo "|---|--:|--:|--:|"
ratio_rows "$work/all" '%.0f' throughput
