#!/usr/bin/env bash
# directory.sh - the directory of encryption certificates: the broker lists what its config names
# (encryption_cert, reloaded on SIGHUP); the node picks the newest valid one under its own CA and
# refuses what a broker substitutes (`ihala directory AGENCY`).
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
BROKER=$IHALA_BUILD/ihala-broker
P=$IHALA_PKI

plan 34

# json KEY: a string value of the last run's JSON line.
json() { jq -r ".$1" "$OUT"; }
# serial CERT / fp CERT: as `ihala directory` prints them (lowercase hex, no colons).
serial() { openssl x509 -in "$1" -noout -serial | cut -d= -f2 | tr 'A-F' 'a-f'; }
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f'; }

# The certificates, beside the config: relative paths resolve against its directory.
D=$T/b
port=$(free_port)
write_broker_conf "$D" "$port"
mkdir -p "$D/certs"
for f in moh-enc moh-enc-old moh-enc-expired moh-enc-sig moh-enc-revoked foreign-enc hi-enc dma-enc; do
	cp "$P/$f.crt" "$D/certs/"
done
cp "$P/moh-enc.key" "$D/certs/moh-enc.key"
printf 'not a certificate\n' >"$D/certs/junk.crt"
# set_enc AGENCY VALUE...: AGENCY's encryption_cert line (none when no VALUE) in broker.conf.
set_enc() {
	local a=$1
	shift
	sed -i "/^encryption_cert = .* ; $a\$/d" "$D/broker.conf"
	if [ $# -gt 0 ]; then
		sed -i "/^\[agency\.$a\]\$/a encryption_cert = $* ; $a" "$D/broker.conf"
	fi
}
set_enc moh certs/moh-enc-old.crt certs/moh-enc.crt
set_enc hi certs/hi-enc.crt
set_enc molsa # none listed
set_enc dma
DMA=$(write_client_conf "$T" dma "$port")
echo "crl_file = $P/ca.crl" >>"$DMA"

# --- the broker refuses at start a file that is not a certificate ------------------------------
cp "$D/broker.conf" "$D/good.conf"
set_enc hi certs/moh-enc.key
"$BROKER" -n -c "$D/broker.conf" >"$T/n.out" 2>&1
RC=$?
check "-n: a private key as encryption_cert: exit 1, FILE:LINE names the file and what it holds" \
	bash -c "[ $RC -eq 1 ] && grep -qE \"broker.conf:[0-9]+: '.*certs/moh-enc.key' \\(encryption certificate of agency 'hi'\\) holds a PEM 'PRIVATE KEY', not a certificate\" '$T/n.out'" \
	|| show "$T/n.out"
set_enc hi certs/junk.crt
# (under timeout: a broker that wrongly starts must not hang the test)
timeout 10 "$BROKER" -d -c "$D/broker.conf" >"$T/start.out" 2>&1
RC=$?
check "start: a text file as encryption_cert: the broker does not start (exit 1)" [ "$RC" -eq 1 ]
check "start: ... and says the file is not a PEM certificate" \
	grep -qF "certs/junk.crt' (encryption certificate of agency 'hi') is not a PEM certificate" \
	"$T/start.out"
set_enc hi certs/absent.crt
"$BROKER" -n -c "$D/broker.conf" >"$T/n2.out" 2>&1
check "-n: a missing encryption_cert file is named" \
	grep -qF "cannot read encryption certificate '$D/certs/absent.crt' of agency 'hi'" "$T/n2.out"
cp "$D/good.conf" "$D/broker.conf"

# --- rotation: the newest valid one ------------------------------------------------------------
check "broker starts with encryption certificates for moh and hi" start_broker "$D"
run newest "$DMA" directory moh
check "rotation (old, new): exit 0" expect 0
check "rotation (old, new): the newest is chosen (serial of moh-enc)" \
	[ "$(json serial)" = "$(serial "$P/moh-enc.crt")" ]
check "rotation: sha256 is the certificate's fingerprint" [ "$(json sha256)" = "$(fp "$P/moh-enc.crt")" ]
check "rotation: subject names moh, both offered" \
	bash -c "jq -e '(.subject | test(\"CN=moh\")) and .offered == 2 and .agency == \"moh\"' '$OUT' >/dev/null"
check "rotation: validity as the certificate's" \
	[ "$(json notAfter)" = "$(date -u -d "$(openssl x509 -in "$P/moh-enc.crt" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)" ]
# On a terminal: one field a line, for people.
script -qec "$(printf '%q ' "$IHALA" --config "$DMA" directory moh)" /dev/null </dev/null \
	>"$T/tty.out" 2>"$T/tty.err"
check "on a terminal: for people (subject, serial, valid, sha256 lines), no JSON" \
	bash -c "grep -q '^subject: *.*CN=moh' '$T/tty.out' && grep -q '^serial: *$(serial "$P/moh-enc.crt")' '$T/tty.out' &&
		grep -q '^valid: ' '$T/tty.out' && grep -q '^sha256: *$(fp "$P/moh-enc.crt")' '$T/tty.out' && ! grep -q '{' '$T/tty.out'" \
	|| show "$T/tty.out"

reloads() { grep -c 'reload done' "$D/broker.log"; }
# reload: SIGHUP, and wait for the reload to be done.
reload() {
	local n
	n=$(reloads)
	kill -HUP "$BROKER_PID"
	wait_for 5 eval '[ "$(reloads)" -gt "$n" ]'
}
set_enc moh certs/moh-enc.crt certs/moh-enc-old.crt
check "reload: the directory follows the file" reload
run newest2 "$DMA" directory moh
check "rotation (new, old): still the newest, whatever the order" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/moh-enc.crt")' ]"
set_enc moh certs/moh-enc-old.crt
reload
run old "$DMA" directory moh
check "only the old one listed: it is chosen (still valid)" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/moh-enc-old.crt")' ] && [ '$(json offered)' = 1 ]"

# --- substitutions, one at a time: the node refuses, naming what is wrong ---------------------
# subst NAME CERT TEXT: moh's directory entry is CERT alone; `directory moh` exits 5 with TEXT.
subst() {
	set_enc moh "certs/$2.crt"
	reload || { diag "reload failed"; return 1; }
	run "subst-$1" "$DMA" directory moh
	exit_and_err 5 "$3" && err_has "no valid encryption certificate for agency 'moh'"
}
check "hi's certificate as moh's: refused (names agency 'hi')" \
	subst other hi-enc "certificate for 'moh' names agency 'hi' instead"
check "a foreign CA's certificate as moh's: refused (does not chain)" \
	subst foreign foreign-enc "encryption certificate for 'moh' refused: unable to get local issuer certificate"
check "an expired certificate of moh: refused (expired)" \
	subst expired moh-enc-expired "encryption certificate for 'moh' refused: certificate has expired"
check "a signing certificate of moh: refused (keyUsage)" \
	subst sig moh-enc-sig "keyUsage must be keyAgreement only"
check "refused: nothing on stdout" bash -c "! grep -q . '$OUT'"
check "a revoked certificate of moh, under the node's crl_file: refused (revoked)" \
	subst revoked moh-enc-revoked "encryption certificate for 'moh' refused: certificate revoked"
HI=$(write_client_conf "$T" hi "$port")
run nocrl "$HI" directory moh
check "... a node without crl_file cannot know: it takes it (crl_file is what refuses it)" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/moh-enc-revoked.crt")' ]"
set_enc moh certs/moh-enc.crt certs/moh-enc-revoked.crt
reload
run rev-rot "$DMA" directory moh
check "rotation past a revoked newest: the newest valid one (moh-enc)" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/moh-enc.crt")' ]"
set_enc moh certs/hi-enc.crt certs/foreign-enc.crt certs/moh-enc-expired.crt
reload
run all-bad "$DMA" directory moh
check "three substituted: each named, by its place in the list" \
	exit_and_err 5 "certificate 1: certificate for 'moh' names agency 'hi' instead; certificate 2: encryption certificate for 'moh' refused: unable to get local issuer certificate; certificate 3: encryption certificate for 'moh' refused: certificate has expired"
set_enc moh certs/moh-enc-expired.crt certs/foreign-enc.crt certs/moh-enc.crt certs/moh-enc-sig.crt
reload
run mixed "$DMA" directory moh
check "substituted beside a valid one: the valid one, the others skipped" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/moh-enc.crt")' ] && [ '$(json offered)' = 4 ]"

# --- what the directory lacks ------------------------------------------------------------------
run nosuch "$DMA" directory nosuch
check "unknown agency: exit 1, refused: NOT_FOUND naming it" \
	exit_and_err 1 "refused: NOT_FOUND: no agency 'nosuch' is configured at the broker"
run none "$DMA" directory molsa
check "an agency without encryption_cert: exit 5, says the directory lists none" \
	exit_and_err 5 "the broker's directory lists no encryption certificate for agency 'molsa'"
run badid "$DMA" directory 'MOH!'
check "an invalid agency id: exit 2 before asking" exit_and_err 2 "'MOH!' is not an agency id"
run noarg "$DMA" directory
check "no agency: exit 2" exit_and_err 2 "an AGENCY is needed"
run help "$DMA" directory --help
check "--help: exit 0, documents exit 5" bash -c "[ $RC -eq 0 ] && grep -q '^5 no certificate' '$OUT'"

# --- any authenticated agency may ask; the auditor too; hi's own ------------------------------
AUD=$(write_client_conf "$T" auditor "$port")
run aud "$AUD" directory hi
check "the auditor asks hi's: exit 0, hi-enc" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/hi-enc.crt")' ]"
run self "$HI" directory hi
check "hi asks its own: exit 0" expect 0

# --- a reload naming a non-certificate is refused; the directory in force stays -----------------
set_enc moh certs/moh-enc.crt
reload
set_enc hi certs/moh-enc.key
n=$(grep -c 'reload refused' "$D/broker.log")
kill -HUP "$BROKER_PID"
check "reload with a private key as encryption_cert: refused" \
	wait_for 5 eval '[ "$(grep -c "reload refused" "$D/broker.log")" -gt "$n" ]'
check "... the broker log names the file" grep -qF "certs/moh-enc.key' (encryption certificate of agency 'hi') holds a PEM 'PRIVATE KEY'" "$D/broker.log"
run after "$DMA" directory hi
check "... and hi's certificate in force is still served" \
	bash -c "[ $RC -eq 0 ] && [ '$(json serial)' = '$(serial "$P/hi-enc.crt")' ]"

stop_broker
