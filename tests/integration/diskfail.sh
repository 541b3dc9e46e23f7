#!/usr/bin/env bash
# diskfail.sh - the broker's store on lazyfs (tests/tools/lazyfs) with a failing disk: an fsync
# that fails with EIO makes the broker stop and exit without answering what it covered (never a
# retry: the kernel may have dropped those pages), and after a power cut and a restart the log
# is the last synced state, to which the sender's outbox adds what had no receipt; a full disk
# (ENOSPC) refuses submissions with a clear error while the broker goes on serving reads.
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
IHALA=$IHALA_BUILD/ihala
LAZYFS=$IHALA_BUILD/tests/tools/lazyfs

if [ "$(id -u)" != 0 ] || [ ! -w /dev/fuse ] || [ ! -x "$LAZYFS" ]; then
	plan 1
	ok "failing disks # SKIP needs root, /dev/fuse and $LAZYFS"
	exit 0
fi
plan 10

port=$(free_port)
write_broker_conf "$T" "$port"
auditor=$(write_client_conf "$T" auditor "$port")
moh=$(write_client_conf "$T" moh "$port")
dma=$(write_client_conf "$T/node" dma "$port" dma)
mkdir -m 700 "$T/disk"
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
trap 'kill -9 "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null
	mountpoint -q "$T/data" && umount -l "$T/data"; cleanup' EXIT
broker_gone() { ! kill -0 "$BROKER_PID" 2>/dev/null; }

start_fs && start_broker "$T" || { not_ok "broker starts on lazyfs"; exit 1; }
$LG submit "$dma" moh 10 A "$T/receipts" >"$T/a.out" 2>&1
check "10 referrals receipted on a sound disk" test "$(wc -l <"$T/receipts")" -eq 10

# The next fsync fails: the broker must stop, not retry it and answer.
echo eio >"$T/data/.lazyfs"
timeout 15 $LG submit "$dma" moh 3 X "$T/receipts" >"$T/x.out" 2>&1 &
xpid=$!
if wait_for 10 broker_gone; then
	wait "$BROKER_PID"
	rc=$?
	check "an fsync failing with EIO makes the broker exit (status $rc)" test "$rc" -ne 0
else
	not_ok "an fsync failing with EIO makes the broker exit"
fi
check "... saying that the disk failed" grep -q 'fatal: writer: the disk failed' "$T/broker.log"
wait "$xpid"
check "... and no receipt was sent for what the failed fsync covered" \
	test "$(grep -c '^X-' "$T/receipts")" -eq 0

# Power cut and restart: the last synced state, then the outbox sends what had no receipt.
kill_broker
echo cut >"$T/data/.lazyfs"
stop_fs
start_fs && start_broker "$T" || { not_ok "the broker restarts after the power cut"; exit 1; }
ok "the broker restarts after the power cut"
check "every referral receipted before the failure is in the log exactly once" \
	$LG check "$T/data" "$T/receipts" dma
$LG submit "$dma" moh 3 X "$T/receipts" >"$T/x2.out" 2>&1
check "the sender's outbox delivers the 3 unanswered referrals once the disk is sound" \
	$LG check "$T/data" "$T/receipts" dma

# A full disk: submissions refused with a clear error; the broker serves on.
used=$(sed -n 's/^used //p' "$T/data/.lazyfs")
echo "enospc $used" >"$T/data/.lazyfs"
timeout 60 $LG submit "$dma" moh 200 F "$T/receipts.full" >"$T/f.out" 2>"$T/f.err"
check "a full disk refuses submissions with a clear error" \
	grep -qi 'refused: .*full' "$T/f.err"
check "... while the broker goes on serving (a recipient takes its deliveries)" \
	$LG drain "$moh" 0 1500 "$T/drained"
grep -i 'no space\|full' "$T/broker.log" | tail -n 2 | sed 's/^/# /'
echo "enospc off" >"$T/data/.lazyfs"
before=$(wc -l <"$T/receipts.full")
$LG submit "$dma" moh 3 G "$T/receipts.full" >"$T/g.out" 2>&1
check "with room again, submissions are receipted" \
	test "$(wc -l <"$T/receipts.full")" -eq $((before + 3))
stop_broker
stop_fs
