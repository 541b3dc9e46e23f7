#!/usr/bin/env bash
# rollback.sh - a broker whose store is rolled back (data.mdb replaced by a copy taken earlier)
# after the nodes have seen, and kept, a larger signed checkpoint: every node configured with
# checkpoint_key refuses to go on (exit 5) with a message naming both sizes, again on every
# run, and still when the rolled-back broker's log has since grown past the kept size (no
# consistency proof can join them). A node without checkpoint_key is served (documented: it
# checks nothing). With the genuine store back, the nodes go on.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
LG=$IHALA_BUILD/tests/tools/loadgen
EX=$IHALA_ROOT/config/examples
PUB=$IHALA_PKI/checkpoint.pub

plan 22

with_key() { echo "checkpoint_key = $PUB" >>"$1"; echo "$1"; }
# The size of the last checkpoint the broker signed (logged at debug level).
last_ckpt() {
	grep -o 'checkpoint signed at tree size [0-9]*' "$T/broker.log" | tail -n 1 | awk '{print $NF}'
}
mkref() { sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/rb-$1/" "$EX/referral.json" >"$T/rb-$1.json"; }

port=$(free_port)
write_broker_conf "$T" "$port"
DMA=$(with_key "$(write_client_conf "$T" dma "$port")")
MOH=$(with_key "$(write_client_conf "$T" moh "$port")")
AUD=$(with_key "$(write_client_conf "$T" auditor "$port")")
X=$(write_client_conf "$T/x" dma "$port") # dma's other node, no checkpoint_key: checks nothing

# --- the broker at size B: stopped (it signs its whole log at exit), backed up ----------------
start_broker "$T" || { not_ok "broker starts"; exit 1; }
$LG submit "$DMA" moh 20 A "$T/receipts" >"$T/a.out" 2>&1
stop_broker
B=$(last_ckpt)
"$IHALA_BUILD/ihala-broker" --backup "$T/backup" -c "$T/broker.conf" >"$T/backup.out" 2>&1
check "20 referrals receipted; the store backed up with its checkpoint of size $B" \
	eval '[ "$(wc -l <"$T/receipts")" -eq 20 ] && [ "${B:-0}" -ge 20 ] && [ -s "$T/backup/data.mdb" ]'

# --- the genuine broker goes on to size L; every node keeps that checkpoint -------------------
start_broker "$T" || { not_ok "broker restarts"; exit 1; }
$LG submit "$DMA" moh 30 B "$T/receipts" >"$T/b.out" 2>&1
stop_broker
L=$(last_ckpt)
start_broker "$T" || { not_ok "broker restarts"; exit 1; }
ok_all=1
for n in DMA MOH; do
	run "kept-$n" "${!n}" status A-R0
	[ "$RC" -eq 0 ] || { ok_all=0; diag "$n: exit $RC"; show "$ERR"; }
done
run kept-aud "$AUD" audit verify
[ "$RC" -eq 0 ] || { ok_all=0; diag "auditor: exit $RC"; show "$ERR"; }
check "50 receipted; dma, moh and the auditor (checkpoint_key) keep the checkpoint of size $L" \
	eval '[ $ok_all -eq 1 ] && [ "$(wc -l <"$T/receipts")" -eq 50 ] && [ "${L:-0}" -gt "$B" ]'
stop_broker

# --- rolled back: the backup's data.mdb in place of the live one -----------------------------
mv "$T/data/data.mdb" "$T/data.mdb.genuine"
install -m 600 "$T/backup/data.mdb" "$T/data/data.mdb"
start_broker "$T" || { not_ok "the broker starts on the rolled-back store"; exit 1; }
ok "the broker starts on the rolled-back store (it cannot know)"

ROLLED="the broker's log is inconsistent with checkpoint of size $L this node saw: forked or rewritten history (the broker's checkpoint has size $B: its log lost the entries after that, as when its store is rolled back to an older copy)"
run rb-dma "$DMA" status A-R0
check "dma (kept size $L) against the broker at size $B: exit 5, the message names both sizes" \
	exit_and_err 5 "ihala: cannot connect to tcp://127.0.0.1:$port: INCONSISTENT_LOG: $ROLLED"
check "... and prints nothing on stdout" test ! -s "$OUT"
run rb-dma2 "$DMA" status A-R0
check "dma again: still exit 5 (the kept checkpoint is not replaced by the smaller one)" \
	exit_and_err 5 "$ROLLED"
mkref 1
run rb-refer "$DMA" refer --to moh --file "$T/rb-1.json"
check "dma refer: exit 5" exit_and_err 5 "$ROLLED"
run rb-outbox "$DMA" --json outbox
check "... nothing queued in dma's outbox" eval 'grep -qF "{\"waiting\":0," "$OUT" || { show "$OUT"; false; }'
run rb-moh "$MOH" inbox
check "moh inbox: exit 5, no delivery taken" eval 'exit_and_err 5 "$ROLLED" && [ ! -s "$OUT" ]'
run rb-aud "$AUD" audit verify
check "auditor audit verify online: exit 5" exit_and_err 5 "$ROLLED"
check "the node logs it as a security event" grep -q "security" "$T/rb-dma.err"
run rb-x "$X" status rb-1
check "... nor sent: the rolled-back broker has no referral rb-1 (exit 1)" \
	exit_and_err 1 "refused: UNKNOWN_REFERRAL"
run rb-x2 "$X" status A-R0
check "a node without checkpoint_key is not checked (documented): served, exit 0" expect 0

# --- the rolled-back broker grows past L: its checkpoints cannot extend the kept one ----------
$LG submit "$X" moh $((L - B + 10)) X "$T/receipts.x" >"$T/x.out" 2>&1
stop_broker
G=$(last_ckpt)
start_broker "$T" || { not_ok "the rolled-back broker restarts"; exit 1; }
check "the rolled-back broker took $((L - B + 10)) more referrals (from dma's other node): size $G > $L" \
	eval '[ "${G:-0}" -gt "$L" ]'
run rb-grown "$DMA" status A-R0
check "dma against it: exit 5, no consistency proof from size $L to size $G" \
	exit_and_err 5 "the broker's log is inconsistent with checkpoint of size $L this node saw: forked or rewritten history (no valid consistency proof from it to the broker's checkpoint of size $G)"
run rb-grown-moh "$MOH" inbox
check "moh inbox: exit 5, none of the rolled-back broker's deliveries taken" \
	eval 'exit_and_err 5 "of size $L this node saw" && [ ! -s "$OUT" ]'
run rb-grown-aud "$AUD" audit verify
check "auditor audit verify online: exit 5" exit_and_err 5 "of size $L this node saw"
run rb-grown-prove "$DMA" prove 3
check "dma prove 3: exit 5, nothing printed" eval 'exit_and_err 5 "of size $L this node saw" && [ ! -s "$OUT" ]'
stop_broker

# --- the genuine store back: the nodes go on ----------------------------------------------
mv "$T/data.mdb.genuine" "$T/data/data.mdb"
start_broker "$T" || { not_ok "the broker restarts on the genuine store"; exit 1; }
ok "the broker restarts on the genuine store"
run back-dma "$DMA" status A-R0
check "dma against the genuine store: exit 0" expect 0
run back-refer "$DMA" refer --to moh --file "$T/rb-1.json"
check "dma's refer refused by the rolled-back broker goes now: exit 0" expect 0

run back-aud "$AUD" audit verify
check "auditor audit verify online: exit 0" expect 0
stop_broker
