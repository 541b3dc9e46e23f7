#!/usr/bin/env bash
# powercut.sh - the broker's store on lazyfs (tests/tools/lazyfs: a file system that forgets what
# was not synced), power cut at random moments under load, and restarted: what was receipted is
# in the log exactly once, each recipient's application sees each of its messages exactly once,
# and the log still verifies. A SIGKILL (crash.sh) leaves the page cache to the kernel, so it
# cannot see a missing or misplaced fsync; a power cut here does.
#
# One cut: SIGKILL the broker, tell lazyfs "cut" (every other cut "cut tear": the last unsynced
# page half written), unmount, and mount a fresh lazyfs over the backing directory, which only
# ever held synced data. Three senders (loadgen submit, dma with prefixes A, B, C to moh, molsa,
# hi, each its own node) and three recipients (`ihala inbox --watch --exec APP`) run on the
# ordinary disk while the broker is cut POWERCUT_CYCLES times (default 5; `make crash-full` runs
# 100). After each restart every receipt so far is checked against the log, and each of the six
# nodes (run with checkpoint_key: each keeps the last signed checkpoint it verified) runs its
# next command: it must succeed, its kept checkpoint consistent with the restarted broker's log
# (a broker that lost a checkpointed tail is refused with exit 5, never served silently).
# The last line: "# counts: cycles N, receipted R, lost L, applied twice D, verify ok|FAILED,
# checkpoints consistent K of K".
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
IHALA=$IHALA_BUILD/ihala
LAZYFS=$IHALA_BUILD/tests/tools/lazyfs
cycles=${POWERCUT_CYCLES:-5}
senders=(A:moh B:molsa C:hi)

if [ "$(id -u)" != 0 ] || [ ! -w /dev/fuse ] || [ ! -x "$LAZYFS" ]; then
	plan 1
	ok "power cuts # SKIP needs root, /dev/fuse and $LAZYFS"
	exit 0
fi
plan $((5 + 3 * ${#senders[@]} + 3))

port=$(free_port)
write_broker_conf "$T" "$port"
auditor=$(write_client_conf "$T" auditor "$port")
mkdir -m 700 "$T/disk"

# lazyfs over $T/disk, mounted on the broker's data dir $T/data. Sets FS_PID.
FS_PID=
start_fs() {
	"$LAZYFS" -f "$T/disk" "$T/data" 2>>"$T/lazyfs.log" &
	FS_PID=$!
	_pids+=("$FS_PID")
	wait_for 10 test -e "$T/data/.lazyfs"
}
stop_fs() {
	local i
	for i in $(seq 1 50); do
		umount "$T/data" 2>/dev/null && break
		sleep 0.1
	done
	mountpoint -q "$T/data" && umount -l "$T/data"
	wait_for 10 fs_gone || kill -9 "$FS_PID" 2>/dev/null
	wait "$FS_PID" 2>/dev/null
}
fs_gone() { ! kill -0 "$FS_PID" 2>/dev/null; }
# power_cut [tear]: the broker dies with whatever it had not synced. The dead broker's and
# lazyfs's pids leave _pids: with pids recycled fast (pid_max 32768), cleanup's kill -9 of a
# long-dead pid could hit another process.
power_cut() {
	kill_broker
	echo "cut${1:+ tear}" >"$T/data/.lazyfs" || echo "cut failed" >>"$T/cut.errors"
	stop_fs
	_pids=("${base_pids[@]}")
	start_fs || echo "mount failed" >>"$T/cut.errors"
}

trap 'for f in "$T"/*.pid; do [ -e "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done
	kill -9 "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null
	mountpoint -q "$T/data" && umount -l "$T/data"; cleanup' EXIT

check "lazyfs mounts over the broker's data directory" start_fs
start_broker "$T" || { not_ok "broker starts on lazyfs"; exit 1; }
ok "broker starts on lazyfs"

# The recipients' application: one line "seq messageId" per delivery it is handed.
cat >"$T/app.sh" <<'APP'
#!/bin/sh
IFS= read -r line || exit 1
m=$(printf '%s\n' "$line" | sed -n 's/.*"messageId":"\([^"]*\)".*/\1/p')
echo "$IHALA_SEQ ${m:--}" >>"$1"
APP
# As in crash.sh: each inbox restarted when it started while the broker was down (exit 3).
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
# with_key CONFIG: the node keeps and checks the broker's signed checkpoints.
with_key() { echo "checkpoint_key = $IHALA_PKI/checkpoint.pub" >>"$1"; echo "$1"; }
for s in "${senders[@]}"; do
	a=${s#*:}
	cfg=$(with_key "$(write_client_conf "$T" "$a" "$port")")
	: >"$T/applied.$a"
	supervise_inbox "$a" "$cfg" &
	_pids+=("$!")
done

round=${POWERCUT_ROUND:-40}
sender_pids=()
for s in "${senders[@]}"; do
	p=${s%%:*} a=${s#*:}
	cfg=$(with_key "$(write_client_conf "$T/node$p" dma "$port" dma)")
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

base_pids=()
for p in "${_pids[@]}"; do
	[ "$p" = "$FS_PID" ] || [ "$p" = "$BROKER_PID" ] || base_pids+=("$p")
done

# check_receipts TAG: every receipt so far (whole lines) is in the log exactly once, at its seq.
# lost_total: the most receipts found wanting by one check (each check sees every receipt).
lost_total=0
check_receipts() {
	local s p n bad sum=0
	for s in "${senders[@]}"; do
		p=${s%%:*}
		n=$(wc -l <"$T/receipts.$p")
		head -n "$n" "$T/receipts.$p" >"$T/snap.$p"
		[ "$n" -gt 0 ] || continue
		$LG check "$T/data" "$T/snap.$p" dma >"$T/check.$p.out" 2>"$T/check.$p.err"
		bad=$(sed -n 's/.* \([0-9]*\) not exactly once$/\1/p' "$T/check.$p.out")
		if [ -z "$bad" ]; then
			echo "$1: sender $p: loadgen check failed" >>"$T/lost.log"
			cat "$T/check.$p.err" >>"$T/lost.log"
			bad=1
		elif [ "$bad" -gt 0 ]; then
			echo "$1: sender $p: $bad of $n receipts not in the log exactly once" >>"$T/lost.log"
			head -n 5 "$T/check.$p.err" >>"$T/lost.log"
		fi
		sum=$((sum + bad))
	done
	[ "$sum" -gt "$lost_total" ] && lost_total=$sum
	return 0
}

# check_nodes TAG: each sender's and recipient's node runs its next command (the status of the
# sender's first referral, to which both are party) against the restarted broker, all six at
# once. Exit 0: its kept checkpoint is consistent with the log; 5 would be the refusal of a log
# that lost a checkpointed tail (any other exit is counted as a failure too).
ckpt_checks=0 ckpt_ok=0
check_nodes() {
	local s p a n i rc pids=() names=()
	for s in "${senders[@]}"; do
		p=${s%%:*} a=${s#*:}
		for n in "node$p/dma" "$a"; do
			"$IHALA" -c "$T/$n/client.conf" status "${p}1-R0" \
				>"$T/ckpt.${n//\//-}.out" 2>"$T/ckpt.${n//\//-}.err" &
			pids+=("$!")
			names+=("$n")
		done
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}"
		rc=$?
		ckpt_checks=$((ckpt_checks + 1))
		if [ "$rc" -eq 0 ]; then
			ckpt_ok=$((ckpt_ok + 1))
		else
			n=${names[$i]}
			echo "$1: node $n: exit $rc" >>"$T/ckpt.log"
			head -n 3 "$T/ckpt.${n//\//-}.err" >>"$T/ckpt.log"
		fi
	done
}
# Each sender's first referral is receipted before the first cut, for check_nodes to ask about.
first_receipts() {
	local s
	for s in "${senders[@]}"; do
		grep -q "^${s%%:*}1-0 " "$T/receipts.${s%%:*}" || return 1
	done
}
wait_for 30 first_receipts || echo "no first receipts" >>"$T/ckpt.log"

start_failed=0
for ((c = 1; c <= cycles; c++)); do
	sleep "$((RANDOM % 2)).$((RANDOM % 10))$((RANDOM % 10))"
	if [ $((c % 2)) -eq 0 ]; then power_cut tear; else power_cut; fi
	start_broker "$T" || start_failed=$((start_failed + 1))
	check_receipts "cycle $c"
	check_nodes "cycle $c"
done
touch "$T/stop"
check "lazyfs cut, remounted and the broker restarted after each of $cycles power cuts" \
	test "$start_failed" -eq 0 -a ! -e "$T/cut.errors"

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

# After the last restart: every receipt, in the log exactly once at its seq (and after each cut).
check_receipts "end"
for s in "${senders[@]}"; do
	p=${s%%:*}
	if grep -q "sender $p" "$T/lost.log" 2>/dev/null; then
		not_ok "sender $p: every receipted message is in the log exactly once, after every cut"
		grep -A5 "sender $p" "$T/lost.log" | head -n 20 | sed 's/^/#   /'
	else
		ok "sender $p: every receipted message is in the log exactly once, after every cut"
	fi
done

all_applied() {
	local s a p
	for s in "${senders[@]}"; do
		p=${s%%:*} a=${s#*:}
		[ "$(wc -l <"$T/applied.$a")" -ge "$(wc -l <"$T/receipts.$p")" ] || return 1
	done
}
# The recipients may lag far behind after many cycles: wait while they make progress, and give
# up after 60 s without any.
wait_applied() {
	local last=-1 now idle=0
	while ! all_applied; do
		now=$(cat "$T"/applied.* | wc -l)
		if [ "$now" -eq "$last" ]; then
			idle=$((idle + 1))
			[ "$idle" -ge 120 ] && return 1
		else
			idle=0
			last=$now
		fi
		sleep 0.5
	done
}
wait_applied
sleep 1 # a duplicate would come now, if at all
dups_total=0 missing_total=0
for s in "${senders[@]}"; do
	p=${s%%:*} a=${s#*:}
	awk '{print $2" "$1}' "$T/receipts.$p" | sort >"$T/want.$a"
	sort "$T/applied.$a" >"$T/got.$a"
	dups=$(cut -d' ' -f1 "$T/got.$a" | sort | uniq -d | wc -l)
	missing=$(comm -23 "$T/want.$a" <(sort -u "$T/got.$a") | wc -l)
	extra=$(comm -13 "$T/want.$a" <(sort -u "$T/got.$a") | wc -l)
	dups_total=$((dups_total + dups))
	missing_total=$((missing_total + missing))
	diag "counts: $a: receipts $(wc -l <"$T/want.$a"), applied $(wc -l <"$T/got.$a"), duplicates $dups, missing $missing, unexpected $extra"
	if [ "$dups" -eq 0 ] && [ "$missing" -eq 0 ] && [ "$extra" -eq 0 ]; then
		ok "recipient $a applied each of its $(wc -l <"$T/want.$a") messages exactly once"
	else
		not_ok "recipient $a applied each of its messages exactly once"
		comm -3 "$T/want.$a" "$T/got.$a" | head -n 10 | sed 's/^/#   /'
		show "$T/inbox.$a.err"
	fi
done
touch "$T/stop.inbox"
if [ "$ckpt_ok" -eq $((cycles * 2 * ${#senders[@]})) ] && [ ! -e "$T/ckpt.log" ]; then
	ok "after each of $cycles cuts, each of the $((2 * ${#senders[@]})) nodes' kept checkpoint is consistent with the log ($ckpt_ok commands exit 0)"
else
	not_ok "after each cut, each node's kept checkpoint is consistent with the log ($ckpt_ok of $ckpt_checks commands exit 0)"
	show "$T/ckpt.log"
fi
check "no inbox ended but by our SIGTERM" \
	test ! -e "$T/inbox.moh.exit" -a ! -e "$T/inbox.molsa.exit" -a ! -e "$T/inbox.hi.exit"
for s in "${senders[@]}"; do
	a=${s#*:}
	kill -TERM "$(cat "$T/inbox.$a.pid")" 2>/dev/null
done

kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
check "the broker exits 0 on SIGTERM after the power cuts" test $? -eq 0
mkdir -p "$T/copy"
verify=FAILED
if mdb_copy -c "$T/data" "$T/copy" &&
	"$IHALA" -c "$auditor" audit verify --db "$T/copy" --key "$IHALA_PKI/checkpoint.pub" \
		--origin ihala.test/log >"$T/verify.out" 2>"$T/verify.err"; then
	verify=ok
	ok "ihala audit verify --db passes on the log after the power cuts"
	diag "$(head -n 2 "$T/verify.out" | tr '\n' ' ')"
else
	not_ok "ihala audit verify --db passes on the log after the power cuts"
	show "$T/verify.err"
fi
stop_fs
check "lazyfs unmounts" test ! -e "$T/data/.lazyfs"
diag "counts: broker starts $(grep -c "listening on" "$T/broker.log"), lazyfs stderr lines $(cat "$T/lazyfs.log" 2>/dev/null | wc -l)"
diag "counts: recipients missed $missing_total receipted messages"
diag "counts: cycles $cycles, receipted $(cat "$T"/receipts.* | wc -l), lost $lost_total, applied twice $dups_total, verify $verify, checkpoints consistent $ckpt_ok of $ckpt_checks"
