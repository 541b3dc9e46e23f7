#!/usr/bin/env bash
# core.sh - durable store-and-forward against a real broker: offline recipient across a broker
# restart, exactly-once after a lost receipt, kill -9 during a stream, queue limit, real LMDB.
. "$(dirname "$0")/lib.sh"
LG=$IHALA_BUILD/tests/tools/loadgen
plan 26

port=$(free_port)
write_broker_conf "$T" "$port" "
[limits]
queue_limit = 30
queue_share = 100"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")
molsa=$(write_client_conf "$T" molsa "$port")
start_broker "$T" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

# 1. DMA refers to an offline MoH; the broker restarts; MoH gets exactly those, in order.
check "dma submits 10 referrals to offline moh" $LG submit "$dma" moh 10 A "$T/a.receipts"
stop_broker
start_broker "$T"
$LG drain "$moh" 0 1500 "$T/moh1.out" >/dev/null
want=$(awk '{print $2" "$1}' "$T/a.receipts")
got=$(awk '{print $1" "$2}' "$T/moh1.out")
if [ "$want" = "$got" ]; then ok "moh receives exactly those 10, in seq order, after the restart"
else not_ok "moh receives exactly those 10, in seq order"; diag "want: $want"; diag "got: $got"; fi
$LG drain "$moh" 0 1000 "$T/moh2.out" >/dev/null
check "after its acks a new session receives nothing again" test ! -s "$T/moh2.out"
# moh's acks made the referrals 'received', which DMA hears about.
$LG drain "$dma" 0 1500 "$T/dma.out" >/dev/null
check "dma hears 'received' for each of its 10 referrals" test "$(grep -c ' -$' "$T/dma.out")" -eq 10

# 2. A receipt that never reached its sender: the re-send is logged once.
$LG submit "$dma" moh 1 B "$T/b1.receipts" >/dev/null
$LG submit "$dma" moh 1 B "$T/b2.receipts" >/dev/null
check "a re-sent message id gets the original seq" cmp -s "$T/b1.receipts" "$T/b2.receipts"
check "... and is in the log once" $LG check "$T/data" "$T/b1.receipts" dma

# 2b. Another agency's message id: dedup is per sender, so moh reusing DMA's id "A-0" is moh's
#     own new message; it neither gets DMA's receipt nor touches DMA's entry.
printf '{"messageId":"A-0","note":{"referralId":"A-R0"}}' >"$T/steal.json"
out=$("$IHALA_BUILD/tests/tools/envsubmit" "$moh" "$T/steal.json" 2>/dev/null)
dmaseq=$(awk '$1 == "A-0" {print $2}' "$T/a.receipts")
check "another agency's message id is logged as that agency's own (seq ${out#accepted } != $dmaseq)" \
	test "$out" != "accepted $dmaseq" -a "${out%% *}" = accepted
check "... and DMA's message A-0 is still in the log exactly once" $LG check "$T/data" "$T/a.receipts" dma

# 3. kill -9 of the broker during a stream of submissions.
bg $LG submit "$dma" molsa 25 C "$T/c.receipts"
lgpid=$LAST_PID
sleep 0.4
kill_broker
sleep 0.3
start_broker "$T"
wait "$lgpid"
check "the sender gets receipts for all 25 across a kill -9" test "$(wc -l <"$T/c.receipts")" -eq 25
check "every receipted message is in the log exactly once" $LG check "$T/data" "$T/c.receipts" dma

# 4. Queue limit: molsa is offline with 25 queued; limit 30.
$LG submit "$dma" molsa 10 D "$T/d.receipts" >"$T/d.out" 2>"$T/d.err"
check "past the queue limit the sender is refused with QUEUE_FULL" grep -q "queue of 'molsa' is full (queue_limit 30 undelivered entries)" "$T/d.err"
check "... and the refusal shows the limit, not the recipient's backlog" \
	bash -c "! grep -E 'full \\([0-9]+ undelivered' '$T/d.err'"
check "other traffic continues (moh still accepts)" $LG submit "$dma" moh 2 E "$T/e.receipts"

# 5. Real LMDB files, readable by the stock tools.
check "mdb_stat reads the store" mdb_stat -a "$T/data"
check "mdb_dump dumps the log" mdb_dump -s log "$T/data" -f "$T/log.dump"

# 6. SIGTERM: stops accepting, finishes the commit in flight, sends its receipts, exits 0.
bg $LG submit "$dma" hi 25 G "$T/g.receipts"
lgpid=$LAST_PID
sleep 0.3
kill -TERM "$BROKER_PID"
wait "$BROKER_PID"
rc=$?
check "SIGTERM during a stream: the broker exits 0" test "$rc" -eq 0
check "... and says it stopped cleanly" grep -q "stopped cleanly" "$T/broker.log"
start_broker "$T"
wait "$lgpid"
check "the sender gets all 25 receipts across the shutdown" test "$(wc -l <"$T/g.receipts")" -eq 25
check "each of them is in the log exactly once" $LG check "$T/data" "$T/g.receipts" dma
stop_broker

# 7. Store full: a 1 MiB map without growth. Submissions are refused with a clear error;
#    deliveries and queries go on; nothing receipted is lost.
F=$T/full
port2=$(free_port)
write_broker_conf "$F" "$port2"
sed -i 's/^\[broker\]$/[broker]\nmap_size = 1M\nauto_grow = no/' "$F/broker.conf"
dma2=$(write_client_conf "$F" dma "$port2")
moh2=$(write_client_conf "$F" moh "$port2")
start_broker "$F"
$LG submit "$dma2" moh 3000 F "$F/f.receipts" >/dev/null 2>"$F/f.err"
n=$(wc -l <"$F/f.receipts")
diag "store full after $n receipted submissions"
check "a full store refuses submissions with STORE_FULL's sentence" grep -q "store is full" "$F/f.err"
$LG drain "$moh2" 0 1500 "$F/moh.out" >/dev/null
check "deliveries go on: moh receives all $n receipted referrals" test "$(grep -vc ' -$' "$F/moh.out")" -eq "$n"
check "queries go on: status of the first referral answers" "$IHALA_BUILD/ihala" --config "$dma2" status F-R0

# 8. Seqs queued by a broker from before queue tags (an upgraded store): the broker decodes
#    their entries instead, so the first ack still makes each referral received.
stop_broker
U=$T/untag
port3=$(free_port)
write_broker_conf "$U" "$port3"
dma3=$(write_client_conf "$U" dma "$port3")
moh3=$(write_client_conf "$U" moh "$port3")
start_broker "$U"
$LG submit "$dma3" moh 5 U "$U/u.receipts" >/dev/null 2>"$U/u.err"
stop_broker
check "the 5 queued seqs lose their tags (tamper untag)" \
	eval '"$IHALA_BUILD/tests/tools/tamper" untag "$U/data" | grep -qx "# untag: 5 queued seqs lost their tag"'
start_broker "$U"
$LG drain "$moh3" 5 3000 "$U/moh.out" >/dev/null 2>&1
check "moh takes the 5 untagged deliveries" test "$(grep -vc ' -$' "$U/moh.out")" -eq 5
all_received() {
	local i
	for i in 0 1 2 3 4; do
		"$IHALA_BUILD/ihala" --config "$dma3" status "U-R$i" |
			grep -q '"status":"received","what":"received"' || return 1
	done
}
check "each is 'received' for dma all the same" all_received
stop_broker
