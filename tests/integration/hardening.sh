#!/usr/bin/env bash
# hardening.sh - the broker under conditions an attacker or a slow operator brings about: more
# descriptors than select() can watch, core dumps, a CRL about to expire.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
plan 12

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
nfds() { find "/proc/$BROKER_PID/fd" -mindepth 1 | wc -l; }
fds_over() { [ "$(nfds)" -gt 1100 ]; }
wait_for 10 fds_over
nfd=$(nfds)
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

# --- no core dumps -------------------------------------------------------------------------
# A core file of the broker would hold survivors' data and the keys. It runs here as a user
# other than root (nobody when the test is root), so that the kernel's own reset of the
# dumpable mark on a uid change plays no part: /proc/PID/status is owned by root only when the
# process is not dumpable. The core limit starts at the hard limit, not the shell's 0.
ulimit -Sc "$(ulimit -Hc)" 2>/dev/null
D=$T/nd
mkdir -p "$D"
cp -r "$IHALA_PKI" "$D/pki"
write_broker_conf "$D" "$(free_port)"
sed -i "s|$IHALA_PKI/|$D/pki/|" "$D/broker.conf"
runas=$(id -u)
if [ "$runas" = 0 ]; then
	runas=$(id -u nobody)
	chmod 755 "$T"
	chown -R "$runas:$(id -g nobody)" "$D"
	IHALA_BROKER_WRAPPER="setpriv --reuid=$runas --regid=$(id -g nobody) --clear-groups"
	export IHALA_BROKER_WRAPPER
fi
start_broker "$D" || { echo "Bail out! the broker does not start as uid $runas"; exit 1; }
unset IHALA_BROKER_WRAPPER
owner=$(stat -c %u "/proc/$BROKER_PID/status")
diag "the broker runs as uid $(awk '/^Uid:/ {print $2}' "/proc/$BROKER_PID/status"); /proc/$BROKER_PID/status is owned by uid $owner"
check "the broker (uid $runas) is not dumpable: /proc/PID/status is root's" test "$owner" = 0
core=$(awk '/^Max core file size/ {print $5, $6}' "/proc/$BROKER_PID/limits")
diag "Max core file size (soft, hard): $core (the shell's: $(ulimit -Sc), $(ulimit -Hc))"
check "the broker's core file size limit is 0" test "${core%% *}" = 0
stop_broker
# The ihala client too: what it reads holds survivors' data in clear. It runs as nobody (or as
# the test's user) and waits for a broker that is not there, which leaves time to look.
CL=$T/cl
mkdir -p "$CL/pki"
cp "$IHALA_PKI/ca.pem" "$IHALA_PKI/dma.pem" "$IHALA_PKI/dma.key" "$CL/pki/"
cat >"$CL/client.conf" <<CONF
[client]
broker = tcp://127.0.0.1:$(free_port)
server_name = localhost
ca_file = $CL/pki/ca.pem
cert_file = $CL/pki/dma.pem
key_file = $CL/pki/dma.key
data_dir = $CL/data
agency = dma
timeout = 4s
CONF
run_client=()
if [ "$(id -u)" = 0 ]; then
	chown -R "$runas:$(id -g nobody)" "$CL"
	run_client=(setpriv "--reuid=$runas" "--regid=$(id -g nobody)" --clear-groups)
fi
"${run_client[@]}" "$IHALA_BUILD/ihala" --config "$CL/client.conf" status R-1 >"$CL/out" 2>&1 &
cpid=$!
wait_for 5 grep -q 'retrying' "$CL/out"
owner=$(stat -c %u "/proc/$cpid/status" 2>/dev/null)
wait "$cpid"
check "the ihala client (uid $runas) is not dumpable: /proc/PID/status is root's (${owner:-gone})" \
	test "${owner:-x}" = 0
check "the systemd unit sets LimitCORE=0" grep -qx 'LimitCORE=0' "$IHALA_ROOT/config/ihala-broker.service"

# --- a CRL about to expire -----------------------------------------------------------------
# Past the CRL's nextUpdate every handshake fails: its date is in the metrics, and the log
# warns within [tls] crl_warn_before (7 days by default) at start, at reload, then daily, and
# says when it has expired.
mkdir -p "$T/ca"
: >"$T/ca/index.txt"
cat >"$T/ca/ca.cnf" <<CNF
[ca]
default_ca = c
[c]
database = $T/ca/index.txt
certificate = $IHALA_PKI/ca.pem
private_key = $IHALA_PKI/ca.key
default_md = sha256
CNF
# mkcrl OUT ARGS...: an empty CRL of the test CA, its validity given by ARGS.
mkcrl() {
	local out=$1
	shift
	openssl ca -batch -config "$T/ca/ca.cnf" -gencrl "$@" -out "$out" 2>"$T/ca/err" || show "$T/ca/err"
}
# next_update CRL: its nextUpdate in Unix seconds.
next_update() { date -u -d "$(openssl crl -in "$1" -noout -nextupdate | cut -d= -f2)" +%s; }
mkcrl "$T/soon.crl" -crldays 3

C=$T/crl
mport=$(free_port)
write_broker_conf "$C" "$(free_port)"
sed -i "/^\[broker\]/a metrics_listen = tcp://127.0.0.1:$mport" "$C/broker.conf"
start_broker "$C" || { echo "Bail out! the broker does not start"; exit 1; }
scrape "$C/m0"
want=$(next_update "$IHALA_PKI/ca.crl")
check "ihala_crl_next_update_seconds is the CRL's nextUpdate ($want)" \
	grep -qx "ihala_crl_next_update_seconds $want" "$C/m0"
check "a CRL good for years: no warning" bash -c "! grep -q 'CRL.*expires' '$C/broker.log'"

sed -i "s|^crl_file = .*|crl_file = $T/soon.crl|" "$C/broker.conf"
kill -HUP "$BROKER_PID"
if wait_for 5 grep -qF "warning: CRL '$T/soon.crl' expires in 2 d 23 h" "$C/broker.log"; then
	ok "reload with a CRL good for 3 days: a warning naming it and the time left"
else
	not_ok "reload with a CRL good for 3 days: a warning naming it and the time left"
	grep -i crl "$C/broker.log" | tail -n 5 | sed 's/^/#   /'
fi
scrape "$C/m1"
want=$(next_update "$T/soon.crl")
check "... and the metric follows the reload ($want)" \
	grep -qx "ihala_crl_next_update_seconds $want" "$C/m1"
stop_broker

# At start, and at expiry: the broker keeps running, every handshake then fails, and it says so.
mkcrl "$T/now.crl" -crlsec 10
sed -i "s|^crl_file = .*|crl_file = $T/now.crl|" "$C/broker.conf"
start_broker "$C" || { echo "Bail out! the broker does not start"; exit 1; }
check "start with a CRL good for seconds: the warning" \
	grep -qE "warning: CRL '$T/now.crl' expires in [0-9]+ s" "$C/broker.log"
if wait_for 20 grep -qF "security: CRL '$T/now.crl' expired at" "$C/broker.log"; then
	ok "when it expires: a security line says every new handshake now fails"
else
	not_ok "when it expires: a security line says every new handshake now fails"
	grep -i crl "$C/broker.log" | tail -n 5 | sed 's/^/#   /'
fi
stop_broker
