#!/usr/bin/env bash
# client_crash.sh - clients killed with SIGKILL mid-submit and mid-delivery, then restarted:
# nothing is lost, nothing is logged twice, and nothing is applied twice.
#
# 1. A sender (loadgen submit, prefix P, CLIENT_CRASH_COUNT messages) is killed
#    CLIENT_CRASH_CYCLES times (default 5) while it submits, and restarted with the same
#    prefix on the same node: its outbox
#    re-sends what had no receipt, re-submitted ids get their original seq (DUPLICATE).
# 2. The recipient's `ihala inbox --watch --exec APP` is killed as many times mid-run
#    (CLIENT_CRASH_DELIVERIES waiting for it) and restarted. A delivery whose APP ran but whose ack was not yet recorded is handed to APP
#    again after the restart, with the same IHALA_SEQ: that is the documented way for an
#    application to apply each delivery once, and this APP does (it records every call and
#    applies a seq only once). The test checks that nothing is missing, that every repeat
#    is the same (seq, message id), and that each kill repeats at most the one delivery
#    that was in flight.
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
IHALA=$IHALA_BUILD/ihala
cycles=${CLIENT_CRASH_CYCLES:-5}
N=${CLIENT_CRASH_COUNT:-1000} # messages of the killed sender (to molsa)
M=${CLIENT_CRASH_DELIVERIES:-300} # deliveries for the killed inbox (moh)
plan 13

port=$(free_port)
write_broker_conf "$T" "$port"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")
start_broker "$T" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

# --- 1. kill -9 of the sender mid-submit -------------------------------------------------
: >"$T/receipts"
receipted() { cut -d' ' -f1 "$T/receipts" | sort -u | wc -l; }
killed=0 first=0
for ((c = 1; c <= cycles; c++)); do
	# (a restarted sender re-submits from its first id: the ones done come back DUPLICATE)
	[ "$(receipted)" -lt "$N" ] || break
	bg "$LG" submit "$dma" molsa "$N" P "$T/receipts" >>"$T/submit.out" 2>>"$T/submit.err"
	sleep "0.$((RANDOM % 4))$((RANDOM % 10))$((RANDOM % 10))"
	if kill -9 "$LAST_PID" 2>/dev/null; then
		killed=$((killed + 1))
	fi
	wait "$LAST_PID" 2>/dev/null
	[ $c -eq 1 ] && first=$(receipted)
done
before=$(receipted)
diag "counts: sender killed $killed times mid-submit; $first of $N messages receipted after the first kill, $before before the last run"
"$LG" submit "$dma" molsa "$N" P "$T/receipts" >>"$T/submit.out" 2>>"$T/submit.err"
check "the restarted sender ends with a receipt for all $N messages" test $? -eq 0
check "the sender was really killed mid-run ($killed kills, $first < $N receipted after the first)" \
	test "$killed" -gt 0 -a "$first" -lt "$N"
ids=$(cut -d' ' -f1 "$T/receipts" | sort -u | wc -l)
conflicts=$(sort -u "$T/receipts" | cut -d' ' -f1 | uniq -d | wc -l)
check "every re-sent message id got its original seq back ($ids ids, $conflicts with two seqs)" \
	test "$ids" -eq "$N" -a "$conflicts" -eq 0
sort -u "$T/receipts" >"$T/receipts.u"
if "$LG" check "$T/data" "$T/receipts.u" dma >"$T/check.out" 2>&1; then
	ok "each of the $N messages is in the log exactly once"
	diag "$(sed -n 's/^# counts: //p' "$T/check.out")"
else
	not_ok "each of the $N messages is in the log exactly once"
	show "$T/check.out"
fi
"$IHALA" -c "$dma" outbox >"$T/outbox.out" 2>&1
check "the sender's outbox is empty at the end" grep -q '"waiting":0' "$T/outbox.out"

# --- 2. kill -9 of the recipient's inbox --exec mid-delivery -------------------------------
"$LG" submit "$dma" moh "$M" Q "$T/q.receipts" >>"$T/submit.out" 2>>"$T/submit.err"
check "$M more messages are queued for moh" test "$(wc -l <"$T/q.receipts")" -eq "$M"
cat >"$T/app.sh" <<APP
#!/bin/sh
# app.sh: records every delivery it is handed, applies each seq once (keyed on IHALA_SEQ).
# A killed inbox may leave it a cut line: only a whole line (ending in a newline) is taken,
# else it fails and the delivery comes again.
IFS= read -r line || { echo "\$IHALA_SEQ" >>"$T/cut"; exit 1; }
m=\$(printf '%s\\n' "\$line" | sed -n 's/.*"messageId":"\\([^"]*\\)".*/\\1/p')
[ -n "\$m" ] || exit 1
echo "\$IHALA_SEQ \$m" >>"$T/seen"
sleep 0.01
flock "$T/app.lock" sh -c 'grep -qx "\$1" "\$2" || echo "\$1" >>"\$2"' app "\$IHALA_SEQ \$m" "$T/applied"
APP
: >"$T/seen"
: >"$T/applied"
ikilled=0 ifirst=0
for ((c = 1; c <= cycles; c++)); do
	[ "$(wc -l <"$T/applied")" -lt "$M" ] || break
	bg "$IHALA" -c "$moh" inbox --watch --exec "sh $T/app.sh" >>"$T/inbox.out" 2>>"$T/inbox.err"
	sleep "0.$((RANDOM % 6 + 2))$((RANDOM % 10))"
	if kill -9 "$LAST_PID" 2>/dev/null; then
		ikilled=$((ikilled + 1))
	fi
	wait "$LAST_PID" 2>/dev/null
	[ $c -eq 1 ] && ifirst=$(wc -l <"$T/applied")
done
ibefore=$(wc -l <"$T/applied")
diag "counts: inbox killed $ikilled times mid-run; $ifirst of $M applied after the first kill, $ibefore before the last run"
bg "$IHALA" -c "$moh" inbox --watch --exec "sh $T/app.sh" >>"$T/inbox.out" 2>>"$T/inbox.err"
ipid=$LAST_PID
applied_all() { [ "$(wc -l <"$T/applied")" -ge "$M" ]; }
wait_for 60 applied_all
sleep 1 # a repeat would come now, if at all
kill -TERM "$ipid"
wait "$ipid"
check "the last inbox run stops cleanly on SIGTERM" test $? -eq 0
check "the inbox was really killed mid-run ($ikilled kills, $ifirst < $M applied after the first)" \
	test "$ikilled" -gt 0 -a "$ifirst" -lt "$M"

awk '{print $2" "$1}' "$T/q.receipts" | sort >"$T/want"
sort "$T/applied" >"$T/got"
missing=$(comm -23 "$T/want" "$T/got" | wc -l)
extra=$(comm -13 "$T/want" "$T/got" | wc -l)
dups=$(uniq -d "$T/got" | wc -l)
if [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ] && [ "$dups" -eq 0 ]; then
	ok "the application applied each of the $M messages exactly once"
else
	not_ok "the application applied each message exactly once ($missing missing, $extra unexpected, $dups twice)"
	comm -3 "$T/want" "$T/got" | head -n 10 | sed 's/^/#   /'
fi
seen=$(wc -l <"$T/seen")
repeats=$((seen - $(sort -u "$T/seen" | wc -l)))
badpairs=$(sort -u "$T/seen" | comm -13 "$T/want" - | wc -l)
check "every repeated delivery is the same seq and message id ($repeats repeats, $badpairs other pairs)" \
	test "$badpairs" -eq 0
check "each kill repeated at most the one delivery in flight ($repeats repeats <= $ikilled kills)" \
	test "$repeats" -le "$ikilled"
"$LG" drain "$moh" 0 1000 "$T/after.out" >/dev/null 2>&1
check "after the last acks nothing is delivered again" test ! -s "$T/after.out"
diag "counts: sender kills $killed, messages $N; inbox kills $ikilled, deliveries $M, APP calls $seen (+$(cat "$T/cut" 2>/dev/null | wc -l) on a cut line), repeats $repeats, applied $(wc -l <"$T/applied")"
