#!/usr/bin/env bash
# diskfull.sh - real full file systems (a small tmpfs, not lazyfs) under the broker's store and
# under a node's. The broker: once less than disk_reserve is free under data_dir, submissions
# are refused (STORE_FULL, a sentence saying to free space) while deliveries (whose acks are
# logged, in the reserve), queries and audits go on; filled to the last byte it still serves;
# with space freed it takes submissions again, and nothing receipted was lost. A node: `ihala
# refer` on a full data dir exits 6 naming the data dir, with nothing queued and nothing sent,
# and works once space is freed; `ihala inbox` exits 6 too, the delivery not taken nor acked.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
LG=$IHALA_BUILD/tests/tools/loadgen
EX=$IHALA_ROOT/config/examples

if [ "$(id -u)" != 0 ]; then
	plan 1
	ok "full disks # SKIP needs root (mount -t tmpfs)"
	exit 0
fi
plan 26

mkref() { sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/df-$1/" "$EX/referral.json" >"$T/df-$1.json"; }
avail() { df -B1 --output=avail "$1" | tail -n 1 | tr -d ' '; }
# fill DIR LEAVE: a file in DIR taking all its free space but LEAVE bytes (0: every byte).
fill() {
	local n=$(($(avail "$1") - $2))
	[ "$n" -gt 0 ] || return 0
	head -c "$n" /dev/zero >>"$1/fill" 2>/dev/null
	[ "$2" -gt 0 ] || dd if=/dev/zero of="$1/fill" bs=4096 oflag=append conv=notrunc \
		2>/dev/null
	return 0
}
broker_up() { kill -0 "$BROKER_PID" 2>/dev/null; }
MOUNTS=()
trap 'kill -9 "$BROKER_PID" 2>/dev/null; wait "$BROKER_PID" 2>/dev/null
	for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done; cleanup' EXIT

port=$(free_port)
write_broker_conf "$T" "$port"
sed -i '/^\[broker\]/a disk_reserve = 1M' "$T/broker.conf"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
AUD=$(write_client_conf "$T" auditor "$port")
mount -t tmpfs -o size=6M,mode=700 ihala-test "$T/data" && MOUNTS+=("$T/data")
check "a 6 MiB tmpfs mounted on the broker's data_dir" mountpoint -q "$T/data"
start_broker "$T" || { not_ok "the broker starts on it"; exit 1; }

# --- the broker's disk fills ------------------------------------------------------------------
$LG submit "$DMA" moh 20 A "$T/receipts" >"$T/a.out" 2>&1
check "20 referrals receipted with room on the disk" test "$(wc -l <"$T/receipts")" -eq 20
fill "$T/data" $((512 * 1024))
diag "free under data_dir: $(avail "$T/data") bytes (disk_reserve 1M)"
sleep 1.2 # the writer looks at the free space once a second while there is plenty
mkref 1
run full-refer "$DMA" refer --to moh --file "$T/df-1.json"
check "below disk_reserve: refer refused, exit 1, STORE_FULL with what to do" \
	exit_and_err 1 "ihala: refused: STORE_FULL: broker's disk is full; submissions are refused until an operator frees space under its data_dir"
$LG submit "$DMA" moh 5 F "$T/receipts.full" >"$T/f.out" 2>"$T/f.err"
check "... and so are loadgen's 5 (none receipted)" \
	eval '[ ! -s "$T/receipts.full" ] && [ "$(grep -c "refused: broker'"'"'s disk is full" "$T/f.err")" -eq 5 ]'
check "the broker logs it once, with the figures" \
	eval '[ "$(grep -c "the disk under the store is nearly full (" "$T/broker.log")" -eq 1 ]'
run full-inbox "$MOH" inbox
check "deliveries go on: moh takes its 20 (each ack logged, in the reserve)" \
	eval 'expect 0 && [ "$(grep -c "\"seq\":" "$OUT")" -eq 20 ]'
run full-status "$DMA" status A-R7
check "queries go on: status A-R7, received (moh's ack was logged)" \
	eval 'expect 0 && grep -q "\"status\":\"received\"" "$OUT" || { show "$OUT"; false; }'
run full-verify "$AUD" audit verify --key "$IHALA_PKI/checkpoint.pub"
check "audits go on: audit verify online, exit 0" expect 0
run full-stats "$AUD" audit stats
check "audit stats online, exit 0" expect 0

# --- space freed -------------------------------------------------------------------------------
rm -f "$T/data/fill"
sleep 1.2
$LG submit "$DMA" moh 10 B "$T/receipts" >"$T/b.out" 2>&1
check "with space freed, submissions are receipted again (10 more)" \
	test "$(wc -l <"$T/receipts")" -eq 30
grep -q "the disk under the store has room again" "$T/broker.log"
check "... the broker says so" test $? -eq 0
run rejected "$DMA" --json outbox
id=$(grep '"referralId":"df-1"' "$T/rejected.out" | grep -o '"messageId":"[^"]*"' | cut -d'"' -f4)
run retry "$DMA" outbox --retry "$id"
run retried "$DMA" status df-1
check "the refused refer, retried from the rejected list (outbox --retry $id), is logged" \
	eval '[ -n "$id" ] && expect 0'

# --- no reserve (disk_reserve = 0), filled to the last byte ----------------------------------
# The store's free pages take the first submissions; then a commit needs new pages and meets the
# full file system: ENOSPC refuses the batch (STORE_FULL), or, when the write came out short,
# LMDB reports EIO and the broker stops as for a failed disk. Either way no receipt is lost.
stop_broker
sed -i 's/^disk_reserve = 1M$/disk_reserve = 0/' "$T/broker.conf"
fill "$T/data" 0
diag "free under data_dir: $(avail "$T/data") bytes"
start_broker "$T" || { not_ok "the broker starts on the full disk"; exit 1; }
timeout 30 $LG submit "$DMA" moh 300 Z "$T/receipts.zero" >"$T/z.out" 2>"$T/z.err"
nz=$(wc -l <"$T/receipts.zero")
if broker_up; then how="refused $(grep -c "refused: broker's disk is full" "$T/z.err")"; else how="broker stopped"; fi
diag "of 300 submitted, $nz receipted (in the store's free pages), then: $how"
grep -E "no space left on the disk under it|fatal: writer: the disk failed" "$T/broker.log" | head -n 2 | sed 's/^/# /'
check "no reserve, no byte free: a commit fails, no more receipts (refused STORE_FULL, or the broker stopped)" \
	eval '[ "$nz" -lt 300 ] && { grep -q "no space left on the disk under it" "$T/broker.log" &&
	      grep -q "refused: broker'"'"'s disk is full; submissions are refused until an operator frees space" "$T/z.err" ||
	      grep -q "fatal: writer: the disk failed" "$T/broker.log"; }'
rm -f "$T/data/fill"
broker_up || start_broker "$T" || { not_ok "the broker restarts with space freed"; exit 1; }
run zero-status "$DMA" status A-R0
check "with space freed the broker runs and answers queries" expect 0
$LG submit "$DMA" moh 5 C "$T/receipts" >"$T/c.out" 2>&1
check "... and submissions are receipted again (5 more)" \
	test "$(wc -l <"$T/receipts")" -eq 35

cat "$T/receipts.zero" >>"$T/receipts"
check "nothing receipted was lost: all $((35 + nz)) in the log exactly once" \
	"$LG" check "$T/data" "$T/receipts" dma
stop_broker
mkdir -p "$T/copy"
"$IHALA_BUILD/ihala-broker" --backup "$T/copy" -c "$T/broker.conf" >/dev/null 2>&1
run final-verify "$AUD" audit verify --db "$T/copy" --key "$IHALA_PKI/checkpoint.pub"
check "audit verify --db of the store after it: exit 0" expect 0
start_broker "$T" || { not_ok "the broker restarts"; exit 1; }

# --- a node's data dir fills ---------------------------------------------------------------------
NODE=$(write_client_conf "$T/n" dma "$port")
mkdir -p "$T/n/dma/data"
mount -t tmpfs -o size=2M,mode=700 ihala-test "$T/n/dma/data" && MOUNTS+=("$T/n/dma/data")
run n-first "$NODE" outbox
check "a node on a 2 MiB tmpfs: its store made (exit 0)" eval 'mountpoint -q "$T/n/dma/data" && expect 0'
fill "$T/n/dma/data" 0
mkref 2
run n-refer "$NODE" refer --to moh --file "$T/df-2.json"
check "refer on the full data dir: exit 6, names the data dir and what to do" \
	exit_and_err 6 "no space left on the disk of data dir '$T/n/dma/data': message "
check "... 'was not queued, nothing was sent; free some space and submit it again'" \
	err_has "was not queued, nothing was sent; free some space and submit it again"
run n-outbox "$NODE" --json outbox
check "... nothing half-written: the outbox is empty, and readable" \
	eval 'expect 0 && grep -q "\"waiting\":0," "$OUT" || { show "$OUT"; false; }'
run n-status "$DMA" status df-2
check "... nothing sent: the broker has no referral df-2" exit_and_err 1 "refused: UNKNOWN_REFERRAL"
rm -f "$T/n/dma/data/fill"
run n-refer2 "$NODE" refer --to moh --file "$T/df-2.json"
check "with space freed the same refer works: exit 0" expect 0
run n-status2 "$DMA" status df-2
check "... and the broker has it" expect 0

# A recipient's node on a full disk: a delivery it cannot store is not taken, nor acked.
MNODE=$(write_client_conf "$T/m" moh "$port")
mkdir -p "$T/m/moh/data"
mount -t tmpfs -o size=2M,mode=700 ihala-test "$T/m/moh/data" && MOUNTS+=("$T/m/moh/data")
run m-first "$MNODE" outbox
fill "$T/m/moh/data" 0
run m-inbox "$MNODE" inbox
check "moh's node on a full disk: inbox exits 6, the delivery not taken (not acked)" \
	eval 'exit_and_err 6 "no space left on the disk of data dir '"'$T/m/moh/data'"': delivery " &&
	      err_has "was not taken (not acknowledged: the broker delivers it again); free some space and run it again" && [ ! -s "$OUT" ]'
rm -f "$T/m/moh/data/fill"
run m-inbox2 "$MNODE" inbox
check "with space freed, it takes its deliveries (df-2 among them): exit 0" \
	eval 'expect 0 && grep -q "\"referralId\":\"df-2\"" "$OUT" || { show "$OUT"; false; }'
stop_broker
