#!/usr/bin/env bash
# nodecut.sh - a node's local store on lazyfs (tests/tools/lazyfs), power cut: a `refer` that
# exited 3 (the broker down: "the message waits in the outbox") still waits there after the cut
# and goes with the next `outbox`; a delivery that `inbox --exec` applied and acked is recorded
# done on the node, so after the cut it is neither lost nor applied again.
. "$(dirname "$0")/lib.sh"
IHALA=$IHALA_BUILD/ihala
LAZYFS=$IHALA_BUILD/tests/tools/lazyfs
EX=$IHALA_ROOT/config/examples

if [ "$(id -u)" != 0 ] || [ ! -w /dev/fuse ] || [ ! -x "$LAZYFS" ]; then
	plan 1
	ok "node power cuts # SKIP needs root, /dev/fuse and $LAZYFS"
	exit 0
fi
plan 8

port=$(free_port)
write_broker_conf "$T" "$port"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")
declare -A FS_PIDS
# start_fs AGENCY: lazyfs over $T/disk.AGENCY on the node's data dir.
start_fs() {
	mkdir -p -m 700 "$T/disk.$1" "$T/$1/data"
	"$LAZYFS" -f "$T/disk.$1" "$T/$1/data" 2>>"$T/lazyfs.log" &
	FS_PIDS[$1]=$!
	_pids+=("$!")
	wait_for 10 test -e "$T/$1/data/.lazyfs"
}
fs_gone() { ! kill -0 "${FS_PIDS[$1]}" 2>/dev/null; }
stop_fs() {
	local i
	for i in $(seq 1 50); do
		umount "$T/$1/data" 2>/dev/null && break
		sleep 0.1
	done
	mountpoint -q "$T/$1/data" && umount -l "$T/$1/data"
	wait_for 10 fs_gone "$1" || kill -9 "${FS_PIDS[$1]}" 2>/dev/null
	wait "${FS_PIDS[$1]}" 2>/dev/null
}
node_cut() {
	echo cut >"$T/$1/data/.lazyfs"
	stop_fs "$1"
	start_fs "$1"
}
trap 'kill -9 "${BROKER_PID:-}" 2>/dev/null; for a in dma moh; do
	mountpoint -q "$T/$a/data" && umount -l "$T/$a/data"; done; cleanup' EXIT

start_fs dma && start_fs moh || { not_ok "lazyfs mounts on the nodes' data dirs"; exit 1; }

# The broker is down: each refer exits 3, its message waiting in the outbox.
codes=""
for i in 1 2 3 4 5; do
	sed "s/\"referralId\": *\"[^\"]*\"/\"referralId\": \"NC-$i\"/" "$EX/referral.json" >"$T/ref$i.json"
	"$IHALA" -c "$dma" -t 1s refer --to moh --file "$T/ref$i.json" --message-id "NC-$i" \
		>"$T/refer$i.out" 2>"$T/refer$i.err"
	codes="$codes$?"
done
check "5 refers with the broker down exit 3 (they wait in the outbox)" test "$codes" = 33333
node_cut dma
start_broker "$T" || { not_ok "broker starts"; exit 1; }
"$IHALA" -c "$dma" outbox >"$T/outbox.out" 2>"$T/outbox.err"
rc=$?
check "after a power cut of the node, the outbox still holds the 5 and sends them" \
	grep -q '"waiting":5,"sent":5,"left":0' "$T/outbox.out"
check "... and ends empty (exit $rc)" test "$rc" -eq 0

# The recipient applies and acks the 5, then its power is cut.
cat >"$T/app.sh" <<'APP'
#!/bin/sh
IFS= read -r line || exit 1
echo "$IHALA_SEQ" >>"$1"
APP
: >"$T/applied"
"$IHALA" -c "$moh" inbox --count 5 --exec "sh $T/app.sh $T/applied" >"$T/inbox.out" 2>"$T/inbox.err"
check "the recipient applied and acked 5 deliveries" test "$(wc -l <"$T/applied")" -eq 5
node_cut moh
done_n=$(mdb_stat -s inbox_done "$T/moh/data" 2>/dev/null | sed -n 's/^ *Entries: //p')
pending_n=$(mdb_stat -s inbox "$T/moh/data" 2>/dev/null | sed -n 's/^ *Entries: //p')
check "after a power cut of the recipient, its store records the 5 as done (done ${done_n:-?}, pending ${pending_n:-?})" \
	test "${done_n:-0}" -eq 5 -a "${pending_n:-0}" -eq 0
"$IHALA" -c "$moh" inbox --exec "sh $T/app.sh $T/applied" >>"$T/inbox.out" 2>>"$T/inbox.err"
check "... and taking deliveries again applies none of them twice" \
	test "$(sort "$T/applied" | uniq -d | wc -l)" -eq 0 -a "$(wc -l <"$T/applied")" -eq 5
stop_broker
stop_fs dma
stop_fs moh
check "the nodes' lazyfs unmount" test ! -e "$T/dma/data/.lazyfs" -a ! -e "$T/moh/data/.lazyfs"
check "lazyfs said nothing on stderr" test ! -s "$T/lazyfs.log"
