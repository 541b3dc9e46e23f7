#!/usr/bin/env bash
# ops.sh - operating a broker: SIGHUP reloads (revocation, a broken file), Prometheus metrics,
# a backup under load and a restore, dropping root, man pages, the systemd unit, make install.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
PROBE=$IHALA_BUILD/tests/tools/probe
BROKER=$IHALA_BUILD/ihala-broker
plan 70

port=$(free_port)
mport=$(free_port)
while [ "$mport" = "$port" ]; do mport=$(free_port); done
write_broker_conf "$T" "$port"
sed -i "/^\[broker\]/a metrics_listen = tcp://127.0.0.1:$mport" "$T/broker.conf"
chmod 700 "$T/data"
cp "$T/broker.conf" "$T/broker.conf.good"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")
molsa=$(write_client_conf "$T" molsa "$port")
auditor=$(write_client_conf "$T" auditor "$port")
start_broker "$T" || { not_ok "broker starts with metrics_listen set"; exit 1; }
ok "broker starts with metrics_listen set"
LOG=$T/broker.log

# probe ARGS...: the raw test client as AGENCY's certificate (first argument).
probe_as() {
	local who=$1
	shift
	"$PROBE" --endpoint "tcp://127.0.0.1:$port" --ca "$IHALA_PKI/ca.pem" \
		--cert "$IHALA_PKI/$who.pem" --key "$IHALA_PKI/$who.key" --timeout 3000 "$@"
}

# http PATH OUT: one HTTP/1.0 GET to the metrics endpoint over bash's /dev/tcp (no curl needed).
http() {
	local path=$1 out=$2
	exec 3<>"/dev/tcp/127.0.0.1/$mport" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
	tr -d '\r' <&3 >"$out"
	exec 3<&-
}
# scrape OUT: /metrics, which must answer 200.
scrape() { http /metrics "$1" && head -n 1 "$1" | grep -qE '^HTTP/1\.[01] 200'; }
# metric FILE SAMPLE: the sample's value ("absent" when missing).
metric() { awk -v k="$2" '$1 == k { v = $2 } END { print (v == "" ? "absent" : v) }' "$1"; }
# grows FILE1 FILE2 SAMPLE [BY]: the sample grew from FILE1 to FILE2 (by at least BY, default 1).
grows() {
	local a b
	a=$(metric "$1" "$3")
	b=$(metric "$2" "$3")
	if [ "$a" != absent ] && [ "$b" != absent ] && awk -v a="$a" -v b="$b" -v by="${4:-1}" \
		'BEGIN { exit !(b - a >= by) }'; then
		return 0
	fi
	diag "$3: $a -> $b (wanted +${4:-1})"
	return 1
}
# delta FILE1 FILE2 SAMPLE: how much the sample grew.
delta() { awk -v a="$(metric "$1" "$3")" -v b="$(metric "$2" "$3")" 'BEGIN { print b - a }'; }
# welcome_as WHO: a new session of WHO gets its Welcome; refused_as WHO: it is refused.
welcome_as() { probe_as "$1" welcome 2>&1 | grep -q "^welcome $1 "; }
refused_as() { probe_as "$1" welcome 2>&1 | grep -q '^refused'; }
is() { # is FILE SAMPLE VALUE
	local v
	v=$(metric "$1" "$2")
	[ "$v" = "$3" ] && return 0
	diag "$2 = $v, wanted $3"
	return 1
}

# --- metrics -------------------------------------------------------------------------------
check "GET /metrics answers 200 in the Prometheus text format" scrape "$T/m0"
check "... with TYPE lines for counters and histograms" \
	grep -qx '# TYPE ihala_commit_duration_seconds histogram' "$T/m0"
http /nope "$T/m404"
check "another path is a 404" grep -qE '^HTTP/1\.[01] 404' "$T/m404"

$LG submit "$dma" moh 20 M "$T/m.receipts" >/dev/null
scrape "$T/m1"
check "queue depth of the offline moh is 20 after 20 referrals" is "$T/m1" 'ihala_queue_depth{agency="moh"}' 20
$LG drain "$moh" 0 1500 "$T/m.out" >/dev/null
scrape "$T/m2"
check "submissions_total grew by 20" grows "$T/m0" "$T/m2" ihala_submissions_total 20
check "accepted receipts grew by exactly 20" \
	test "$(delta "$T/m0" "$T/m2" 'ihala_receipts_total{status="accepted"}')" = 20
check "deliveries_total grew by at least 20" grows "$T/m0" "$T/m2" ihala_deliveries_total 20
check "delivery_acks_total grew by at least 20" grows "$T/m0" "$T/m2" ihala_delivery_acks_total 20
check "commit batch histogram counted the commits" grows "$T/m0" "$T/m2" ihala_commit_batch_size_count 2
check "commit latency histogram counted the commits" grows "$T/m0" "$T/m2" ihala_commit_duration_seconds_count 2
check "queue depth of moh is back to 0 after its acks" is "$T/m2" 'ihala_queue_depth{agency="moh"}' 0
check "log_entries counts the log (20 referrals, 20 'received' that record their deliveries)" grows "$T/m0" "$T/m2" ihala_log_entries 40

# A refusal, counted under its code: auditors may not send.
$LG submit "$auditor" moh 1 X "$T/x.receipts" >/dev/null 2>"$T/x.err"
scrape "$T/m3"
check "a refused submission is counted by its code (READ_ONLY: auditors do not submit)" \
	is "$T/m3" 'ihala_refusals_total{code="READ_ONLY"}' 1
check "... and as a refused receipt" grows "$T/m2" "$T/m3" 'ihala_receipts_total{status="refused"}' 1

# --- reload: a revoked agency goes, the others stay ----------------------------------------
bg probe_as hi hold 6 >"$T/hold-hi.out" 2>&1
hi_pid=$LAST_PID
bg probe_as moh hold 6 >"$T/hold-moh.out" 2>&1
moh_pid=$LAST_PID
wait_for 5 grep -q '^welcome hi' "$T/hold-hi.out"
wait_for 5 grep -q '^welcome moh' "$T/hold-moh.out"
scrape "$T/r0"
check "metrics see one session of hi" is "$T/r0" 'ihala_sessions{agency="hi"}' 1
check "metrics see one session of moh" is "$T/r0" 'ihala_sessions{agency="moh"}' 1

sed -i "s|^crl_file = .*|crl_file = $IHALA_PKI/ca-hi-revoked.crl|" "$T/broker.conf"
kill -HUP "$BROKER_PID"
if wait_for 5 grep -q '^closed' "$T/hold-hi.out"; then
	ok "SIGHUP with hi in the new CRL closes hi's session"
else
	not_ok "SIGHUP with hi in the new CRL closes hi's session"
	show "$T/hold-hi.out"
fi
check "... with a CERTIFICATE_REVOKED error" grep -q '^closed: CERTIFICATE_REVOKED' "$T/hold-hi.out"
check "the broker logs it as a security event naming hi" \
	grep -qE "security: reload: closing session [0-9]+ of 'hi': certificate now fails" "$LOG"
wait "$moh_pid"
check "moh's session stays open through the reload and answers" grep -qx 'open: answered' "$T/hold-moh.out"
wait "$hi_pid"
check "a new session of hi is refused" refused_as hi
scrape "$T/r1"
check "metrics: hi has no session left" is "$T/r1" 'ihala_sessions{agency="hi"}' 0

# --- reload: a broken file is refused with FILE:LINE, the old config stays ------------------
cp "$T/broker.conf" "$T/broker.conf.revoked"
sed -i "/^\[broker\]/a listn = tcp://127.0.0.1:1" "$T/broker.conf"
bad_line=$(grep -n '^listn' "$T/broker.conf" | cut -d: -f1)
kill -HUP "$BROKER_PID"
# Through the logger (its "ihala-broker: " prefix), so a daemon sends it to syslog.
if wait_for 5 grep -q "ihala-broker: $T/broker.conf:$bad_line: unknown option 'listn'" "$LOG"; then
	ok "a broken file on SIGHUP: the log names it as FILE:LINE ($bad_line)"
else
	not_ok "a broken file on SIGHUP: the log names it as FILE:LINE ($bad_line)"
	show "$LOG"
fi
check "... and says the configuration in force is unchanged" \
	grep -q 'reload refused: the configuration in force is unchanged' "$LOG"
check "the broker is still running" kill -0 "$BROKER_PID"
check "... and serving: moh is welcome" welcome_as moh
check "... and accepts submissions" $LG submit "$dma" moh 2 Z "$T/z.receipts"
check "the old config stays in force (hi still revoked)" refused_as hi
cp "$T/broker.conf.good" "$T/broker.conf"
before=$(grep -c 'reload done' "$LOG")
kill -HUP "$BROKER_PID"
reloaded() { [ "$(grep -c 'reload done' "$LOG")" -gt "$before" ]; }
wait_for 5 reloaded
check "a good file reloads again and hi is welcome back" welcome_as hi

# --- reload: an option read at start-up only is named, not silently ignored -------------------
sed -i -e "/^\[broker\]/a map_size = 2G" -e "s/^every_entries = .*/every_entries = 20/" \
	"$T/broker.conf"
before=$(grep -c 'reload done' "$LOG")
kill -HUP "$BROKER_PID"
wait_for 5 reloaded
check "a reload that changes map_size warns that it takes effect at the next start" \
	grep -q "reload: 'broker.map_size' changed; the new value takes effect at the next start" "$LOG"
check "... and names checkpoint.every_entries too" \
	grep -q "reload: 'checkpoint.every_entries' changed" "$LOG"
check "... and nothing else" eval '[ "$(grep -c "reload: '"'"'" "$LOG")" -eq 2 ]'
cp "$T/broker.conf.good" "$T/broker.conf"

# --- backup under load, then restore -------------------------------------------------------
N_LOAD=2000
: >"$T/l.receipts"
bg $LG submit "$dma" molsa $N_LOAD L "$T/l.receipts"
lg_pid=$LAST_PID
receipts() { wc -l <"$T/l.receipts"; }
some_receipts() { [ "$(receipts)" -ge 50 ]; }
wait_for 20 some_receipts
# Only whole lines: every one of them was receipted, so committed, before the backup began.
n_before=$(receipts)
head -n "$n_before" "$T/l.receipts" >"$T/l.before"
loaded=no
kill -0 "$lg_pid" 2>/dev/null && loaded=yes
"$BROKER" --backup "$T/bk" -c "$T/broker.conf" >"$T/bk.out" 2>"$T/bk.err"
rc=$?
n_after=$(receipts)
diag "backup began after $n_before receipts and ended at $n_after, of $N_LOAD"
if [ $rc -eq 0 ]; then ok "ihala-broker --backup succeeds while the broker runs"; else not_ok "ihala-broker --backup succeeds while the broker runs"; show "$T/bk.err"; fi
check "... while loadgen was submitting (receipts before it: $n_before of $N_LOAD)" \
	test "$loaded" = yes -a "$n_before" -lt $N_LOAD
wait "$lg_pid"
check "loadgen got all $N_LOAD receipts (the backup did not disturb the broker)" test "$(receipts)" -eq $N_LOAD
check "the backup file is mode 0600" test "$(stat -c %a "$T/bk/data.mdb")" = 600
bk_entries=$(mdb_stat -s log "$T/bk" 2>/dev/null | awk '/Entries:/ { print $2 }')
check "mdb_stat reads the backup's log ($bk_entries entries)" test -n "$bk_entries"
check "--backup reports the same entry count" grep -q "backup $T/bk/data.mdb: $bk_entries entries" "$T/bk.out"
check "every message receipted before the backup is in it exactly once" $LG check "$T/bk" "$T/l.before" dma
live_entries=$(mdb_stat -s log "$T/data" 2>/dev/null | awk '/Entries:/ { print $2 }')
check "the backup is a point-in-time prefix ($bk_entries <= $live_entries live)" test "$bk_entries" -le "$live_entries"
check "ihala audit verify --db accepts the backup" "$IHALA_BUILD/ihala" audit verify \
	--db "$T/bk" --key "$IHALA_PKI/checkpoint.pub" --origin ihala.test/log
"$BROKER" --backup "$T/bk" -c "$T/broker.conf" >/dev/null 2>"$T/bk2.err"
check "a second backup into the same directory is refused (exit 1)" test $? -eq 1

stop_broker
mv "$T/data" "$T/data.old"
mkdir -m 700 "$T/data"
cp "$T/bk/data.mdb" "$T/data/data.mdb"
if start_broker "$T"; then ok "restore: the broker starts on the backup"; else not_ok "restore: the broker starts on the backup"; fi
scrape "$T/rs"
check "restore: the broker serves the backup's $bk_entries entries" is "$T/rs" ihala_log_entries "$bk_entries"
check "restore: sessions work" $LG submit "$dma" moh 1 RS "$T/rs.receipts"
stop_broker

# --- privileges ----------------------------------------------------------------------------
mkdir -p "$T/p"
write_broker_conf "$T/p" "$(free_port)"
sed -i "/^\[broker\]/a user = no-such-user-ihala" "$T/p/broker.conf"
uline=$(grep -n '^user = ' "$T/p/broker.conf" | cut -d: -f1)
"$BROKER" -n -c "$T/p/broker.conf" >/dev/null 2>"$T/p/n.err"
check "-n refuses a user that does not exist (exit 1)" test $? -eq 1
check "... naming FILE:LINE and the reason" grep -q "^$T/p/broker.conf:$uline: .*no such user" "$T/p/n.err"
if [ "$(id -u)" = 0 ] && getent passwd nobody >/dev/null; then
	sed -i "s/^user = .*/user = nobody/" "$T/p/broker.conf"
	chown nobody "$T/p/data"
	chmod 700 "$T/p/data"
	# What a reload re-reads must be readable by nobody (the configuration, CA, CRL); the
	# keys stay root's, mode 0600, as documented.
	chmod 711 "$T"
	chmod 755 "$T/p"
	cp "$IHALA_PKI/ca.crl" "$T/p/crl.pem"
	chmod 644 "$T/p/crl.pem" "$T/p/broker.conf"
	mport=$(free_port)
	sed -i -e "s|^crl_file = .*|crl_file = $T/p/crl.pem|" \
		-e "/^\[broker\]/a metrics_listen = tcp://127.0.0.1:$mport" "$T/p/broker.conf"
	start_broker "$T/p"
	pp=$BROKER_PID
	nuid=$(id -u nobody)
	ngid=$(id -g nobody)
	# all_tasks PATTERN: every thread of the broker (writer, ZeroMQ, metrics) matches.
	all_tasks() {
		local f n=0
		for f in /proc/"$pp"/task/*/status; do
			grep -qP "$1" "$f" || return 1
			n=$((n + 1))
		done
		[ "$n" -gt 1 ]
	}
	check "started as root with user = nobody: real, effective, saved uid of every thread" \
		all_tasks "^Uid:\t$nuid\t$nuid\t$nuid\t$nuid$"
	check "... real, effective, saved gid of every thread" \
		all_tasks "^Gid:\t$ngid\t$ngid\t$ngid\t$ngid$"
	check "... and no supplementary group but nobody's" all_tasks "^Groups:\t$ngid ?$"
	pport=$(sed -n 's|^listen = tcp://127.0.0.1:||p' "$T/p/broker.conf")
	pdma=$(write_client_conf "$T/p" dma "$pport")
	check "... and it serves from its data dir owned by nobody" $LG submit "$pdma" moh 2 P "$T/p/p.receipts"

	# A reload as nobody: the new CRL applies, the TLS key (root's) stays from start.
	port=$pport
	plog=$T/p/broker.log
	preloads() { grep -c 'reload done' "$plog"; }
	bg probe_as hi hold 6 >"$T/p/hold-hi.out" 2>&1
	phi=$LAST_PID
	wait_for 5 grep -q '^welcome hi' "$T/p/hold-hi.out"
	n=$(preloads)
	cp "$IHALA_PKI/ca-hi-revoked.crl" "$T/p/crl.pem"
	kill -HUP "$BROKER_PID"
	check "as nobody: SIGHUP with a new CRL reloads (root-only keys kept from start)" \
		wait_for 5 eval '[ "$(preloads)" -gt "$n" ]'
	check "... and closes the session of hi, now revoked" \
		wait_for 5 grep -q '^closed: CERTIFICATE_REVOKED' "$T/p/hold-hi.out"
	wait "$phi"
	check "... a new session of hi is refused" refused_as hi
	check "... moh still gets in (the broker's certificate and key still serve)" welcome_as moh
	scrape "$T/p/m1"
	check "... counted: ihala_reloads_total{result=\"applied\"} 1" \
		is "$T/p/m1" 'ihala_reloads_total{result="applied"}' 1
	cp "$IHALA_PKI/broker.key" "$T/p/broker2.key"
	chmod 600 "$T/p/broker2.key"
	sed -i "s|^key_file = .*/broker.key$|key_file = $T/p/broker2.key|" "$T/p/broker.conf"
	n=$(preloads)
	kill -HUP "$BROKER_PID"
	wait_for 5 eval '[ "$(preloads)" -gt "$n" ]'
	check "as nobody: a new TLS key path is named as taking effect at the next start" \
		grep -q "reload: the broker's TLS certificate or key changed; running as user 'nobody'.*next start" "$plog"
	sed -i "/^\[broker\]/a listn = tcp://127.0.0.1:1" "$T/p/broker.conf"
	kill -HUP "$BROKER_PID"
	check "as nobody: a refused reload is a security: line" \
		wait_for 5 grep -q 'security: reload refused: the configuration in force is unchanged' "$plog"
	scrape "$T/p/m2"
	check "... and counted: ihala_reloads_total{result=\"refused\"} 1" \
		is "$T/p/m2" 'ihala_reloads_total{result="refused"}' 1
	stop_broker
else
	for d in "runs as nobody" "gids are nobody's" "groups are nobody's" "serves as nobody" \
		"reload: CRL" "reload: revoked closed" "reload: revoked refused" "reload: moh" \
		"reload: applied metric" "reload: restart named" "reload: refused security" \
		"reload: refused metric"; do
		ok "$d # SKIP not root"
	done
fi

# --- man pages -----------------------------------------------------------------------------
for page in ihala-broker.8 ihala.1 ihala.conf.5; do
	f=$IHALA_ROOT/docs/$page
	MANWIDTH=80 man --warnings -l "$f" >"$T/$page.txt" 2>"$T/$page.err"
	name=${page%.*}
	if grep -q '^NAME' "$T/$page.txt" && grep -q "^ *$name " "$T/$page.txt" && [ ! -s "$T/$page.err" ]; then
		ok "man -l renders $page without warnings"
	else
		not_ok "man -l renders $page without warnings"
		show "$T/$page.err"
	fi
done

# --- systemd unit --------------------------------------------------------------------------
unit=$IHALA_ROOT/config/ihala-broker.service
if command -v systemd-analyze >/dev/null; then
	mkdir -p "$T/unit"
	# verify wants the ExecStart binary to exist: point it at the one just built.
	sed "s|/usr/sbin/ihala-broker|$BROKER|" "$unit" >"$T/unit/ihala-broker.service"
	SYSTEMD_LOG_COLOR=0 systemd-analyze verify --man=no "$T/unit/ihala-broker.service" >"$T/unit/out" 2>&1
	rc=$?
	if [ $rc -eq 0 ] && ! grep -q 'ihala-broker.service' "$T/unit/out"; then
		ok "systemd-analyze verify accepts the unit"
	else
		not_ok "systemd-analyze verify accepts the unit (exit $rc)"
		show "$T/unit/out"
	fi
else
	ok "systemd-analyze verify accepts the unit # SKIP systemd-analyze not installed"
fi
check "the unit reloads with SIGHUP and runs hardened as the ihala user" bash -c \
	"grep -qx 'ExecReload=/bin/kill -HUP \$MAINPID' '$unit' && grep -qx 'User=ihala' '$unit' && grep -qx 'NoNewPrivileges=yes' '$unit' && grep -qx 'ProtectSystem=strict' '$unit'"

# --- make install --------------------------------------------------------------------------
dest=$T/dest
make --no-print-directory -C "$IHALA_ROOT" B="$IHALA_BUILD" -o "$IHALA_BUILD/ihala-broker" \
	-o "$IHALA_BUILD/ihala" install DESTDIR="$dest" PREFIX=/usr >"$T/install.out" 2>&1
check "make install DESTDIR=... PREFIX=/usr succeeds" test $? -eq 0
check "... installs both programs, executable" test -x "$dest/usr/sbin/ihala-broker" -a -x "$dest/usr/bin/ihala"
check "... the three man pages" test -f "$dest/usr/share/man/man8/ihala-broker.8" -a -f "$dest/usr/share/man/man1/ihala.1" -a -f "$dest/usr/share/man/man5/ihala.conf.5"
check "... the example configs" test -f "$dest/usr/share/doc/ihala/examples/broker.conf.example" -a -f "$dest/usr/share/doc/ihala/examples/client.conf.example"
check "... and the unit, whose ExecStart names the installed broker" \
	grep -q '^ExecStart=/usr/sbin/ihala-broker ' "$dest/usr/lib/systemd/system/ihala-broker.service"
