#!/usr/bin/env bash
# audit.sh - the verifiable log end to end: proofs, checkpoints checked with openssl, offline
# verification of store copies and of tampered ones, fork detection, export, statistics.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
TOOLS=$IHALA_BUILD/tests/tools
EX=$IHALA_ROOT/config/examples
PUB=$IHALA_PKI/checkpoint.pub
P=aud-$$

plan 82

# offline NAME ARGS...: ihala without a config.
offline() {
	local name=$1
	shift
	OUT=$T/$name.out ERR=$T/$name.err
	"$IHALA" "$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}
seq_of() { grep -oE '"seq":[0-9]+' "${1:-$OUT}" | head -n1 | cut -d: -f2; }
field() { grep -oE "\"$1\":\"[0-9a-f]*\"" "${2:-$OUT}" | head -n1 | cut -d'"' -f4; }
nlines() { wc -l <"$1" | tr -d ' '; }
# copy NAME: a consistent copy of the live store, as the help tells an auditor to take it.
copy() {
	"$IHALA_BUILD/ihala-broker" --backup "$T/$1" -c "$T/b/broker.conf" >/dev/null
}
with_key() { echo "checkpoint_key = ${2:-$PUB}" >>"$1"; echo "$1"; }

port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(with_key "$(write_client_conf "$T" dma "$port")")
MOH=$(with_key "$(write_client_conf "$T" moh "$port")")
AUD=$(with_key "$(write_client_conf "$T" auditor "$port")")
MOLSA=$(with_key "$(write_client_conf "$T" molsa "$port")")
HI=$(write_client_conf "$T" hi "$port") # no checkpoint_key: checks nothing
unset IHALA_CONFIG
openssl genpkey -algorithm ed25519 -out "$T/other.key" 2>/dev/null
openssl pkey -in "$T/other.key" -pubout -out "$T/other.pub" 2>/dev/null
WRONG=$(with_key "$(write_client_conf "$T/w" dma "$port")" "$T/other.pub")

for sub in prove "audit prove" "audit verify" "audit export" "audit stats"; do
	# shellcheck disable=SC2086
	"$IHALA" $sub --help >"$T/help.out" 2>"$T/help.err"
	RC=$?
	check "ihala $sub --help: exit 0, usage on stdout" \
		eval '[ $RC -eq 0 ] && grep -q "^usage: ihala" "$T/help.out" && grep -q "ihala $sub" "$T/help.out" && [ ! -s "$T/help.err" ]'
done

# The copy for --db: 'mdb_copy -c' writes it with the umask's mode (world-readable under the
# usual 022) and it holds every entry; the help names the broker's private backup instead.
for sub in audit "audit verify" "audit export" "audit stats"; do
	# shellcheck disable=SC2086
	"$IHALA" $sub --help >"$T/help.out" 2>&1
	check "ihala $sub --help: the copy for --db is made by 'ihala-broker --backup', not mdb_copy" \
		eval '! grep -q mdb_copy "$T/help.out" && grep -q "ihala-broker --backup" "$T/help.out" || { show "$T/help.out"; false; }'
done

check "broker starts" start_broker "$T/b"

# --- traffic: 24 referrals dma -> moh, taken by moh, then answers -----------------------------
"$TOOLS/loadgen" submit "$DMA" moh 24 "$P" "$T/receipts" >"$T/loadgen.out" 2>&1
check "24 referrals receipted (clients with checkpoint_key)" eval '[ "$(nlines "$T/receipts")" -eq 24 ]'
"$TOOLS/loadgen" drain "$MOH" 24 3000 "$T/drained" >"$T/drain.out" 2>&1
check "moh took the 24 deliveries" eval '[ "$(nlines "$T/drained")" -eq 24 ]'
sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/$P-R0/" "$EX/outcome.json" >"$T/o.json"
ok_all=1
for cmd in "accept $P-R0" "accept $P-R1" "accept $P-R2" "outcome $P-R0 --file $T/o.json" \
	"decline $P-R3 --reason no-capacity"; do
	# shellcheck disable=SC2086
	run answer "$MOH" $cmd
	[ "$RC" -eq 0 ] || { ok_all=0; diag "moh $cmd: exit $RC"; show "$ERR"; }
done
run cancel "$DMA" cancel "$P-R4" --reason entered-in-error
[ "$RC" -eq 0 ] || { ok_all=0; show "$ERR"; }
check "moh accepts 3, completes 1, declines 1; dma cancels 1" [ "$ok_all" -eq 1 ]
# the writer signs after a commit once 1 s has passed: the next entry gets a checkpoint
sleep 1.2
run note "$MOH" note "$P-R1" --text "last entry"
LAST=$(seq_of)
LEAF=$(field leafHash)
check "a last entry (note): exit 0, seq $LAST" eval 'expect 0 && [ -n "$LAST" ] && [ "$LAST" -eq 55 ]'

# --- prove --------------------------------------------------------------------------------------
run prove-last "$DMA" prove "$LAST" --wait
check "prove SEQ: exit 0, verified JSON" \
	eval 'expect 0 && grep -qE "^\{\"seq\":$LAST,\"treeSize\":$LAST,\"leafHash\":\"[0-9a-f]{64}\",\"root\":\"[0-9a-f]{64}\",\"verified\":true\}$" "$OUT"'
check "prove SEQ: the leaf hash is the one of moh's receipt" eval '[ "$(field leafHash)" = "$LEAF" ]'
ROOT=$(field root)
mseq=$(grep "^$P-3 " "$T/receipts" | cut -d' ' -f2)
run prove-msgid "$DMA" prove "$P-3"
check "prove MESSAGE_ID (dma's own submission): exit 0, its receipted seq" \
	eval 'expect 0 && [ -n "$mseq" ] && [ "$(seq_of)" = "$mseq" ] && out_has "\"verified\":true"'
run prove-audit "$AUD" audit prove 1
check "audit prove 1 as auditor: exit 0, verified" exit_and_out 0 '"seq":1,"treeSize":'
run prove-other "$MOH" prove --message-id "$P-3"
check "prove another agency's message id: exit 1, NOT_FOUND" exit_and_err 1 "refused: NOT_FOUND: "
run prove-far "$DMA" prove 99999
check "prove a seq past the log: exit 1, NOT_FOUND, says the log's size (no 'retry')" \
	eval 'exit_and_err 1 "refused: NOT_FOUND: no entry at seq 99999 that agency '"'dma'"' may see (the log holds " && ! grep -q retry "$ERR"'
run prove-far-audit "$AUD" audit prove 9999
check "audit prove 9999 on a shorter log: exit 1, the log's size" \
	exit_and_err 1 "refused: NOT_FOUND: no entry at seq 9999 that agency 'auditor' may see (the log holds "
# Issue 15, item 9: an entry between dma and moh, asked by molsa (no party to it), gets the
# answer of a seq that does not exist: no stranger learns what is at a seq.
run prove-stranger "$MOLSA" prove 5
check "prove another agency's seq: exit 1, NOT_FOUND" exit_and_err 1 "refused: NOT_FOUND: "
far=$(sed 's/99999/N/g' "$T/prove-far.err" | sed "s/'dma'/'X'/g")
stranger=$(sed 's/seq 5 /seq N /g' "$T/prove-stranger.err" | sed "s/'molsa'/'X'/g")
check "prove another agency's seq: the words of a seq that does not exist" \
	eval '[ "$far" = "$stranger" ] || { diag "past the log: $far"; diag "stranger: $stranger"; false; }'
run prove-wrongkey "$DMA" prove 5 --key "$T/other.pub"
check "prove with another key: exit 5, the checkpoint does not verify" \
	exit_and_err 5 "does not verify with checkpoint key '$T/other.pub'"
run prove-nokey "$HI" prove 5
check "prove without any key: exit 4, says to set checkpoint_key" exit_and_err 4 "checkpoint_key"
run prove-bad "$DMA" prove 0
check "prove 0: exit 2" expect 2
run wrongkey "$WRONG" status "$P-R1"
check "a node with the wrong checkpoint_key: exit 5 when connecting" \
	exit_and_err 5 "does not verify with checkpoint key"

# --- the broker's checkpoint checked by openssl alone -------------------------------------------
check "ihala-broker --backup of the live store" copy copy
check "... is private: data.mdb mode 0600 (mdb_copy -c made it 0644 under umask 022)" \
	test "$(stat -c %a "$T/copy/data.mdb")" = 600
mdb_dump -p -s checkpoint "$T/copy" | sed -n '/^HEADER=END/,/^DATA=END/p' | grep '^ ' |
	tail -n1 | cut -c2- | sed 's/\\\([0-9a-fA-F][0-9a-fA-F]\)/\\x\1/g' >"$T/note.esc"
printf '%b' "$(cat "$T/note.esc")" >"$T/note.txt"
sed '/^$/,$d' "$T/note.txt" >"$T/body.txt"
grep '^— ' "$T/note.txt" | head -n1 | awk '{print $3}' | base64 -d 2>/dev/null | tail -c 64 >"$T/sig.bin"
check "the latest checkpoint (from mdb_dump): origin, size $LAST, root of the proof" \
	eval '[ "$(sed -n 1p "$T/body.txt")" = "ihala.test/log" ] && [ "$(sed -n 2p "$T/body.txt")" = "$LAST" ] &&
	      [ "$(sed -n 3p "$T/body.txt" | base64 -d | od -An -tx1 | tr -d " \n")" = "$ROOT" ]'
openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in "$T/body.txt" -sigfile "$T/sig.bin" \
	>"$T/ossl.out" 2>&1
orc=$?
check "openssl pkeyutl verifies the broker's Ed25519 signature on the note body" \
	eval '[ $orc -eq 0 ] && grep -q "Signature Verified Successfully" "$T/ossl.out"'
sed "2s/.*/$((LAST + 1))/" "$T/body.txt" >"$T/body-bad.txt"
check "openssl refuses the signature over an altered body" \
	eval '! openssl pkeyutl -verify -pubin -inkey "$PUB" -rawin -in "$T/body-bad.txt" -sigfile "$T/sig.bin" >/dev/null 2>&1'

# --- audit verify --------------------------------------------------------------------------------
offline verify audit verify --db "$T/copy" --key "$PUB"
check "audit verify --db COPY: exit 0, stdout one JSON line with the entries and root of the checkpoint" \
	eval 'expect 0 && grep -qxE "\{\"entries\":$LAST,\"root\":\"$ROOT\",\"checkpoints\":[0-9]+,\"origin\":\"ihala.test/log\",\"lastCheckpointSize\":$LAST,\"erasures\":0,\"sealedEntries\":[1-9][0-9]*,\"sealedErased\":0\}" "$OUT" && [ "$(wc -l <"$OUT")" -eq 1 ] || { show "$OUT"; false; }'
check "audit verify --db: the prose on stderr: 'verified N entries', every checkpoint, consistency by recomputation" \
	eval 'err_has "ihala: verified $LAST entries, root $ROOT" && grep -qE "^ihala: verified [0-9]+ checkpoints of .ihala.test/log. \(the last at size $LAST\): signatures valid, roots match the log; consistency" "$ERR"'
check "audit verify --db: the erasures line (none here: nothing was erased; the referrals and notes sealed)" \
	eval 'grep -qE "^ihala: audit verify: $LAST entries, 0 erasure entries, 0 sealed parts erased \(of [1-9][0-9]* entries with a sealed part\)$" "$ERR" || { show "$ERR"; false; }'
run verify-cfg "$AUD" audit verify --db "$T/copy"
check "audit verify --db with the config's checkpoint_key" exit_and_out 0 "{\"entries\":$LAST,\"root\":\"$ROOT\","
offline verify-nokey audit verify --db "$T/copy"
check "audit verify --db without any key: exit 2" exit_and_err 2 "--key PUB.pem"
offline verify-wrongkey audit verify --db "$T/copy" --key "$T/other.pub"
check "audit verify --db with another key: exit 5 (verification failure), names the first checkpoint" \
	exit_and_err 5 "audit verify: checkpoint at size 10: signature does not verify"
offline verify-none audit verify --db "$T/nothing" --key "$PUB"
check "audit verify --db of a missing directory: exit 4, names it and why" \
	eval 'exit_and_err 4 "audit verify: cannot verify the store copy in '"'$T/nothing'"': store: cannot use directory '"'$T/nothing'"': No such file or directory" && ! grep -q "input/output error" "$ERR"'
echo "not a key" >"$T/notkey.pub"
offline verify-notkey audit verify --db "$T/copy" --key "$T/notkey.pub"
check "audit verify --key of a file that is no key: exit 4, names it and why" \
	eval 'exit_and_err 4 "checkpoint public key '"'$T/notkey.pub'"' is not an Ed25519 public key" && ! grep -q "invalid configuration\|LMDB" "$ERR"'
run verify-online-notkey "$AUD" audit verify --key "$T/notkey.pub"
check "audit verify online with a file that is no key: exit 4, names it and why" \
	eval 'exit_and_err 4 "audit verify: cannot use checkpoint key '"'$T/notkey.pub'"': checkpoint public key '"'$T/notkey.pub'"' is not an Ed25519 public key" && ! grep -q "invalid configuration" "$ERR"'
run verify-online "$AUD" audit verify
check "audit verify online (auditor): exit 0, the same JSON and prose" \
	eval 'expect 0 && out_has "{\"entries\":$LAST,\"root\":\"$ROOT\",\"checkpoints\":1," && err_has "ihala: verified $LAST entries, root $ROOT" && err_has "signature valid, root matches the log"'
run verify-dma "$DMA" audit verify
check "audit verify online as dma: exit 1, FORBIDDEN" exit_and_err 1 "FORBIDDEN"

# tampered copies, each named by its first bad seq
copy flip && "$TOOLS/tamper" flip "$T/flip" 17
offline t-flip audit verify --db "$T/flip" --key "$PUB"
check "a flipped byte in entry 17: exit 5, 'seq 17: entry does not match its leaf hash'" \
	exit_and_err 5 "audit verify: seq 17: entry does not match its leaf hash"
check "a flipped byte: nothing on stdout" [ ! -s "$OUT" ]
copy del && "$TOOLS/tamper" delete "$T/del" 9
offline t-del audit verify --db "$T/del" --key "$PUB"
check "entry 9 deleted: exit 5, 'seq 9 missing (log jumps from 8 to 10)'" \
	exit_and_err 5 "audit verify: seq 9 missing (log jumps from 8 to 10)"
copy swap && "$TOOLS/tamper" swap "$T/swap" 30 31
offline t-swap audit verify --db "$T/swap" --key "$PUB"
check "entries 30 and 31 swapped: exit 5, 'seq 30: entry says seq 31'" \
	exit_and_err 5 "audit verify: seq 30: entry says seq 31"
copy dellast && "$TOOLS/tamper" delete "$T/dellast" "$LAST"
offline t-dellast audit verify --db "$T/dellast" --key "$PUB"
check "the last entry deleted: exit 5, the checkpoint covering it names it" \
	exit_and_err 5 "audit verify: seq $LAST missing: a checkpoint of size $LAST covers it"

# --- export --------------------------------------------------------------------------------------
offline exp-jsonl audit export --format jsonl --db "$T/copy"
check "export jsonl --db: exit 0, one line per entry" eval 'expect 0 && [ "$(nlines "$OUT")" -eq "$LAST" ]'
check "export jsonl: lines are {\"seq\":N,\"entry\":{...}} in seq order" \
	eval 'head -n1 "$OUT" | grep -q "^{\"seq\":1,\"entry\":{\"seq\":1," && tail -n1 "$OUT" | grep -q "^{\"seq\":$LAST,"'
offline exp-csv audit export --format csv --db "$T/copy"
check "export csv --db: exit 0, a header and one row per entry" \
	eval 'expect 0 && [ "$(nlines "$OUT")" -eq $((LAST + 1)) ]'
check "export csv: the header, CRLF line ends" \
	eval '[ "$(head -n1 "$OUT")" = "$(printf "seq,time,sender,recipient,kind,message_id,referral_id,status,priority,services,clerk_id\r")" ]'
check "export csv: the first referral's row" \
	eval 'grep -qE "^1,[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z,dma,moh,submission,$P-0,$P-R0,requested,normal,physical-rehabilitation" "$OUT"'
check "export csv: moh's outcome row (completed, services delivered)" \
	eval 'grep -q ",moh,dma,submission,[0-9a-f]*,$P-R0,completed,,physical-rehabilitation;prosthetics-orthotics" "$OUT"'
cp "$OUT" "$T/csv-offline"
run exp-csv-on "$AUD" audit export --format csv
check "export csv online (auditor): the same bytes as offline" \
	eval 'expect 0 && cmp -s "$OUT" "$T/csv-offline"'
run exp-jsonl-on "$AUD" audit export --format jsonl
# the sealed parts themselves ("sealed", "erased") come online only through a libihala whose
# replay passes LogRecord.sealed (ihala_replay_records); the rest is the same bytes
check "export jsonl online: the same as offline (the sealed parts aside)" \
	eval 'expect 0 && cmp -s <(jq -c "del(.sealed, .erased)" "$OUT") <(jq -c "del(.sealed, .erased)" "$T/exp-jsonl.out") && grep -q "\"sealed\":\"" "$T/exp-jsonl.out" || { show "$OUT"; false; }'
offline exp-bad audit export --format xml --db "$T/copy"
check "export --format xml: exit 2" exit_and_err 2 "invalid --format 'xml'"
offline exp-nofmt audit export --db "$T/copy"
check "export without --format: exit 2" exit_and_err 2 "--format jsonl|csv is required"
run exp-dma "$DMA" audit export --format csv
check "export online as dma: exit 1, FORBIDDEN" exit_and_err 1 "FORBIDDEN"

# --- stats ----------------------------------------------------------------------------------------
offline stats audit stats --db "$T/copy"
check "stats --db: exit 0, one JSON object with $LAST entries" \
	eval 'expect 0 && [ "$(nlines "$OUT")" -eq 1 ] && out_has "{\"entries\":$LAST,"'
# moh's 24 acks are the 24 'received' statuses (each records its delivery: PROTOCOL.md §7.3).
check "stats: entries by kind (31 submissions, 24 broker statuses that record the deliveries)" \
	out_has '"entriesByKind":{"submission":31,"broker-status":24}'
check "stats: 24 referrals by status" \
	out_has '"referrals":24,"byStatus":{"requested":0,"received":19,"accepted":2,"declined":1,"in-progress":0,"on-hold":0,"completed":1,"failed":0,"cancelled":1}'
check "stats: by agency pair" \
	out_has '"byAgencyPair":[{"from":"dma","to":"moh","referrals":24,"byStatus":{"received":19,"accepted":2,"declined":1,"completed":1,"cancelled":1}}]'
check "stats: time to accept (3) and to complete (1), median and p90" \
	eval 'grep -qE "\"timeToAccept\":\{\"count\":3,\"medianMs\":[0-9]+,\"p90Ms\":[0-9]+\},\"timeToComplete\":\{\"count\":1,\"medianMs\":[0-9]+,\"p90Ms\":[0-9]+\}" "$OUT"'
check "stats: overdue none; outcomes by service" \
	out_has '"overdue":{"marked":0,"open":0},"outcomesByService":{"physical-rehabilitation":{"outcomes":1,"implemented":1,"successful":1,"unsuccessful":0},"prosthetics-orthotics":{"outcomes":1,"implemented":1,"successful":1,"unsuccessful":0}}}'
cp "$OUT" "$T/stats-offline"
run stats-on "$AUD" audit stats
check "stats online (auditor): the same as offline" eval 'expect 0 && cmp -s "$OUT" "$T/stats-offline"'

# --- a broker on another history is refused by a node that kept a checkpoint -----------------------
INCONS="the broker's log is inconsistent with checkpoint of size $LAST this node saw: forked or rewritten history"
stop_broker
# (a) a new empty data dir: no checkpoint at all
write_broker_conf "$T/b2" "$port"
check "broker restarted on an empty data dir" start_broker "$T/b2"
run fork-empty "$DMA" status "$P-R1"
check "dma (kept size $LAST) against it: exit 5, inconsistent log" exit_and_err 5 "$INCONS"
check "... the reason: the broker has no signed checkpoint" err_has "the broker has no signed checkpoint"
run fork-hi "$HI" inbox
check "a node without checkpoint_key is not checked (documented): exit 0" expect 0
X=$(write_client_conf "$T/x" dma "$port")
run fork-x1 "$X" refer --to moh --file "$EX/referral.json"
sleep 1.2
mkref_x() { sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/x-$1/" "$EX/referral.json" >"$T/x-$1.json"; }
mkref_x 2 && run fork-x2 "$X" refer --to moh --file "$T/x-2.json"
wait_for 5 grep -q 'checkpoint signed at tree size 2' "$T/b2/broker.log"
run fork-small "$DMA" status "$P-R1"
check "the new broker signed size 2: dma refuses it, exit 5" \
	eval 'exit_and_err 5 "$INCONS" && err_has "the broker'"'"'s checkpoint has size 2"'
stop_broker
# (b) a rewritten history of more entries, correctly signed with the broker's own key
write_broker_conf "$T/b3" "$port"
"$TOOLS/tamper" synth "$T/b3/data" $((LAST + 40)) "$IHALA_PKI/checkpoint.key" ihala.test/log 10 \
	>"$T/synth3.out" 2>&1
check "broker started on a rewritten, re-signed history of $((LAST + 40)) entries" start_broker "$T/b3"
run fork-rewrite "$DMA" status "$P-R1"
check "dma against it: exit 5, no consistency proof from its checkpoint" \
	eval 'exit_and_err 5 "$INCONS" && err_has "no valid consistency proof from it to the broker'"'"'s checkpoint of size $((LAST + 40))"'
run fork-rewrite-prove "$DMA" prove 3
check "prove against it: exit 5 as well, nothing printed" eval 'exit_and_err 5 "$INCONS" && [ ! -s "$OUT" ]'
stop_broker
# (c) the genuine broker again: consistent, and a newer checkpoint is proven consistent
check "the genuine broker restarted" start_broker "$T/b"
run back "$DMA" status "$P-R1"
check "dma against the genuine broker: exit 0" expect 0
mkref_x 3 && run more "$DMA" refer --to moh --file "$T/x-3.json"
sleep 1.2
mkref_x 4 && run more2 "$DMA" refer --to moh --file "$T/x-4.json"
NEW=$(seq_of)
run prove-new "$DMA" prove "$NEW" --wait
check "prove after more traffic: exit 0, a larger tree consistent with the kept checkpoint" \
	eval 'expect 0 && out_has "\"treeSize\":$NEW," && [ "$NEW" -gt "$LAST" ]'
run back2 "$MOH" status "$P-R1"
check "moh (kept an older checkpoint) checks the consistency proof at connect: exit 0" expect 0
run verify-new "$AUD" audit verify
check "audit verify online after the restart: exit 0, $NEW entries" exit_and_out 0 "{\"entries\":$NEW,"
run inbox-moh "$MOH" inbox
check "moh's inbox after its checks: the two referrals made since" \
	eval 'expect 0 && out_has "\"referralId\":\"x-3\"" && out_has "\"referralId\":\"x-4\""'

# --- speed of the offline verifier on a larger store ------------------------------------------------
BIG=100000
"$TOOLS/tamper" synth "$T/big" "$BIG" "$IHALA_PKI/checkpoint.key" ihala.test/log 1000 >"$T/synth.out" 2>&1
offline big audit verify --db "$T/big" --key "$PUB"
check "audit verify --db of a synthetic store of $BIG entries: exit 0" \
	exit_and_out 0 "{\"entries\":$BIG,"
rate=$(grep -oE '[0-9]+ entries in [0-9.]+ s \([0-9]+ entries/s\)' "$ERR")
diag "measured: verify $rate"
check "the verifier reports its rate" [ -n "$rate" ]
