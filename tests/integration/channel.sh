#!/usr/bin/env bash
# channel.sh - the secure channel against a real broker: who gets in, who is refused and why,
# resets, handshake limits, restart, CRL reload, and nothing in clear on the wire.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

PROBE=$IHALA_BUILD/tests/tools/probe
TAPPROXY=$IHALA_BUILD/tests/tools/tapproxy

plan 91

for b in "$IHALA_BUILD/ihala-broker" "$PROBE" "$TAPPROXY"; do
	if [ ! -x "$b" ]; then
		echo "Bail out! $b is missing (make build/ihala-broker build/tests/tools/probe build/tests/tools/tapproxy)"
		exit 1
	fi
done

# The broker the probes talk to: EP is its endpoint, D its directory (log in $D/broker.log).
EP='' D=''

# probe_as AGENCY ARGS...: the probe with AGENCY's certificate from the dev PKI.
probe_as() {
	local who=$1
	shift
	"$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" --cert "$IHALA_PKI/$who.pem" \
		--key "$IHALA_PKI/$who.key" "$@"
}
# probe_raw ARGS...: the probe with only the CA (add --cert/--key or --no-cert yourself).
probe_raw() { "$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" "$@"; }

log_mark() { wc -l <"$D/broker.log"; }
log_since() { tail -n "+$(($1 + 1))" "$D/broker.log"; }
# log_has_since MARK ERE: a broker log line after MARK matches.
log_has_since() { log_since "$1" | grep -qE "$2"; }
# log_count_since MARK ERE
log_count_since() { log_since "$1" | grep -cE "$2"; }

# out_has OUTPUT ERE: one line of the captured output matches; shows it otherwise.
out_has() {
	if printf '%s\n' "$1" | grep -qE "$2"; then
		return 0
	fi
	diag "wanted a line matching: $2"
	printf '%s\n' "$1" | sed 's/^/#   got: /'
	return 1
}
file_has() {
	if grep -qE "$2" "$1"; then
		return 0
	fi
	diag "wanted a line matching: $2 in $1"
	show "$1"
	return 1
}

# welcome_ok CERT [AGENCY ROLE]: the client with CERT gets in now as AGENCY (default: moh).
welcome_ok() {
	local out
	out=$(probe_as "$1" welcome 2>&1) && out_has "$out" "^welcome ${2:-moh} ${3:-ministry}\$"
}

# no_welcome OUTPUT MARK: the client saw no Welcome and the broker authenticated no one.
no_welcome() {
	! printf '%s\n' "$1" | grep -q '^welcome' && ! log_has_since "$2" '\) authenticated'
}

# refused NAME CLIENT_ERE LOG_ERE PROBE-ARGS...: four checks for one refused client.
refused() {
	local name=$1 cre=$2 lre=$3 out rc mark
	shift 3
	mark=$(log_mark)
	out=$("$@" welcome 2>&1)
	rc=$?
	check "$name: the client is refused (exit 1)" [ "$rc" -eq 1 ]
	check "$name: the client is told why" out_has "$out" "^refused: .*$cre"
	check "$name: the broker logs it as a security event" \
		wait_for 3 log_has_since "$mark" "security: .*$lre"
	check "$name: no Welcome, no authenticated session" no_welcome "$out" "$mark"
}

# --- the main broker -------------------------------------------------------------------------
D=$T/main
PORT=$(free_port)
EP=tcp://127.0.0.1:$PORT
write_broker_conf "$D" "$PORT" "
[limits]
handshake_timeout = 2s
max_preauth_sessions = 1000
max_preauth_per_address = 1000"
# Its own copy of the CRL, swapped by the reload test.
cp "$IHALA_PKI/ca.crl" "$D/crl.pem"
sed -i "s|^crl_file = .*|crl_file = $D/crl.pem|" "$D/broker.conf"
check "broker starts" start_broker "$D"
MAIN_PID=$BROKER_PID

mark=$(log_mark)
out=$(probe_as moh welcome 2>&1)
check "valid agency moh: Welcome with its agency id and role" out_has "$out" '^welcome moh ministry$'
check "valid agency moh: the broker logs the authenticated session" \
	wait_for 3 log_has_since "$mark" "agency 'moh' \(ministry\) authenticated"

# --- refused certificates ---------------------------------------------------------------------
refused "foreign CA" 'unknown ca' 'TLS handshake refused: .*unable to get local issuer certificate' \
	probe_raw --cert "$IHALA_PKI/foreign.pem" --key "$IHALA_PKI/foreign.key"
refused "expired certificate" 'certificate expired' 'TLS handshake refused: .*certificate has expired' \
	probe_as expired
refused "revoked certificate" 'certificate revoked' 'TLS handshake refused: .*certificate revoked' \
	probe_as revoked
refused "no client certificate" 'certificate required' \
	'TLS handshake refused: .*peer did not return a certificate' probe_raw --no-cert
refused "CN not configured" "UNKNOWN_AGENCY: certificate name 'stranger' is not a configured agency" \
	"refused: certificate name 'stranger' is not a configured agency" probe_as stranger
refused "TLS 1.2 client" 'protocol version' 'TLS handshake refused: .*unsupported protocol' \
	probe_as moh --tls12
refused "leaf without clientAuth EKU" \
	'CERTIFICATE_REJECTED: an agency certificate must have the clientAuth extended key usage' \
	'refused: an agency certificate must have the clientAuth extended key usage' probe_as moh-noeku
refused "leaf with CA:TRUE" \
	'CERTIFICATE_REJECTED: an agency certificate must not be a CA certificate' \
	'refused: an agency certificate must not be a CA certificate' probe_as moh-ca
refused "CN and SAN naming different agencies" \
	"CERTIFICATE_REJECTED: certificate names two agencies: subject CN 'moh' and SAN ihala:agency:hi" \
	"refused: certificate names two agencies: subject CN 'moh' and SAN ihala:agency:hi" \
	probe_as moh-as-hi

# --- pinned fingerprint: a broker that pins moh to moh-alt's certificate ------------------------
FD=$T/pinned
FPORT=$(free_port)
write_broker_conf "$FD" "$FPORT"
fp=$(openssl x509 -in "$IHALA_PKI/moh-alt.pem" -outform DER | sha256sum | cut -d' ' -f1)
sed -i "/^\[agency\.moh\]\$/a fingerprint = $fp" "$FD/broker.conf"
if start_broker "$FD"; then
	PINNED_PID=$BROKER_PID
	EP=tcp://127.0.0.1:$FPORT D=$FD
	refused "wrong pinned fingerprint" \
		"FINGERPRINT_MISMATCH: certificate of 'moh' does not match the agency's pinned fingerprint" \
		"certificate of 'moh' does not match the agency's pinned fingerprint" probe_as moh
	check "pinned fingerprint: the pinned certificate (moh-alt) gets in as moh" welcome_ok moh-alt moh ministry
	kill -TERM "$PINNED_PID" 2>/dev/null
	wait "$PINNED_PID" 2>/dev/null
else
	for _ in 1 2 3 4 5; do not_ok "pinned-fingerprint broker did not start"; done
fi
EP=tcp://127.0.0.1:$PORT D=$T/main BROKER_PID=$MAIN_PID

# --- bytes that are not TLS ---------------------------------------------------------------------
out=$(probe_raw garbage 2>&1)
check "garbage from an unknown connection: answered with RESET" out_has "$out" '^reset$'
check "garbage: the broker still serves moh" welcome_ok moh

# --- half-open handshakes -----------------------------------------------------------------------
mark=$(log_mark)
bg probe_as moh halfopen 200 4 >"$T/halfopen.out" 2>&1
HALF_PID=$LAST_PID
bg probe_as moh --timeout 3500 halfhandshake >"$T/halfhs.out" 2>&1
HHS_PID=$LAST_PID
wait_for 10 grep -q '^sent 200$' "$T/halfopen.out"
out=$(probe_as moh welcome 2>&1)
check "200 half-open handshakes: a well-behaved client still gets its Welcome" \
	out_has "$out" '^welcome moh ministry$'
check "... and that was while they were open (none dropped yet)" \
	[ "$(log_count_since "$mark" 'no complete handshake within')" -eq 0 ]
wait "$HALF_PID" "$HHS_PID"
check "half-open: the broker answered each ClientHello" file_has "$T/halfopen.out" '^halfopen 200: 200 answered'
check "half-open: all 200 dropped after the handshake timeout (RESET afterwards)" \
	file_has "$T/halfopen.out" '^halfopen 200: .*, 200 reset$'
check "half-open: the broker logs each drop ('no complete handshake within 2000 ms')" \
	[ "$(log_count_since "$mark" 'security: .*no complete handshake within 2000 ms')" -ge 201 ]
check "half a ClientHello: no answer, then dropped" file_has "$T/halfhs.out" '^halfhandshake: silent, dropped$'
check "after the half-open sessions: the broker still serves moh" welcome_ok moh

# --- the pre-authentication session limit ------------------------------------------------------
LD=$T/limit
LPORT=$(free_port)
write_broker_conf "$LD" "$LPORT" "
[limits]
handshake_timeout = 3s
max_preauth_sessions = 20"
if start_broker "$LD"; then
	LIMIT_PID=$BROKER_PID
	EP=tcp://127.0.0.1:$LPORT D=$LD
	mark=$(log_mark)
	bg probe_as molsa halfopen 40 4 >"$T/limit.out" 2>&1
	HALF_PID=$LAST_PID
	wait_for 10 grep -q '^sent 40$' "$T/limit.out"
	out=$(probe_as moh --timeout 3000 welcome 2>&1)
	check "pre-auth limit 20 reached: a new handshake evicts the oldest half-open one, gets in" \
		out_has "$out" '^welcome moh ministry$'
	check "pre-auth limit: the broker logs the evictions, with their count" \
		wait_for 3 log_has_since "$mark" 'security: last [0-9]+ ms: [0-9]+ half-open handshakes evicted by newer ones'
	wait "$HALF_PID"
	check "pre-auth limit: every one of the 40 was dropped in the end (RESET afterwards)" \
		file_has "$T/limit.out" '^halfopen 40: .*, 40 reset$'
	check "pre-auth limit: once they timed out, moh gets in again" welcome_ok moh
	kill -TERM "$LIMIT_PID" 2>/dev/null
	wait "$LIMIT_PID" 2>/dev/null
else
	for _ in 1 2 3 4; do not_ok "limit broker did not start"; done
fi
EP=tcp://127.0.0.1:$PORT D=$T/main BROKER_PID=$MAIN_PID

# --- broker restart: the client reconnects by itself -------------------------------------------
# A crash (SIGKILL): the client's next TLS bytes reach a broker that does not know them: RESET.
bg probe_as moh --timeout 5000 reconnect 30 >"$T/crash.out" 2>&1
RC_PID=$LAST_PID
wait_for 10 grep -q '^welcome moh' "$T/crash.out"
kill_broker
check "restart after a crash: the broker comes back" start_broker "$D"
MAIN_PID=$BROKER_PID
wait "$RC_PID"
check "restart after a crash: stale TLS bytes are answered with RESET" file_has "$T/crash.out" '^reset$'
check "restart after a crash: the client handshakes again and gets a Welcome" \
	file_has "$T/crash.out" '^welcome again$'
check "restart after a crash: the new session answers requests" \
	file_has "$T/crash.out" '^answered after reconnect$'

# A clean stop (SIGTERM): the broker ends the sessions itself (PROTOCOL.md §3). --no-immediate:
# with ZMQ_IMMEDIATE a client's ZeroMQ drops what arrived but was not read yet when the broker's
# connection closes, a race the client would lose about half the time.
bg probe_as moh --timeout 5000 --no-immediate reconnect 30 >"$T/stop.out" 2>&1
RC_PID=$LAST_PID
wait_for 10 grep -q '^welcome moh' "$T/stop.out"
stop_broker
check "restart after SIGTERM: the broker comes back" start_broker "$D"
MAIN_PID=$BROKER_PID
wait "$RC_PID"
check "SIGTERM: the connected client was told the session ended (Error or close_notify)" \
	file_has "$T/stop.out" '^closed: (SHUTTING_DOWN|close_notify)$'
check "restart after SIGTERM: the client gets a Welcome again" file_has "$T/stop.out" '^welcome again$'
check "restart after SIGTERM: the new session answers requests" \
	file_has "$T/stop.out" '^answered after reconnect$'

# --- the real client across restarts: ihala inbox --watch as moh --------------------------------
# send_to_moh ID: dma refers a case to moh, message id ID (the probe, straight to the broker).
send_to_moh() {
	"$PROBE" --to moh --message-id "$1" --referral-id "ref-$1" make-envelope "$1" >"$T/$1.env" &&
		probe_as dma submit-file "$T/$1.env" | grep -q '^receipt ACCEPTED'
}
# inbox_got ID: the watching client printed the delivery of message ID within 20 s.
inbox_got() {
	send_to_moh "$1" && wait_for 20 grep -qF "\"$1\"" "$T/inbox.out" && return 0
	show "$T/inbox.out" "$T/inbox.err"
	return 1
}
cfg=$(write_client_conf "$T" moh "$PORT")
bg "$IHALA_BUILD/ihala" -c "$cfg" inbox --watch >"$T/inbox.out" 2>"$T/inbox.err"
INBOX_PID=$LAST_PID
check "ihala inbox --watch: receives a referral" inbox_got cli-first
kill_broker
check "ihala inbox --watch: the broker comes back after SIGKILL" start_broker "$D"
MAIN_PID=$BROKER_PID
check "ihala inbox --watch: reconnects by itself after the crash and receives" inbox_got cli-crash
stop_broker
check "ihala inbox --watch: the broker comes back after SIGTERM" start_broker "$D"
MAIN_PID=$BROKER_PID
check "ihala inbox --watch: reconnects by itself after the stop and receives" inbox_got cli-stop
check "ihala inbox --watch: still running" kill -0 "$INBOX_PID"
kill -TERM "$INBOX_PID" 2>/dev/null
wait "$INBOX_PID" 2>/dev/null

# --- SIGHUP with a CRL that now revokes hi ------------------------------------------------------
mark=$(log_mark)
bg probe_as hi --timeout 3000 hold 6 >"$T/hold-hi.out" 2>&1
HI_PID=$LAST_PID
bg probe_as moh --timeout 3000 hold 6 >"$T/hold-moh.out" 2>&1
MOH_PID=$LAST_PID
wait_for 10 grep -q '^welcome hi ngo$' "$T/hold-hi.out"
wait_for 10 grep -q '^welcome moh ministry$' "$T/hold-moh.out"
cp "$IHALA_PKI/ca-hi-revoked.crl" "$D/crl.pem"
kill -HUP "$BROKER_PID"
check "reload: hi's live session is closed with CERTIFICATE_REVOKED" \
	wait_for 5 grep -q '^closed: CERTIFICATE_REVOKED' "$T/hold-hi.out"
check "reload: the broker logs why it closed hi's session" \
	log_has_since "$mark" "security: reload: closing session .*'hi'.*revoked"
wait "$HI_PID" "$MOH_PID"
check "reload: moh's session stayed open and still answers" \
	file_has "$T/hold-moh.out" '^open: answered$'
check "reload: moh's session was not closed" bash -c "! grep -q '^closed' '$T/hold-moh.out'"
out=$(probe_as hi welcome 2>&1)
check "reload: a new handshake of hi is refused as revoked" out_has "$out" '^refused: .*certificate revoked'
check "reload: moh still gets in" welcome_ok moh

# --- a handshake that straddles the reload is judged by the CRL in force when it ends ----------
# hi welcome again (the old CRL back), then hi's handshake held after the broker's flight while
# the CRL revoking hi is installed: finishing it after the reload must not open a session.
reloads() { grep -c 'reload done' "$D/broker.log"; }
n=$(reloads)
cp "$IHALA_PKI/ca.crl" "$D/crl.pem"
kill -HUP "$BROKER_PID"
wait_for 5 eval '[ "$(reloads)" -gt "$n" ]'
check "straddle: hi gets in again under the old CRL" welcome_ok hi hi ngo
mark=$(log_mark)
rm -f "$T/straddle.go"
bg probe_as hi --timeout 5000 straddle "$T/straddle.go" >"$T/straddle.out" 2>&1
ST_PID=$LAST_PID
wait_for 5 grep -q '^held$' "$T/straddle.out"
n=$(reloads)
cp "$IHALA_PKI/ca-hi-revoked.crl" "$D/crl.pem"
kill -HUP "$BROKER_PID"
wait_for 5 eval '[ "$(reloads)" -gt "$n" ]'
touch "$T/straddle.go"
wait "$ST_PID"
check "straddle: the handshake begun before the reload is refused as revoked" \
	file_has "$T/straddle.out" '^refused: CERTIFICATE_REVOKED'
check "straddle: the broker logs it as a security event" \
	wait_for 3 log_has_since "$mark" "security: session [0-9]+: refused: .*revoked"
check "straddle: no session of hi was authenticated" \
	bash -c "! tail -n +$((mark + 1)) '$D/broker.log' | grep -q \"agency 'hi' (ngo) authenticated\""

# --- nothing in clear on the wire ---------------------------------------------------------------
PPORT=$(free_port)
CAP=$T/wire.cap
: >"$CAP"
bg "$TAPPROXY" "$PPORT" "$PORT" "$CAP" >"$T/tap.out" 2>&1
wait_for 5 grep -q '^listening$' "$T/tap.out"
MARKER=SURVIVOR-MARKER-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
"$PROBE" --to moh --message-id "wire-$MARKER" --referral-id "ref-$MARKER" make-envelope "$MARKER" \
	>"$T/envelope.bin"
check "wire: the plaintext envelope holds the marker (sanity)" grep -qaF "$MARKER" "$T/envelope.bin"
EP=tcp://127.0.0.1:$PPORT
out=$(probe_as dma submit-file "$T/envelope.bin" 2>&1)
check "wire: dma's referral through the tap proxy is ACCEPTED" out_has "$out" '^receipt ACCEPTED seq [0-9]+$'
out=$(probe_as moh --timeout 2000 hold 4 2>&1)
check "wire: moh receives it through the tap proxy" out_has "$out" '^deliver [0-9]+$'
EP=tcp://127.0.0.1:$PORT
check "wire: the capture recorded the traffic (the ClientHello's SNI 'localhost' is there)" \
	grep -qaF localhost "$CAP"
check "wire: the capture is substantial (> 4 KiB)" [ "$(stat -c %s "$CAP")" -gt 4096 ]
check "wire: the marker never appears on the wire" bash -c "! grep -qaF '$MARKER' '$CAP'"
check "wire: nor the message id" bash -c "! grep -qaF 'wire-$MARKER' '$CAP'"
check "wire: nor the broker's Welcome (its version string)" bash -c "! grep -qaF 'ihala-broker' '$CAP'"

# --- the broker survived all of it ---------------------------------------------------------------
check "the broker is still running" kill -0 "$BROKER_PID"
check "no crash or fatal error in the broker log" bash -c "! grep -qiE 'fatal|abort|sanitizer' '$D/broker.log'"
