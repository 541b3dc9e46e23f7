# tests/integration/lib.sh - shared helpers for integration tests (sourced, not run).
#
# Gives: TAP output (plan, ok, check, skip), a private temp dir, free loopback ports, broker and
# client configs over the run's dev PKI ($IHALA_PKI), starting/stopping real ihala-broker
# processes, and cleanup of every process started, whatever happens.
set -u

: "${IHALA_BUILD:?run through tests/run}"
: "${IHALA_PKI:?run through tests/run}"
: "${IHALA_ROOT:?run through tests/run}"

T=$(mktemp -d /tmp/ihala-it.XXXXXX)
_tap_n=0
_tap_failed=0
_pids=()

cleanup() {
	local p
	for p in "${_pids[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$_tap_failed" -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then
		rm -rf "$T"
	else
		echo "# kept $T"
	fi
}
trap cleanup EXIT

plan() { echo "1..$1"; }
ok() { _tap_n=$((_tap_n + 1)); echo "ok $_tap_n - $*"; }
not_ok() {
	_tap_n=$((_tap_n + 1))
	_tap_failed=$((_tap_failed + 1))
	echo "not ok $_tap_n - $*"
}
diag() { echo "# $*"; }
# check DESCRIPTION COMMAND...: one test case, passes when COMMAND succeeds.
check() {
	local d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
# Print a file's contents as TAP comments (for failures).
show() { sed 's/^/#   /' "$@" 2>/dev/null | tail -n 30; }

# run NAME CONF ARGS...: ihala --config CONF ARGS; sets RC, and OUT, ERR (files). With
# RUN_TIMEOUT (seconds) set, killed past it (web.sh: a web that wrongly starts serves until
# killed).
run() {
	local name=$1 conf=$2 limit=()
	shift 2
	OUT=$T/$name.out ERR=$T/$name.err
	[ -z "${RUN_TIMEOUT:-}" ] || limit=(timeout -k 5 "$RUN_TIMEOUT")
	"${limit[@]}" "$IHALA" --config "$conf" "$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}
# mkref FILE ID PRIORITY NAME [AGENCIES]: a valid referral from DMA to MoH, its consent
# covering AGENCIES (a JSON list; ["moh","molsa"] when not given).
mkref() {
	local agencies=${5:-'["moh","molsa"]'}
	cat >"$1" <<JSON
{"referralId":"$2","priority":"$3","services":["physical-rehabilitation"],
 "reason":"landmine survivor, below-knee amputation",
 "survivor":{"caseId":"IQ-NIN-$2","name":"$4","sex":"female","birthYear":1996,
             "governorate":"Ninewa","district":"Sinjar"},
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
            "agencies":$agencies,"dataCovered":["identity","demographics","location","needs"]}}
JSON
}
# expect CODE: the last run exited CODE (else its stderr and stdout are shown).
expect() {
	[ "$RC" -eq "$1" ] && return 0
	diag "exit $RC, wanted $1"
	show "$ERR"
	show "$OUT"
	return 1
}
# err_has TEXT / out_has TEXT: the last run's stderr / stdout holds TEXT.
err_has() { grep -qF -- "$1" "$ERR" || { diag "stderr lacks: $1"; show "$ERR"; return 1; }; }
out_has() { grep -qF -- "$1" "$OUT" || { diag "stdout lacks: $1"; show "$OUT"; return 1; }; }
# exit_and_err CODE TEXT / exit_and_out CODE TEXT: both of the above.
exit_and_err() { expect "$1" && err_has "$2"; }
exit_and_out() { expect "$1" && out_has "$2"; }

# A TCP port on 127.0.0.1 that nothing uses now, in any state, taken below the kernel's range
# of ephemeral ports (ip_local_port_range, 32768-60999 by default) so that none of the many
# client connections the tests open can grab it meanwhile.
free_port() {
	local lo p
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 12000 ] || lo=32768
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! ss -Hatn "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# write_broker_conf DIR PORT [extra ini text]: a broker config using the dev PKI. The directory
# lists each party agency's encryption certificate (a line ending "; AGENCY", which
# directory.sh's set_enc replaces), so nodes can seal to it.
write_broker_conf() {
	local d=$1 port=$2 extra=${3:-}
	mkdir -p -m 700 "$d/data"
	cat >"$d/broker.conf" <<CONF
[broker]
listen = tcp://127.0.0.1:$port
data_dir = $d/data
log_level = debug
log_origin = ihala.test/log

[tls]
ca_file = $IHALA_PKI/ca.pem
crl_file = $IHALA_PKI/ca.crl
cert_file = $IHALA_PKI/broker.pem
key_file = $IHALA_PKI/broker.key

[checkpoint]
key_file = $IHALA_PKI/checkpoint.key
every_entries = 10
every_seconds = 1s

[agency.dma]
role = dma
name = دائرة شؤون الألغام
encryption_cert = $IHALA_PKI/dma-enc.crt ; dma

[agency.moh]
role = ministry
name = وزارة الصحة
encryption_cert = $IHALA_PKI/moh-enc.crt ; moh

[agency.molsa]
role = ministry
name = وزارة العمل والشؤون الاجتماعية
encryption_cert = $IHALA_PKI/molsa-enc.crt ; molsa

[agency.hi]
role = ngo
name = Handicap International
encryption_cert = $IHALA_PKI/hi-enc.crt ; hi

[agency.auditor]
role = auditor

[agency.revoked]
role = ngo

[agency.expired]
role = ngo
$extra
CONF
}

# write_client_conf DIR AGENCY PORT [CERTNAME]: a client config for AGENCY.
write_client_conf() {
	local d=$1 agency=$2 port=$3 cert=${4:-$2}
	mkdir -p "$d/$agency"
	cat >"$d/$agency/client.conf" <<CONF
[client]
broker = tcp://127.0.0.1:$port
server_name = localhost
ca_file = $IHALA_PKI/ca.pem
cert_file = $IHALA_PKI/$cert.pem
key_file = $IHALA_PKI/$cert.key
data_dir = $d/$agency/data
agency = $agency
timeout = 5s
CONF
	# The agency's encryption key (sealed parts), when mkpki made one for it (foreign-enc is
	# moh's from the foreign CA, a test case, not agency foreign's).
	if [ "$agency" != foreign ] && [ -f "$IHALA_PKI/$agency-enc.crt" ] &&
		[ -f "$IHALA_PKI/$agency-enc.key" ]; then
		printf 'encryption_cert = %s\nencryption_key = %s\n' \
			"$IHALA_PKI/$agency-enc.crt" "$IHALA_PKI/$agency-enc.key" >>"$d/$agency/client.conf"
	fi
	echo "$d/$agency/client.conf"
}

# start_broker DIR: runs ihala-broker in the foreground on DIR/broker.conf, logging to
# DIR/broker.log, and waits until it listens. Sets BROKER_PID.
start_broker() {
	local d=$1 i before
	before=$(grep -c 'listening on' "$d/broker.log" 2>/dev/null)
	# IHALA_BROKER_WRAPPER: a command the broker runs under (make valgrind), unquoted on purpose
	${IHALA_BROKER_WRAPPER:-} "$IHALA_BUILD/ihala-broker" -d -c "$d/broker.conf" >>"$d/broker.log" 2>&1 &
	BROKER_PID=$!
	_pids+=("$BROKER_PID")
	for i in $(seq 1 $((${IHALA_START_TIMEOUT:-10} * 20))); do
		if [ "$(grep -c 'listening on' "$d/broker.log" 2>/dev/null)" -gt "${before:-0}" ]; then
			return 0
		fi
		kill -0 "$BROKER_PID" 2>/dev/null || { show "$d/broker.log"; return 1; }
		sleep 0.05
	done
	show "$d/broker.log"
	return 1
}

stop_broker() {
	kill -TERM "$BROKER_PID" 2>/dev/null
	wait "$BROKER_PID" 2>/dev/null
}

kill_broker() {
	kill -9 "$BROKER_PID" 2>/dev/null
	wait "$BROKER_PID" 2>/dev/null
}

# bg CMD...: start a background process that cleanup will kill; sets LAST_PID.
bg() {
	"$@" &
	LAST_PID=$!
	_pids+=("$LAST_PID")
}

# wait_for SECONDS COMMAND...: poll until COMMAND succeeds.
wait_for() {
	local limit=$1 i
	shift
	for i in $(seq 1 $((limit * 20))); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# stop_browser: the headless browser of web.sh and web_tls.sh, whatever happened: the process
# group $BROWSER_PID leads, its chromedriver ($T/chromedriver.pid), any process using this
# test's Chromium profile ($T/chrome-profile).
stop_browser() {
	local p cmd
	if [ -n "$BROWSER_PID" ]; then
		kill -TERM -- -"$BROWSER_PID" 2>/dev/null
		kill -KILL -- -"$BROWSER_PID" 2>/dev/null
	fi
	[ -s "$T/chromedriver.pid" ] && kill -KILL "$(cat "$T/chromedriver.pid")" 2>/dev/null
	for p in /proc/[0-9]*; do
		cmd=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
		case $cmd in
		*"$T/chrome-profile"*) kill -KILL "${p#/proc/}" 2>/dev/null ;;
		esac
	done
}
