#!/usr/bin/env bash
# crash.sh - the broker killed with SIGKILL at random moments under load, and restarted:
# nothing receipted is lost or logged twice, every recipient's application sees each of its
# messages exactly once, and the log still verifies.
#
# Three senders (loadgen submit, dma with prefixes A, B, C to moh, molsa, hi, each its own
# node and outbox) and three recipients (`ihala inbox --watch --exec APP`, APP appending
# "seq messageId" per delivery) run while the broker is killed CRASH_CYCLES times (default
# 5; `make crash-full` runs 20) and restarted. The senders run rounds of CRASH_ROUND (40)
# messages, each round a new process on the same node, until the last restart.
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
IHALA=$IHALA_BUILD/ihala
cycles=${CRASH_CYCLES:-5}
senders=(A:moh B:molsa C:hi)
plan $((3 + 3 * ${#senders[@]} + 2))

port=$(free_port)
write_broker_conf "$T" "$port"
auditor=$(write_client_conf "$T" auditor "$port")
start_broker "$T" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

# The recipients' application: one line "seq messageId" per delivery it is handed.
cat >"$T/app.sh" <<'APP'
#!/bin/sh
# app.sh FILE: what a recipient does with a delivery (the JSON line on stdin, whole)
IFS= read -r line || exit 1
m=$(printf '%s\n' "$line" | sed -n 's/.*"messageId":"\([^"]*\)".*/\1/p')
echo "$IHALA_SEQ ${m:--}" >>"$1"
APP
# Each recipient node runs its inbox under a supervisor that starts it again when it could
# not reach the broker (exit 3: it started while the broker was down); any other exit ends it.
# The inbox's pid is in $T/inbox.AGENCY.pid, for the end and for the cleanup.
trap 'for f in "$T"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done; cleanup' EXIT
supervise_inbox() {
	local a=$1 cfg=$2 rc
	while [ ! -e "$T/stop.inbox" ]; do
		"$IHALA" -c "$cfg" inbox --watch --exec "sh $T/app.sh $T/applied.$a" \
			>>"$T/inbox.$a.out" 2>>"$T/inbox.$a.err" &
		echo $! >"$T/inbox.$a.pid"
		wait $!
		rc=$?
		[ -e "$T/stop.inbox" ] && break
		if [ $rc -ne 3 ]; then
			echo "inbox exit $rc" >>"$T/inbox.$a.exit"
			break
		fi
		echo "restart" >>"$T/inbox.$a.restarts"
		sleep 0.2
	done
}
for s in "${senders[@]}"; do
	a=${s#*:}
	cfg=$(write_client_conf "$T" "$a" "$port")
	: >"$T/applied.$a"
	supervise_inbox "$a" "$cfg" &
	_pids+=("$!")
done

# The senders: one dma node each (a data dir of its own, as an office would have), each
# running rounds of CRASH_ROUND messages (prefix A1-, A2-, ...) until the kills are over.
round=${CRASH_ROUND:-40}
sender_pids=()
for s in "${senders[@]}"; do
	p=${s%%:*} a=${s#*:}
	cfg=$(write_client_conf "$T/node$p" dma "$port" dma)
	: >"$T/receipts.$p"
	(
		r=0
		while [ ! -e "$T/stop" ] || [ $r -eq 0 ]; do
			r=$((r + 1))
			"$LG" submit "$cfg" "$a" "$round" "$p$r" "$T/receipts.$p" \
				>>"$T/submit.$p.out" 2>>"$T/submit.$p.err" || echo "round $r: exit $?" >>"$T/failed.$p"
		done
		echo "$r" >"$T/rounds.$p"
	) &
	sender_pids+=("$!")
	_pids+=("$!")
done

# Kill the broker at random moments while the load runs, restart it each time.
start_failed=0
for ((c = 1; c <= cycles; c++)); do
	sleep "$((RANDOM % 2)).$((RANDOM % 10))$((RANDOM % 10))"
	kill_broker
	sleep "0.$((RANDOM % 5))"
	start_broker "$T" || start_failed=$((start_failed + 1))
done
touch "$T/stop"
check "the broker restarts after each of $cycles SIGKILLs" test "$start_failed" -eq 0
restarts=$(grep -c 'listening on' "$T/broker.log")

# Every sender ends with a receipt for every message (its outbox re-sends across the kills).
i=0
for s in "${senders[@]}"; do
	p=${s%%:*}
	wait "${sender_pids[$i]}"
	i=$((i + 1))
	rounds=$(cat "$T/rounds.$p" 2>/dev/null || echo 0)
	n=$(wc -l <"$T/receipts.$p")
	uniq_ids=$(cut -d' ' -f1 "$T/receipts.$p" | sort -u | wc -l)
	if [ ! -e "$T/failed.$p" ] && [ "$n" -eq $((rounds * round)) ] && [ "$uniq_ids" -eq "$n" ]; then
		ok "sender $p holds one receipt for each of its $n messages ($rounds rounds)"
	else
		not_ok "sender $p holds one receipt for each of its $((rounds * round)) messages ($n)"
		show "$T/failed.$p"
		show "$T/submit.$p.err"
	fi
done

# Every receipted message is in the log exactly once, at its receipted seq.
for s in "${senders[@]}"; do
	p=${s%%:*}
	if $LG check "$T/data" "$T/receipts.$p" dma >"$T/check.$p" 2>&1; then
		ok "sender $p: every receipted message is in the log exactly once"
		diag "$p: $(sed -n 's/^# counts: //p' "$T/check.$p")"
	else
		not_ok "sender $p: every receipted message is in the log exactly once"
		show "$T/check.$p"
	fi
done

# Each recipient's application saw each of its messages exactly once, none missing, no other.
all_applied() {
	local s a p
	for s in "${senders[@]}"; do
		p=${s%%:*} a=${s#*:}
		[ "$(wc -l <"$T/applied.$a")" -ge "$(wc -l <"$T/receipts.$p")" ] || return 1
	done
}
wait_for 60 all_applied
sleep 1 # a duplicate would come now, if at all
dups_total=0 missing_total=0 applied_total=0
for s in "${senders[@]}"; do
	p=${s%%:*} a=${s#*:}
	awk '{print $2" "$1}' "$T/receipts.$p" | sort >"$T/want.$a"
	sort "$T/applied.$a" >"$T/got.$a"
	dups=$(cut -d' ' -f1 "$T/got.$a" | sort | uniq -d | wc -l)
	missing=$(comm -23 "$T/want.$a" <(sort -u "$T/got.$a") | wc -l)
	extra=$(comm -13 "$T/want.$a" <(sort -u "$T/got.$a") | wc -l)
	applied=$(wc -l <"$T/got.$a")
	dups_total=$((dups_total + dups))
	missing_total=$((missing_total + missing))
	applied_total=$((applied_total + applied))
	diag "counts: $a: receipts $(wc -l <"$T/want.$a"), applied $applied, duplicates $dups, missing $missing, unexpected $extra"
	if [ "$dups" -eq 0 ] && [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ]; then
		ok "recipient $a applied each of its $(wc -l <"$T/want.$a") messages exactly once"
	else
		not_ok "recipient $a applied each of its messages exactly once"
		comm -3 "$T/want.$a" "$T/got.$a" | head -n 10 | sed 's/^/#   /'
		show "$T/inbox.$a.err"
	fi
done
touch "$T/stop.inbox"
inbox_restarts=$(cat "$T"/inbox.*.restarts 2>/dev/null | wc -l)
check "no inbox ended but by our SIGTERM ($inbox_restarts restarted after an unreachable start)" \
	test ! -e "$T/inbox.moh.exit" -a ! -e "$T/inbox.molsa.exit" -a ! -e "$T/inbox.hi.exit"
for s in "${senders[@]}"; do
	a=${s#*:}
	kill -TERM "$(cat "$T/inbox.$a.pid")" 2>/dev/null
done

# The log as a whole: entries, and the offline verifier where it exists.
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
check "the broker exits 0 on SIGTERM after the crashes" test $? -eq 0
entries=$(mdb_stat -s log "$T/data" 2>/dev/null | sed -n 's/^ *Entries: //p')
mkdir -p "$T/copy"
if mdb_copy -c "$T/data" "$T/copy" &&
	"$IHALA" -c "$auditor" audit verify --db "$T/copy" --key "$IHALA_PKI/checkpoint.pub" \
		--origin ihala.test/log >"$T/verify.out" 2>"$T/verify.err"; then
	ok "ihala audit verify --db passes on the crashed-and-recovered log"
	diag "$(head -n 1 "$T/verify.out") $(head -n 2 "$T/verify.err" | tr '\n' ' ')"
else
	not_ok "ihala audit verify --db passes on the crashed-and-recovered log"
	show "$T/verify.err"
fi
diag "counts: cycles $cycles, broker starts $restarts, senders ${#senders[@]}, receipted $(cat "$T"/receipts.* | wc -l), log entries ${entries:-?}"
diag "counts: applied $applied_total, duplicates $dups_total, missing $missing_total"
