#!/usr/bin/env bash
# hardening.sh - the broker under conditions an attacker or a slow operator brings about: more
# descriptors than select() can watch, core dumps, a CRL about to expire.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
plan 2

port=$(free_port)
mport=$(free_port)
while [ "$mport" = "$port" ]; do mport=$(free_port); done
# Raw TCP connections that never send a ZeroMQ greeting stay open for handshake_timeout.
write_broker_conf "$T" "$port" "
[limits]
handshake_timeout = 60s"
sed -i "/^\[broker\]/a metrics_listen = tcp://127.0.0.1:$mport" "$T/broker.conf"

# http PATH OUT: one HTTP/1.0 GET to the metrics endpoint over bash's /dev/tcp.
http() {
	local path=$1 out=$2 fd
	exec {fd}<>"/dev/tcp/127.0.0.1/$mport" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&"$fd"
	timeout 5 tr -d '\r' <&"$fd" >"$out"
	exec {fd}<&-
}
scrape() { http /metrics "$1" && head -n 1 "$1" | grep -qE '^HTTP/1\.[01] 200'; }

# --- metrics past FD_SETSIZE ---------------------------------------------------------------
# select() cannot watch a descriptor of 1024 or more: once the broker holds that many (a
# thousand agencies' sessions, or a flood of connections), the metrics endpoint used to drop
# every scrape. The broker gets room for 4096 descriptors, and 1100 raw connections fill them.
nfd_target=1100
if ! ulimit -Sn 4096 2>/dev/null; then
	echo "Bail out! cannot raise RLIMIT_NOFILE to 4096 (hard limit $(ulimit -Hn))"
	exit 1
fi
start_broker "$T" || { echo "Bail out! the broker does not start"; exit 1; }
conns=()
for _ in $(seq 1 "$nfd_target"); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$port" || break
	conns+=("$fd")
done
wait_for 10 test "$(ls "/proc/$BROKER_PID/fd" | wc -l)" -gt 1100
nfd=$(ls "/proc/$BROKER_PID/fd" | wc -l)
diag "the broker holds $nfd descriptors (${#conns[@]} connections opened)"
check "the broker holds more than FD_SETSIZE (1024) descriptors ($nfd)" test "$nfd" -gt 1100
if scrape "$T/m-fds"; then
	ok "GET /metrics still answers 200 with $nfd descriptors open"
else
	not_ok "GET /metrics still answers 200 with $nfd descriptors open"
	show "$T/m-fds"
	grep -i metrics "$T/broker.log" | tail -n 5 | sed 's/^/#   /'
fi
for fd in "${conns[@]}"; do
	exec {fd}<&-
done
stop_broker
