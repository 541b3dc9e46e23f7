#!/usr/bin/env bash
# config.sh - ihala-broker -n: the example config passes; each kind of mistake fails with FILE:LINE.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

BROKER=$IHALA_BUILD/ihala-broker
EXAMPLE=$IHALA_ROOT/config/broker.conf.example

plan 39

# mkconf NAME: a copy of the example in $T/NAME with the dev PKI next to it as pki/.
# Prints the config path.
mkconf() {
	local d=$T/$1
	mkdir -p "$d"
	cp "$EXAMPLE" "$d/broker.conf"
	ln -sfn "$IHALA_PKI" "$d/pki"
	echo "$d/broker.conf"
}

# run_check CONF: ihala-broker -n -c CONF; sets RC, OUT, ERR (files).
run_check() {
	OUT=$T/out ERR=$T/err
	"$BROKER" -n -c "$1" >"$OUT" 2>"$ERR"
	RC=$?
}

# line_of CONF REGEX: number of the first line matching REGEX.
line_of() { grep -n -m1 -E "$2" "$1" | cut -d: -f1; }
# last_line_of CONF REGEX: number of the last line matching REGEX.
last_line_of() { grep -n -E "$2" "$1" | tail -n 1 | cut -d: -f1; }

# has_error CONF LINE MESSAGE: stderr holds exactly "CONF:LINE: MESSAGE" as a line.
has_error() {
	if grep -qxF "$1:$2: $3" "$ERR"; then
		return 0
	fi
	diag "wanted: $1:$2: $3"
	show "$ERR"
	return 1
}

# every stderr line has the FILE:LINE: form
all_file_line() { [ -s "$ERR" ] && ! grep -qvE '^[^:]+:[0-9]+: .+' "$ERR"; }

# --- the example as shipped ---------------------------------------------------
conf=$(mkconf ok)
run_check "$conf"
check "example config: exit 0" [ "$RC" -eq 0 ]
check "example config: prints 'configuration OK'" grep -qx 'configuration OK' "$OUT"
check "example config: nothing on stderr" [ ! -s "$ERR" ]

# relative paths resolve against the file's directory, whatever the cwd
(cd "$T/ok" && "$BROKER" -n -c broker.conf >"$T/out2" 2>&1)
check "relative -c path from the config dir" grep -qx 'configuration OK' "$T/out2"
(cd / && "$BROKER" -n -c "$conf" >"$T/out3" 2>&1)
check "absolute -c path from /" grep -qx 'configuration OK' "$T/out3"

# the helper config other integration tests use is valid too
write_broker_conf "$T/lib" "$(free_port)"
run_check "$T/lib/broker.conf"
check "lib.sh broker config passes -n" [ "$RC" -eq 0 ]

# --- an unknown option, with a suggestion -------------------------------------
conf=$(mkconf unknown)
sed -i 's/^\[broker\]$/[broker]\nlistn = tcp:\/\/127.0.0.1:7450/' "$conf"
run_check "$conf"
check "unknown option: exit 1" [ "$RC" -eq 1 ]
check "unknown option: FILE:LINE message with suggestion" \
	has_error "$conf" "$(line_of "$conf" '^listn')" \
	"unknown option 'listn' in [broker] (did you mean 'listen'?)"
check "unknown option: nothing on stdout" [ ! -s "$OUT" ]

# --- a number out of range ------------------------------------------------------
conf=$(mkconf range)
sed -i 's/^#max_sessions = 1024$/max_sessions = 99999999/' "$conf"
run_check "$conf"
check "out-of-range number: exit 1" [ "$RC" -eq 1 ]
check "out-of-range number: FILE:LINE message with the bounds" \
	has_error "$conf" "$(line_of "$conf" '^max_sessions')" \
	"value 99999999 for 'max_sessions' is out of range (1..100000)"

# --- a bad unit -------------------------------------------------------------------
conf=$(mkconf unit)
sed -i 's/^#max_frame = 1M$/max_frame = 1Q/' "$conf"
run_check "$conf"
check "bad size suffix: FILE:LINE message" \
	has_error "$conf" "$(line_of "$conf" '^max_frame')" \
	"invalid size '1Q' for 'max_frame' (use a number with an optional K, M, G or T suffix)"

# --- a missing file -----------------------------------------------------------------
conf=$(mkconf missing)
sed -i 's|^ca_file = pki/ca.pem$|ca_file = pki/nope.pem|' "$conf"
dir=$(cd "$T/missing" && pwd -P)
run_check "$conf"
check "missing file: exit 1" [ "$RC" -eq 1 ]
check "missing file: FILE:LINE message with the resolved path" \
	has_error "$conf" "$(line_of "$conf" '^ca_file')" \
	"file '$dir/pki/nope.pem' for 'ca_file' does not exist"

# --- a private key readable by others (a copy: the shared PKI stays intact) --------
conf=$(mkconf key)
cp "$IHALA_PKI/broker.key" "$T/key/broker.key"
chmod 644 "$T/key/broker.key"
sed -i 's|^key_file = pki/broker.key$|key_file = broker.key|' "$conf"
dir=$(cd "$T/key" && pwd -P)
run_check "$conf"
check "chmod 644 key: exit 1" [ "$RC" -eq 1 ]
check "chmod 644 key: FILE:LINE message says chmod 600" \
	has_error "$conf" "$(line_of "$conf" '^key_file = broker.key')" \
	"private key '$dir/broker.key' is readable by group or others (chmod 600 it)"
chmod 600 "$T/key/broker.key"
run_check "$conf"
check "the same key after chmod 600: configuration OK" [ "$RC" -eq 0 ]

# the checkpoint key gets the same check
conf=$(mkconf ckey)
cp "$IHALA_PKI/checkpoint.key" "$T/ckey/checkpoint.key"
chmod 640 "$T/ckey/checkpoint.key"
sed -i 's|^key_file = pki/checkpoint.key$|key_file = checkpoint.key|' "$conf"
run_check "$conf"
check "group-readable checkpoint key: refused at its line" \
	has_error "$conf" "$(line_of "$conf" '^key_file = checkpoint.key')" \
	"private key '$(cd "$T/ckey" && pwd -P)/checkpoint.key' is readable by group or others (chmod 600 it)"

# --- agencies -------------------------------------------------------------------------
conf=$(mkconf agency)
printf '\n[agency.moh]\nrole = ngo\n[agency.ngo2]\nrole = charity\n' >>"$conf"
run_check "$conf"
check "duplicate agency: refused with the first line" \
	has_error "$conf" "$(last_line_of "$conf" '^\[agency\.moh\]')" \
	"duplicate section [agency.moh] (first at line $(line_of "$conf" '^\[agency\.moh\]'))"
check "bad role: refused at its line" \
	has_error "$conf" "$(line_of "$conf" '^role = charity')" \
	"invalid value 'charity' for 'role' (expected dma, ministry, ngo or auditor)"

# --- several mistakes: every one reported, each as FILE:LINE: ------------------------
conf=$(mkconf several)
sed -i -e 's/^#max_sessions = 1024$/max_sessions = 0/' \
	-e 's/^#handshake_timeout = 10s$/handshake_timeout = 10/' \
	-e 's/^#log_level = info$/log_level = loud/' \
	-e 's|^cert_file = pki/broker.pem$||' "$conf"
run_check "$conf"
check "several errors: exit 1" [ "$RC" -eq 1 ]
check "several errors: four lines on stderr" [ "$(wc -l <"$ERR")" -eq 4 ]
check "several errors: every line is FILE:LINE: message" all_file_line
check "several errors: the missing required option names its section line" \
	has_error "$conf" "$(line_of "$conf" '^\[tls\]')" "missing required option 'cert_file' in [tls]"

# --- every interface: allowed, but said, at -n and at start -------------------------------------
# warned CONF LINE OPTION VALUE: exit 0, and stderr has one line "CONF:LINE: warning: 'OPTION = VALUE' ...".
warned() {
	if [ "$RC" -eq 0 ] && grep -qx 'configuration OK' "$OUT" &&
		[ "$(grep -cF "$1:$2: warning: '$3 = $4'" "$ERR")" -eq 1 ]; then
		return 0
	fi
	diag "exit $RC; wanted one line with: $1:$2: warning: '$3 = $4'"
	show "$ERR"
	return 1
}
for host in 0.0.0.0 '*' '[::]'; do
	conf=$(mkconf anyif)
	sed -i "s|^#listen = .*|listen = tcp://$host:7450|" "$conf"
	run_check "$conf"
	check "listen = tcp://$host:7450 passes -n with a warning naming FILE:LINE" \
		warned "$conf" "$(line_of "$conf" '^listen =')" listen "tcp://$host:7450"
done
sed -i "s|^#metrics_listen = .*|metrics_listen = tcp://0.0.0.0:9750|" "$conf"
run_check "$conf"
check "metrics_listen = tcp://0.0.0.0:9750: a warning that the metrics are open to every interface" \
	warned "$conf" "$(line_of "$conf" '^metrics_listen =')" metrics_listen "tcp://0.0.0.0:9750"
conf=$(mkconf oneif)
sed -i "s|^#listen = .*|listen = tcp://127.0.0.2:7450|" "$conf"
run_check "$conf"
check "listen on one address: no warning" test "$RC" -eq 0 -a ! -s "$ERR"
# At start too (the log), where an operator who never ran -n reads it.
port=$(free_port)
write_broker_conf "$T/start" "$port"
sed -i "s|^listen = .*|listen = tcp://0.0.0.0:$port|" "$T/start/broker.conf"
if start_broker "$T/start"; then
	check "a broker started on 0.0.0.0 logs the warning" \
		grep -qF "$T/start/broker.conf:2: warning: 'listen = tcp://0.0.0.0:$port' takes connections on every network interface" "$T/start/broker.log"
	stop_broker
else
	not_ok "a broker started on 0.0.0.0 logs the warning (it did not start)"
fi

# --- no such config file; command line ------------------------------------------------
run_check "$T/absent.conf"
check "absent config: exit 1, FILE:0: message" \
	has_error "$T/absent.conf" 0 "cannot open config file: No such file or directory"
"$BROKER" --bogus >/dev/null 2>&1
check "unknown command-line option: exit 2" [ $? -eq 2 ]
"$BROKER" --help >"$T/help" 2>&1
check "--help: exit 0 and usage" grep -q '^usage: ihala-broker' "$T/help"

# --- onboarding: mkpki for any set of agencies, no test fixtures; the C2SP verifier key --------
MKPKI=$IHALA_ROOT/config/pki/mkpki
"$MKPKI" "$T/upki" dma mina-ngo:ngo gov-x:ministry audit2:auditor >"$T/mk.out" 2>&1
RC=$?
check "mkpki DIR AGENCY[:ROLE]...: exit 0, a certificate per agency with its CN and SAN" \
	eval '[ $RC -eq 0 ] && for a in dma mina-ngo gov-x audit2; do
		openssl x509 -in "$T/upki/$a.pem" -noout -subject -ext subjectAltName | tr -d " " |
			grep -q "URI:ihala:agency:$a" || exit 1; done || { show "$T/mk.out"; false; }'
check "mkpki: no test fixtures in a user's PKI (expired, revoked, stranger, foreign, moh-alt)" \
	eval '! ls "$T/upki" | grep -qE "^(expired|revoked|stranger|foreign|moh-alt|ca-hi-revoked)"'
check "mkpki: the user's CRL is empty, the fixtures' lists revoked.pem" \
	eval '! openssl crl -in "$T/upki/ca.crl" -noout -text | grep -q "Serial Number" &&
		openssl crl -in "$IHALA_PKI/ca.crl" -noout -text | grep -q "Serial Number"'
# A broker config for these agencies from the sections mkpki wrote.
mkdir -p "$T/uconf"
ln -sfn "$T/upki" "$T/uconf/pki"
sed -n '1,/^\[deadlines\]/p' "$EXAMPLE" | sed '$d' >"$T/uconf/broker.conf"
cat "$T/upki/agencies.conf" >>"$T/uconf/broker.conf"
run_check "$T/uconf/broker.conf"
check "mkpki's agencies.conf makes a valid broker config with those roles" \
	eval 'grep -qx "configuration OK" "$OUT" && grep -q "^role = ngo" "$T/upki/agencies.conf" || show "$ERR"'
"$MKPKI" "$T/bad" moh:chief >/dev/null 2>"$T/mkerr"
RC=$?
check "mkpki: an unknown role is refused with exit 2, the role named" \
	eval '[ $RC -eq 2 ] && grep -q "unknown role .chief. for .moh." "$T/mkerr"'
"$BROKER" --verifier-key -c "$T/uconf/broker.conf" >"$T/vkey" 2>"$T/vkerr"
RC=$?
# The C2SP vkey: name+hex(SHA-256(name || 0x0A || 0x01 || pubkey)[:4])+base64(0x01 || pubkey),
# recomputed here with openssl from the public key mkpki wrote.
hex2bin() { printf "$(printf '%s' "$1" | sed 's/../\\x&/g')"; }
vk_expect() {
	local name=ihala.local/log pub kid
	pub=$(openssl pkey -pubin -in "$T/upki/checkpoint.pub" -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')
	kid=$({ printf '%s\n\001' "$name"; hex2bin "$pub"; } | openssl dgst -sha256 -r | cut -c1-8)
	printf '%s+%s+%s\n' "$name" "$kid" "$({ printf '\001'; hex2bin "$pub"; } | base64 -w0)"
}
check "ihala-broker --verifier-key: exit 0, the C2SP verifier key of the checkpoint key" \
	eval '[ $RC -eq 0 ] && [ "$(cat "$T/vkey")" = "$(vk_expect)" ] || { diag "got $(cat "$T/vkey") want $(vk_expect)"; show "$T/vkerr"; false; }'
