#!/usr/bin/env bash
# node.sh - one agency node in daily use (issue 17): a refused message never jams it, several
# ihala processes use it at once, an unreachable broker is said, a query follows the outbox.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala

plan 35

out_lacks() { ! grep -qF -- "$1" "$OUT" || { diag "stdout has: $1"; show "$OUT"; return 1; }; }

# mkref FILE ID: a small valid referral from dma to moh.
mkref() {
	cat >"$1" <<JSON
{"referralId":"$2","priority":"normal","services":["prosthetics-orthotics"],
 "survivor":{"caseId":"IQ-NIN-$2","name":"نور الهدى خلف حسن","birthYear":1996},
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","agencies":["moh","hi"],
            "dataCovered":["identity","demographics","needs"]}}
JSON
}

port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
unset IHALA_CONFIG

# --- item 4: an unreachable broker is said after about a second, --timeout holds -------------
start=$(date +%s%N)
run unreach "$DMA" --timeout 2500ms status nothing-yet
took=$((($(date +%s%N) - start) / 1000000))
check "unreachable: 'connecting to ... (retrying)' on stderr" \
	err_has "ihala: connecting to tcp://127.0.0.1:$port (retrying)"
check "unreachable: exit 3 within the --timeout (took ${took} ms)" \
	eval 'expect 3 && [ "$took" -lt 4500 ]'
run unreach-q "$DMA" -q --timeout 1500ms status nothing-yet
check "unreachable with -q: exit 3, no 'connecting' line" \
	eval 'expect 3 && ! grep -q "connecting to" "$ERR"'

# --- item 5: a query goes after the outbox -----------------------------------------------------
R5=race-$$
mkref "$T/r5.json" "$R5"
run queue5 "$DMA" --timeout 500ms refer --to moh --file "$T/r5.json" --message-id "msg-$R5"
check "refer, broker down: exit 3, kept in the outbox" exit_and_err 3 "kept in the outbox"
check "broker starts" start_broker "$T/b"
run status5 "$DMA" status "$R5"
check "status of the referral that waited in the outbox: found at once (outbox first)" \
	exit_and_out 0 "\"referralId\":\"$R5\""
run outbox5 "$DMA" outbox --json
check "outbox then empty" exit_and_out 0 '{"waiting":0,"sent":0,"left":0}'

# --- item 1: an oversized referral never jams the node ---------------------------------------
# Every field within its own limit (64 KiB strings), the personal fields together over what
# one sealed part may hold (512 KiB).
RB=big-$$
X=$(head -c 60000 </dev/zero | tr '\0' x)
{
	printf '{"referralId":"%s","priority":"normal","services":["prosthetics-orthotics"],' "$RB"
	printf '"reason":"%s","notes":"%s",' "$X" "$X"
	printf '"referringOfficer":{"name":"%s","organisation":"%s","phone":"%s","email":"%s"},' "$X" "$X" "$X" "$X"
	printf '"survivor":{"caseId":"IQ-NIN-1","name":"%s","governorate":"%s","district":"%s"},' "$X" "$X" "$X"
	printf '"consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","agencies":["moh"],'
	printf '"dataCovered":["identity","location","needs"]}}\n'
} >"$T/big.json"
run big "$DMA" refer --to moh --file "$T/big.json" --message-id "msg-$RB"
check "oversized referral: refused here at once, exit 1, says why (the sealed part's limit)" \
	eval 'exit_and_err 1 "refused: TOO_LARGE: message msg-$RB was not sealed: content of " &&
		err_has "bytes is over the 524288 bytes a sealed part holds"'
run list0 "$DMA" outbox --json
check "oversized referral: nothing was queued, nor kept as rejected (no sealed form of it exists)" \
	eval 'expect 0 && out_lacks "msg-$RB"'
R6=after-$$
mkref "$T/r6.json" "$R6"
run after "$DMA" refer --to moh --file "$T/r6.json" --message-id "msg-$R6"
check "the next referral goes through" exit_and_out 0 '"status":"accepted"'
# A refusal of the broker's is final: the message leaves the outbox for the rejected list.
RB=$R6
run again "$DMA" refer --to moh --file "$T/r6.json" --message-id "msg-$RB-again"
check "the same referral id again: refused by the broker, REFERRAL_EXISTS, exit 1" \
	exit_and_err 1 "refused: REFERRAL_EXISTS"
RB=$R6-again
run status6 "$DMA" status "$R6"
check "status works on the node" exit_and_out 0 "\"referralId\":\"$R6\""
run inbox6 "$MOH" inbox
check "moh receives the valid referral" exit_and_out 0 "\"referralId\":\"$R6\""
run list "$DMA" outbox --json
check "ihala outbox: nothing waits, exit 0" exit_and_out 0 '{"waiting":0,"sent":0,"left":0}'
check "ihala outbox: the refused one is listed as rejected with its reason" \
	eval 'grep "\"messageId\":\"msg-$RB\"" "$OUT" | grep "\"state\":\"rejected\"" | grep "\"referralId\":\"$R6\"" | grep -q "\"error\":\"REFERRAL_EXISTS\""'
run table "$DMA" outbox
check "ihala outbox (not a terminal): JSON lines" eval 'expect 0 && ! grep -qv "^{" "$OUT"'
# on a terminal (script(1)): a table for people, the rejection time local, columns aligned
TZ=Asia/Baghdad script -qec "$(printf '%q ' "$IHALA" --config "$DMA" outbox)" /dev/null </dev/null 2>/dev/null |
	tr -d '\r' >"$T/table.tty"
check "ihala outbox on a terminal: a table, the rejected one with its local time and reason" \
	eval 'grep -q "^STATE  *MESSAGE ID  *KIND  *REFERRAL  *REJECTED  *REASON$" "$T/table.tty" &&
		grep -qE "^rejected  *msg-$RB  *referral  *$R6  *[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}  *REFERRAL_EXISTS: " "$T/table.tty" &&
		[ "$(grep -m1 "^STATE" "$T/table.tty" | awk "{print index(\$0, \"REASON\")}")" = "$(grep -m1 "^rejected" "$T/table.tty" | awk "{print index(\$0, \"REFERRAL_EXISTS\")}")" ] ||
		{ show "$T/table.tty"; false; }'
run retry "$DMA" outbox --retry "msg-$RB"
check "outbox --retry: refused again, exit 1, still rejected" \
	eval 'exit_and_err 1 "refused: REFERRAL_EXISTS" && grep -q "\"messageId\":\"msg-$RB\".*\"rejected\"" "$OUT"'
run drop "$DMA" outbox --drop "msg-$RB"
check "outbox --drop: exit 0" expect 0
run list2 "$DMA" outbox
check "outbox after --drop: the rejected one is gone" eval 'expect 0 && out_lacks "msg-$RB"'
run drop2 "$DMA" outbox --drop "msg-$RB"
check "outbox --drop of an unknown id: exit 2, says so" exit_and_err 2 "no message 'msg-$RB'"
check "broker: no session ended for a frame too large, no TLS garbage" \
	eval '! grep -q "frame larger than\|bad record type" "$T/b/broker.log"'

# A final refusal from the broker (not only the size) leaves the outbox at once too.
R7=dup-$$
sed "s/$R6/$R6/" "$T/r6.json" >"$T/r7.json"
run exists "$DMA" refer --to moh --file "$T/r7.json" --message-id "msg-$R7"
check "refer an existing referral id: exit 1, REFERRAL_EXISTS" exit_and_err 1 "refused: REFERRAL_EXISTS"
run list3 "$DMA" outbox --json
check "the refused one is rejected, not waiting; exit 0" \
	eval 'exit_and_out 0 "{\"waiting\":0," && grep "\"messageId\":\"msg-$R7\"" "$OUT" | grep -q "\"error\":\"REFERRAL_EXISTS\""'

# --- item 2: several ihala processes of one node at once --------------------------------------
bg "$IHALA" --config "$MOH" inbox --watch --exec "cat >>\"$T/watch.json\"" >"$T/watch.out" 2>"$T/watch.err"
WPID=$LAST_PID
R8=multi-$$
mkref "$T/r8.json" "$R8"
run refer8 "$DMA" refer --to moh --file "$T/r8.json"
check "a referral for the watching moh node" expect 0
check "inbox --watch --exec runs it" wait_for 10 grep -q "\"referralId\":\"$R8\"" "$T/watch.json"
run accept8 "$MOH" accept "$R8"
check "accept on the node while inbox --watch runs: exit 0" exit_and_out 0 '"status":"accepted"'
run status8 "$MOH" status "$R8"
check "status on the node while inbox --watch runs: exit 0, accepted" \
	exit_and_out 0 '"status":"accepted"'
run inbox8 "$MOH" inbox
check "a second inbox while one watches: exit 4, says another process takes the deliveries" \
	exit_and_err 4 "another ihala process takes this node's deliveries"
R9=multi2-$$
mkref "$T/r9.json" "$R9"
run refer9 "$DMA" refer --to moh --file "$T/r9.json"
check "the watcher still gets the next delivery" wait_for 10 grep -q "\"referralId\":\"$R9\"" "$T/watch.json"
check "inbox --watch still running, nothing on its stderr" eval 'kill -0 "$WPID" && [ ! -s "$T/watch.err" ]'

# --- two nodes of one agency (two moh offices, each its own data dir) -------------------------
kill -TERM "$WPID"
wait "$WPID" 2>/dev/null
MOH2=$(write_client_conf "$T/office2" moh "$port")
R10=office-$$
mkref "$T/r10.json" "$R10"
run refer10 "$DMA" refer --to moh --file "$T/r10.json"
check "a referral for moh while no moh inbox runs" expect 0
run status10 "$MOH2" status "$R10"
check "office 2: status works (its session may be the one the broker delivers to)" \
	exit_and_out 0 "\"referralId\":\"$R10\""
run inbox10 "$MOH" inbox
check "office 1: its inbox takes the delivery" exit_and_out 0 "\"referralId\":\"$R10\""
run inbox10b "$MOH2" inbox
check "office 2: its inbox never shows what office 1 took" eval 'expect 0 && out_lacks "$R10"'
