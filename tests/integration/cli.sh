#!/usr/bin/env bash
# cli.sh - the ihala tool against a real broker: each subcommand's success, refusals, exit codes.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
EX=$IHALA_ROOT/config/examples
ARABIC_NAME='نور الهدى خلف حسن'
KURDISH_NOTE='نەخۆشەکە سەردانی نەخۆشخانەی کرد'

plan 145

# expect CODE: the last run exited CODE (shows its output when not).
# err_has TEXT / out_has TEXT: fixed string in the last run's stderr / stdout.
out_lacks() { ! grep -qF -- "$1" "$OUT" || { diag "stdout has: $1"; show "$OUT"; return 1; }; }
# exit_and_err CODE TEXT: both at once, one test.
# The seq of the receipt the last run printed.
seq_of() { grep -oE '"seq":[0-9]+' "${1:-$OUT}" | head -n1 | cut -d: -f2; }
# Lines of stdout.
lines() { grep -c . "$OUT"; }

# mkref FILE ID [CONSENT-JSON]: a small valid referral (consent for moh and hi by default,
# covering what it carries: identity, demographics, needs).
mkref() {
	local consent=${3-'{"given":true,"givenBy":"survivor","date":"2024-04-02","agencies":["moh","hi"],"dataCovered":["identity","demographics","needs"]}'}
	cat >"$1" <<JSON
{"referralId":"$2","priority":"normal","services":["prosthetics-orthotics"],
 "survivor":{"caseId":"IQ-NIN-$2","name":"$ARABIC_NAME","birthYear":1996},
 "consent":$consent}
JSON
}

# --- no broker needed -------------------------------------------------------------------
port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
HI=$(write_client_conf "$T" hi "$port")
AUD=$(write_client_conf "$T" auditor "$port")
unset IHALA_CONFIG

"$IHALA" --help >"$T/help.out" 2>&1
RC=$?
check "ihala --help: exit 0, lists the exit codes" \
	eval '[ $RC -eq 0 ] && grep -q "^Exit codes" "$T/help.out" && grep -q "5  verification" "$T/help.out" && grep -q "6  no space left on the disk" "$T/help.out"'
for sub in refer accept decline progress outcome cancel note erase inbox status outbox audit "audit replay"; do
	# shellcheck disable=SC2086
	"$IHALA" $sub --help >"$T/help.out" 2>"$T/help.err"
	RC=$?
	check "ihala $sub --help: exit 0, usage on stdout" \
		eval '[ $RC -eq 0 ] && head -n1 "$T/help.out" | grep -q "^usage: ihala $sub" && [ ! -s "$T/help.err" ]'
done
"$IHALA" help decline >"$T/help.out" 2>&1
check "ihala help decline: lists the reason codes" grep -q 'not-eligible, no-capacity' "$T/help.out"
"$IHALA" help erase >"$T/help.out" 2>&1
check "ihala help erase: the three reasons an erasure may give, no other" \
	eval 'grep -qx "CODE is a reason code: consent-withdrawn, entered-in-error, other" "$T/help.out" || { show "$T/help.out"; false; }'

"$IHALA" frobnicate >"$T/o" 2>"$T/e"
RC=$?
check "unknown command: exit 2, named" eval '[ $RC -eq 2 ] && grep -qF "unknown command '"'frobnicate'"'" "$T/e"'
"$IHALA" acept R-1 >"$T/o" 2>"$T/e"
RC=$?
check "a mistyped command: exit 2, did you mean 'accept'?" \
	eval '[ $RC -eq 2 ] && grep -qF "unknown command '"'acept'"' (did you mean '"'accept'"'?)" "$T/e"'
"$IHALA" audit verfy >"$T/o" 2>"$T/e"
RC=$?
check "a mistyped audit subcommand: exit 2, did you mean 'verify'?" \
	eval '[ $RC -eq 2 ] && grep -qF "(did you mean '"'verify'"'?)" "$T/e"'
"$IHALA" --config "$DMA" refer --too moh --file x.json >"$T/o" 2>"$T/e"
RC=$?
check "a mistyped option: exit 2, did you mean '--to'?" \
	eval '[ $RC -eq 2 ] && grep -qF "refer: unknown option '"'--too'"' (did you mean '"'--to'"'?)" "$T/e"'
"$IHALA" --jsn list >"$T/o" 2>"$T/e"
RC=$?
check "a mistyped global option: exit 2, did you mean '--json'?" \
	eval '[ $RC -eq 2 ] && grep -qF "unknown option '"'--jsn'"' (did you mean '"'--json'"'?)" "$T/e"'
"$IHALA" --config "$DMA" accept >"$T/o" 2>"$T/e"
RC=$?
check "accept without REFERRAL_ID: exit 2" eval '[ $RC -eq 2 ] && grep -q "REFERRAL_ID is missing" "$T/e"'
"$IHALA" --config "$DMA" accept r1 --bogus >"$T/o" 2>"$T/e"
RC=$?
check "unknown subcommand option: exit 2, named" eval '[ $RC -eq 2 ] && grep -qF "unknown option '"'--bogus'"'" "$T/e"'
"$IHALA" --timeout soon status r1 >"$T/o" 2>"$T/e"
RC=$?
check "bad --timeout: exit 2" eval '[ $RC -eq 2 ] && grep -qF "invalid --timeout '"'soon'"'" "$T/e"'
# the duration syntax of the config files: a unit is required
"$IHALA" --timeout 5 status r1 >"$T/o" 2>"$T/e"
RC=$?
check "--timeout without a unit: exit 2, as in a config file" \
	eval '[ $RC -eq 2 ] && grep -qF "invalid --timeout '"'5'"'" "$T/e"'
"$IHALA" status r1 >"$T/o" 2>"$T/e"
RC=$?
check "no config: exit 2, says --config or IHALA_CONFIG" \
	eval '[ $RC -eq 2 ] && grep -q "use --config FILE or set IHALA_CONFIG" "$T/e"'
printf '[client]\nbrokr = tcp://127.0.0.1:1\n' >"$T/bad.conf"
"$IHALA" --config "$T/bad.conf" status r1 >"$T/o" 2>"$T/e"
RC=$?
check "bad config: exit 4, every FILE:LINE: error" \
	eval '[ $RC -eq 4 ] && grep -q "^$T/bad.conf:2: unknown option '"'brokr'"'" "$T/e" && grep -q "^$T/bad.conf:[0-9]*: .*ca_file" "$T/e"'
IHALA_CONFIG=$T/bad.conf "$IHALA" status r1 >"$T/o" 2>"$T/e"
RC=$?
check "IHALA_CONFIG is used when --config is absent" eval '[ $RC -eq 4 ] && grep -q "^$T/bad.conf:2:" "$T/e"'

# Local errors say what failed: which file or directory, and why (not "invalid configuration").
echo "not a certificate" >"$T/notpem.pem"
sed "s|^cert_file = .*|cert_file = $T/notpem.pem|" "$DMA" >"$T/notpem.conf"
run notpem "$T/notpem.conf" status r1
check "a cert_file that is not PEM: exit 4, names the file and why" \
	eval 'exit_and_err 4 "ihala: cannot open the node: cannot load certificate '"'$T/notpem.pem'"': no start line" && ! grep -q "invalid configuration" "$ERR"'
# (a directory no one can make, even root: /proc takes none)
sed "s|^data_dir = .*|data_dir = /proc/ihala-cli-$$|" "$DMA" >"$T/baddir.conf"
run baddir "$T/baddir.conf" status r1
check "a data_dir that cannot be made: exit 4, names the directory and why" \
	eval 'exit_and_err 4 "ihala: cannot open the node: local store: cannot create directory '"'/proc/ihala-cli-$$'"': " && ! grep -q "input/output error" "$ERR"'
sed "s|^key_file = .*|key_file = $IHALA_PKI/moh.key|" "$DMA" >"$T/otherkey.conf"
run otherkey "$T/otherkey.conf" status r1
check "a key_file of another certificate: exit 4, names both files" \
	exit_and_err 4 "ihala: cannot open the node: private key '$IHALA_PKI/moh.key' does not match certificate '$IHALA_PKI/dma.pem'"

# Bad input is refused before anything is sent (no broker runs yet).
echo '{"referralId": "x",' >"$T/badjson.json"
run badjson "$DMA" refer --to moh --file "$T/badjson.json"
check "refer: bad JSON: exit 2, says where (FILE:LINE:COLUMN)" exit_and_err 2 "refer: $T/badjson.json:2:1: "
sed 's/"survivor"/"survivr"/' "$EX/referral.json" >"$T/unknown.json"
run unknown "$DMA" refer --to moh --file "$T/unknown.json"
check "refer: unknown field: exit 2, names it where it is" exit_and_err 2 "unknown.json:12:3: survivr: unknown field (did you mean 'survivor'?)"
sed 's/"birthYear": 1996/"birthYear": "nineteen"/' "$EX/referral.json" >"$T/type.json"
run type "$DMA" refer --to moh --file "$T/type.json"
check "refer: wrong type: exit 2, names the field as the file does, where it is" exit_and_err 2 "type.json:16:5: survivor.birthYear: expected an integer"
sed 's/"priority": "urgent"/"priority": "whenever"/' "$EX/referral.json" >"$T/enum.json"
run enum "$DMA" refer --to moh --file "$T/enum.json"
check "refer: unknown enum value: exit 2, names the field" exit_and_err 2 "enum.json:5:3: priority: unknown value \"whenever\""
run nofile "$DMA" refer --to moh --file "$T/does-not-exist.json"
check "refer: missing file: exit 2, names it" exit_and_err 2 "does-not-exist.json"
run nofileopt "$DMA" refer --to moh
check "refer without --file: exit 2" exit_and_err 2 "--file"
run badid "$DMA" refer --to moh --file "$EX/referral.json" --message-id 'has space'
check "refer: invalid --message-id: exit 2" exit_and_err 2 "invalid message id"
echo '{}' >"$T/empty.json"
run emptyref "$DMA" refer --to moh --file "$T/empty.json"
check "refer {}: exit 2, every missing field at once, by its JSON name" \
	eval 'expect 2 && err_has "empty.json:1:1: referralId is required" && err_has "empty.json:1:1: priority is required" && err_has "services needs at least one" && err_has "survivor is required" && err_has "empty.json:1:1: consent is required" && err_has "5 problem(s)"'
run emptyref-outbox "$DMA" --timeout 1s outbox
check "refer {}: nothing was queued (outbox: waiting 0)" exit_and_out 0 '"waiting":0'
sed 's/"caseId": "IQ-NIN-2024-00417"/"caseId": "IQ-NIN-٢٠٢٤-00417"/' "$EX/referral.json" >"$T/indic.json"
run indic "$DMA" refer --to moh --file "$T/indic.json"
check "refer: a caseId in Arabic-Indic digits: exit 2, says to write 0-9" \
	exit_and_err 2 "indic.json:13:5: survivor.caseId must be printable ASCII: write digits as 0-9"
check "refer: the Arabic-Indic caseId is named as given, not as missing" \
	eval '! grep -q "survivor is required\|case_id" "$ERR" || { show "$ERR"; false; }'
# several problems of different kinds: all named at once, in file order, each where it is
sed -e 's/"caseId": "IQ-NIN-2024-00417"/"caseId": "IQ-NIN-٢٠٢٤-00417"/' -e 's/"birthYear": 1996/"birth_year": "x"/' \
	-e 's/"priority": "urgent"/"priority": "whenever"/' "$EX/referral.json" >"$T/many.json"
run many "$DMA" refer --to mho --file "$T/many.json"
check "refer: five problems at once, in file order, with line and column, --to suggested" \
	eval 'expect 2 && [ "$(grep -c "^ihala: refer: $T/many.json:[0-9]*:[0-9]*: " "$ERR")" -eq 5 ] &&
		grep -n . "$ERR" | grep -q "^1:.*many.json:4:3: receivingAgency is '"'moh'"' but --to is '"'mho'"' (did you mean '"'--to moh'"'?)" &&
		grep -n . "$ERR" | grep -q "^2:.*many.json:5:3: priority: unknown value" &&
		grep -n . "$ERR" | grep -q "^3:.*many.json:13:5: survivor.caseId must be printable ASCII" &&
		grep -n . "$ERR" | grep -q "^4:.*many.json:16:5: survivor.birth_year: expected an integer" &&
		grep -n . "$ERR" | grep -q "^5:.*many.json:45:5: consent.agencies does not name the recipient '"'mho'"' (did you mean '"'moh'"'?)" &&
		err_has "5 problem(s) in '"'$T/many.json'"'; nothing was sent or queued"'
run who "$DMA" refer --to who --file "$EX/referral.json"
check "refer --to an agency other than the file's receivingAgency: exit 2, both named" \
	eval 'exit_and_err 2 "receivingAgency is '"'moh'"' but --to is '"'who'"': leave out --to, or make them agree" && err_has "consent.agencies does not name the recipient '"'who'"' (it names: moh, hi)"'
run badreason "$MOH" decline r1 --reason too-busy
check "decline: unknown reason: exit 2, lists the codes" exit_and_err 2 "invalid reason 'too-busy' (one of: not-eligible no-capacity"
run noreason "$MOH" decline r1
check "decline without --reason: exit 2" exit_and_err 2 "--reason CODE is required"
run erase-noreason "$DMA" erase r1
check "erase without --reason: exit 2" exit_and_err 2 "erase: --reason CODE is required"
run erase-badreason "$DMA" erase r1 --reason no-capacity
check "erase: a reason that is not an erasure's: exit 2, lists the three" \
	exit_and_err 2 "erase: invalid reason 'no-capacity' (one of: consent-withdrawn entered-in-error other)"
run erase-badid "$DMA" erase "r 1" --reason other
check "erase: an invalid referral id: exit 2" exit_and_err 2 "erase: invalid referral id 'r 1'"
run badstatus "$MOH" progress r1 --status completed
check "progress --status completed: exit 2 (only in-progress, on-hold)" \
	exit_and_err 2 "invalid status 'completed' (one of: in-progress on-hold)"
run notext "$MOH" note r1
check "note without --text: exit 2" exit_and_err 2 "--text TEXT is required"
run auditlater "$AUD" audit verify
check "audit verify without a checkpoint key: exit 2, says which" exit_and_err 2 "audit verify: a key is needed"

# --- unreachable broker: the submission waits in the outbox ---------------------------
R0=early-$$
mkref "$T/r0.json" "$R0"
run unreach "$DMA" --timeout 1s refer --to moh --file "$T/r0.json" --message-id "msg-$R0"
check "refer, broker down: exit 3, kept in the outbox" \
	exit_and_err 3 "ihala: broker unreachable; message msg-$R0 is kept in the outbox and will be sent on the next run"
check "refer, broker down: nothing on stdout" [ ! -s "$OUT" ]
run outbox-down "$DMA" --timeout 1s outbox
check "outbox, broker down: exit 3, one waiting" exit_and_out 3 '"waiting":1'

check "broker starts" start_broker "$T/b"

run outbox-up "$DMA" outbox
check "outbox after the broker started: exit 0, sent" exit_and_out 0 '{"waiting":1,"sent":1,"left":0}'
run outbox-again "$DMA" outbox
check "outbox then empty" exit_and_out 0 '"waiting":0'

# --- refer --------------------------------------------------------------------------------
R1=ref1-$$
sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/$R1/" "$EX/referral.json" >"$T/r1.json"
sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/$R1/" "$EX/outcome.json" >"$T/o1.json"
run refer1 "$DMA" refer --to moh --file "$T/r1.json" --message-id "msg-$R1"
check "refer: exit 0, receipt with seq, accepted" \
	eval 'expect 0 && out_has "\"messageId\":\"msg-$R1\"" && out_has "\"status\":\"accepted\"" && [ -n "$(seq_of)" ] && [ "$(seq_of)" -gt 0 ]'
check "refer: leafHash is 64 hex digits" grep -qE '"leafHash":"[0-9a-f]{64}"' "$OUT"
seq1=$(seq_of)
run refer1dup "$DMA" refer --to moh --file "$T/r1.json" --message-id "msg-$R1"
# v2: the node keeps what it sent under the id (its own sealed part) and sends the same bytes
# again when the content is the same, so the broker answers DUPLICATE as before sealing.
check "refer again with the same message id: duplicate, same seq" \
	eval 'expect 0 && out_has "\"status\":\"duplicate\"" && [ "$(seq_of)" = "$seq1" ]'
run refer1exists "$DMA" refer --to moh --file "$T/r1.json"
check "refer the same referral id with a new message id: exit 1, REFERRAL_EXISTS" \
	exit_and_err 1 "ihala: refused: REFERRAL_EXISTS: "
# Past sent_keep the node has deleted what it sent (here 0: when it opens): the same referral
# again under its id is sealed anew, other bytes, and the broker's refusal comes with why.
{ cat "$DMA"; echo "sent_keep = 0"; } >"$T/nokeep.conf"
run refer1pruned "$T/nokeep.conf" refer --to moh --file "$T/r1.json" --message-id "msg-$R1"
check "refer again past sent_keep: exit 1, MESSAGE_ID_CONFLICT, says why and what to run" \
	exit_and_err 1 "ihala: refused: MESSAGE_ID_CONFLICT: message id 'msg-$R1' was already used for different content (seq $seq1); if it is this same message, sent over sent_keep (0) ago, this node no longer has its sealed bytes to repeat (ihala prove ID shows the one logged)"

mkref "$T/noconsent.json" "nc-$$" 'null'
run noconsent "$DMA" refer --to moh --file "$T/noconsent.json"
check "refer without consent: exit 2 before queueing, says consent is required" \
	exit_and_err 2 "noconsent.json:3:2: consent is required"
mkref "$T/notcovered.json" "ncov-$$"
run notcovered "$DMA" refer --to molsa --file "$T/notcovered.json"
check "refer to an agency the consent does not cover: exit 2 before queueing, names both" \
	exit_and_err 2 "notcovered.json:3:67: consent.agencies does not name the recipient 'molsa' (it names: moh, hi)"
run notcovered-mistyped "$DMA" refer --to mho --file "$T/notcovered.json"
check "refer to a mistyped agency: exit 2, did you mean the consent's 'moh'?" \
	exit_and_err 2 "consent.agencies does not name the recipient 'mho' (did you mean 'moh'?)"
mkref "$T/needsonly.json" "nds-$$" '{"given":true,"agencies":["moh"],"dataCovered":["needs"]}'
run needsonly "$DMA" refer --to moh --file "$T/needsonly.json"
check "refer carrying a name and a birth year with consent for needs only: exit 2, both named where they are" \
	eval 'expect 2 && grep -qE "needsonly.json:2:[0-9]+: survivor.name is identity data, which consent.dataCovered does not include" "$ERR" && grep -qE "needsonly.json:2:[0-9]+: survivor.birthYear is demographics data" "$ERR" || { show "$ERR"; false; }'
run notcovered-outbox "$DMA" outbox --json
check "those refusals queued nothing (no new rejected message)" \
	eval 'expect 0 && ! grep -q "ncov-$$\|nc-$$" "$OUT" || { show "$OUT"; false; }'
mkref "$T/tonobody.json" "nob-$$" '{"given":true,"agencies":["nobody","mho","moh"],"dataCovered":["identity","demographics","needs"]}'
run unknownto "$DMA" refer --to nobody --file "$T/tonobody.json"
check "refer to an unknown agency: exit 1, UNKNOWN_RECIPIENT, says it is unknown" \
	exit_and_err 1 "refused: UNKNOWN_RECIPIENT: recipient 'nobody' is not a configured agency"
run unknownto2 "$DMA" refer --to mho --file "$T/tonobody.json"
check "refer to a mistyped agency the consent names: exit 1, did you mean the consent's 'moh'?" \
	exit_and_err 1 "is not a configured agency (did you mean 'moh'?)"

# --- inbox ---------------------------------------------------------------------------------
run inbox1 "$MOH" inbox
check "inbox as moh: exit 0" expect 0
check "inbox as moh: the early referral (sent from the outbox) and the new one" \
	eval 'out_has "\"referralId\":\"$R0\"" && out_has "\"referralId\":\"$R1\""'
check "inbox line: seq, kind, sender, recipient, brokerTimeMs (the log entry's names)" \
	grep -qE "^\\{\"seq\":$seq1,\"kind\":\"submission\",\"sender\":\"dma\",\"recipient\":\"moh\",\"brokerTimeMs\":[0-9]+,\"envelope\":\\{" "$OUT"
check "inbox: the Arabic name intact (not escaped)" eval 'out_has "\"name\":\"$ARABIC_NAME\"" && out_lacks "\\u"'
check "inbox: one JSON object per line" eval '[ "$(lines)" -eq 2 ] && ! grep -qv "^{.*}$" "$OUT"'
run inbox1b "$MOH" inbox
check "second inbox run as moh: nothing" eval 'expect 0 && [ ! -s "$OUT" ]'

# --- accept, and the status change reaches the referrer ---------------------------------------
run accept1 "$MOH" accept "$R1" --note "سيتم الاتصال بالناجية"
check "accept by moh: exit 0, receipt" eval 'expect 0 && out_has "\"status\":\"accepted\"" && [ -n "$(seq_of)" ]'
run accept-dma "$DMA" accept "$R1"
check "accept by dma (the referrer): exit 1, INVALID_TRANSITION" \
	exit_and_err 1 "ihala: refused: INVALID_TRANSITION: "
run accept-again "$MOH" accept "$R1"
check "accept twice: exit 1, INVALID_TRANSITION" exit_and_err 1 "refused: INVALID_TRANSITION: "
run inbox-dma "$DMA" inbox
check "dma inbox: the broker's 'received' event" \
	eval 'expect 0 && grep "\"kind\":\"broker-status\"" "$OUT" | grep -q "\"referralId\":\"$R1\".*\"status\":\"received\""'
check "dma inbox: moh's accept with the Arabic note" \
	eval 'grep "\"sender\":\"moh\"" "$OUT" | grep "\"referralId\":\"$R1\"" | grep "\"status\":\"accepted\"" | grep -qF "سيتم الاتصال بالناجية"'

# --- status ----------------------------------------------------------------------------------
run status1 "$DMA" status "$R1"
check "status as dma: exit 0, accepted, referrer and recipient" \
	eval 'expect 0 && out_has "\"status\":\"accepted\"" && out_has "\"referrer\":\"dma\"" && out_has "\"recipient\":\"moh\""'
check "status: the history has requested, received and accepted" \
	eval 'out_has "\"status\":\"requested\"" && out_has "\"status\":\"received\"" && [ "$(grep -o "\"seq\":" "$OUT" | wc -l)" -ge 3 ]'
check "status: no request id in the output" out_lacks "requestId"
run status-moh "$MOH" status "$R1"
check "status as moh (the recipient): exit 0" exit_and_out 0 "\"referralId\":\"$R1\""
run status-hi "$HI" status "$R1"
check "status as hi (not a party): exit 1, UNKNOWN_REFERRAL (as if it did not exist)" \
	exit_and_err 1 "ihala: refused: UNKNOWN_REFERRAL: "
run status-none "$DMA" status "no-such-$$"
check "status of an unknown referral: exit 1, UNKNOWN_REFERRAL" exit_and_err 1 "refused: UNKNOWN_REFERRAL: "

# --- identities the broker does not accept: a local set-up problem ------------------------------
STRANGER=$(write_client_conf "$T" stranger "$port")
run stranger "$STRANGER" status "$R1"
check "certificate naming no configured agency: exit 4, says why" \
	eval 'exit_and_err 4 "cannot connect to tcp://127.0.0.1:$port: " && [ ! -s "$OUT" ]'
FOREIGN=$(write_client_conf "$T" foreign "$port")
run foreign "$FOREIGN" status "$R1"
check "certificate from a foreign CA: exit 4" exit_and_err 4 "cannot connect to tcp://127.0.0.1:$port: "

# --- progress, note, outcome -------------------------------------------------------------------
run progress1 "$MOH" progress "$R1" --status on-hold --business-status "waiting for a socket" --reason no-capacity
check "progress on-hold by moh: exit 0" expect 0
run progress2 "$MOH" progress "$R1" --business-status "appointment scheduled"
check "progress (in-progress by default): exit 0" expect 0
run note1 "$MOH" note "$R1" --text "$KURDISH_NOTE"
check "note by moh: exit 0" expect 0
run note-hi "$HI" note "$R1" --text "hello"
check "note by hi (not a party): exit 1, UNKNOWN_REFERRAL (as if it did not exist)" \
	exit_and_err 1 "refused: UNKNOWN_REFERRAL: "
run outcome-noo "$MOH" outcome "$R1" --file "$T/type.json"
check "outcome with a referral file: exit 2, every unknown field where it is" \
	eval 'exit_and_err 2 "type.json:5:3: priority: unknown field" && err_has "type.json:12:3: survivor: unknown field" && err_has "9 problem(s)"'
run outcome1 "$MOH" outcome "$R1" --file "$T/o1.json"
check "outcome by moh (completed): exit 0" expect 0
run status1b "$DMA" status "$R1"
check "status after the outcome: completed, on-hold and in-progress in the history" \
	eval 'expect 0 && grep -q "^{\"referralId\":\"$R1\".*\"status\":\"completed\"" "$OUT" && out_has "\"status\":\"on-hold\"" && out_has "\"status\":\"in-progress\""'
run inbox-dma2 "$DMA" inbox
check "dma inbox: the Kurdish note intact, the outcome with its services" \
	eval 'expect 0 && out_has "$KURDISH_NOTE" && out_has "\"servicesDelivered\":[\"physical-rehabilitation\",\"prosthetics-orthotics\"]" && out_has "\"businessStatus\":\"waiting for a socket\""'
run cancel-late "$DMA" cancel "$R1" --reason entered-in-error
check "cancel a completed referral: exit 1, INVALID_TRANSITION" exit_and_err 1 "refused: INVALID_TRANSITION: "

# --- decline ------------------------------------------------------------------------------------
R2=ref2-$$
mkref "$T/r2.json" "$R2"
run refer2 "$DMA" refer --to moh --file "$T/r2.json"
check "refer a second referral: exit 0" expect 0
run decline2 "$MOH" decline "$R2" --reason NO_CAPACITY --text "قائمة الانتظار ممتلئة"
check "decline with a reason (NO_CAPACITY spelling): exit 0" expect 0
run status2 "$DMA" status "$R2"
check "status after decline: declined (the word of the command)" exit_and_out 0 "\"status\":\"declined\""
run inbox-dma3 "$DMA" inbox
check "dma inbox: the decline with reasonCode no-capacity and the text" \
	eval 'expect 0 && grep "\"referralId\":\"$R2\"" "$OUT" | grep "\"reasonCode\":\"no-capacity\"" | grep -qF "قائمة الانتظار ممتلئة"'

# --- status with the whole history; list (the node's journal) --------------------------------
# hist_has: the history item of the decline carries its reason code and text
hist_has() {
	grep -q '"history":\[.*"envelope":{.*"statusUpdate":{.*"reasonCode":"no-capacity"' "$OUT" &&
		grep -qF '"reason":"قائمة الانتظار ممتلئة"' "$OUT" ||
		{ diag "no decline details in the history"; show "$OUT"; return 1; }
}
run status2-moh "$MOH" status "$R2"
check "status by the decliner: the history holds the decline's reason and text (sent)" \
	eval 'expect 0 && hist_has'
run status2-dma "$DMA" status "$R2"
check "status by the referrer after its inbox: the decline's reason and text (received)" \
	eval 'expect 0 && hist_has'
check "status: the referral's own item carries the referral as sent" \
	eval 'grep -qE "\"history\":\[\{\"seq\":[0-9]+,[^{]*\"envelope\":\{[^{]*\"referral\":\{\"referralId\":\"$R2\"" "$OUT" || { show "$OUT"; false; }'
run list-dma "$DMA" list
check "list: one JSON line per referral of the node, R1 and R2 with their states" \
	eval 'expect 0 && grep "\"referralId\":\"$R1\"" "$OUT" | grep -q "\"status\":\"completed\"" && grep "\"referralId\":\"$R2\"" "$OUT" | grep -q "\"status\":\"declined\""'
run list-declined "$DMA" list --state declined
check "list --state declined: only R2" \
	eval 'expect 0 && [ "$(lines)" -eq 1 ] && out_has "\"referralId\":\"$R2\""'
run list-overdue "$DMA" list --overdue
check "list --overdue: none (deadlines are days away), exit 0" eval 'expect 0 && [ ! -s "$OUT" ]'
run list-future "$DMA" list --since 2999-01-01
check "list --since a future date: none" eval 'expect 0 && [ ! -s "$OUT" ]'
run list-today "$DMA" list --since "$(date -u +%F)"
check "list --since today: R2 among them" exit_and_out 0 "\"referralId\":\"$R2\""
run list-bad "$DMA" list --state busy
check "list --state with an unknown state: exit 2, names it" exit_and_err 2 "unknown state 'busy'"
run list-typo "$DMA" list --state inprogress
check "list --state mistyped: exit 2, did you mean 'in-progress'?" \
	exit_and_err 2 "unknown state 'inprogress' (did you mean 'in-progress'?)"
run list-oldname "$DMA" list --state rejected
check "list --state rejected (the former name): the declined ones" \
	eval 'expect 0 && [ "$(lines)" -eq 1 ] && out_has "\"referralId\":\"$R2\""'

# --- on a terminal: tables for people, local times, right-to-left text isolated -----------------
FSI=$'\u2068' PDI=$'\u2069'
created2=$(grep "\"referralId\":\"$R2\"" "$T/list-dma.out" | grep -oE '"createdMs":[0-9]+' | cut -d: -f2)
# tty_run NAME ARGS...: ihala ARGS under a pseudo-terminal (script(1)) in Baghdad's time zone;
# sets RC and OUT (carriage returns dropped).
tty_run() {
	local name=$1
	shift
	OUT=$T/$name.tty ERR=$T/$name.tty.err
	TZ=Asia/Baghdad script -qec "$(printf '%q ' "$IHALA" "$@")" /dev/null </dev/null 2>"$ERR" |
		tr -d '\r' >"$OUT"
	RC=${PIPESTATUS[0]}
}
# col TEXT LINE-PATTERN: the character column where TEXT starts on the first line matching
# (isolates are zero-width: dropped first; what comes before TEXT is ASCII in these tests)
col() { grep -m1 -- "$2" "$OUT" | sed "s/$FSI//g; s/$PDI//g" | awk -v t="$1" '{print index($0, t)}'; }
tty_run list-tty --config "$DMA" list
check "list on a terminal: a table with headings, R2 declined" \
	eval 'expect 0 && head -n1 "$OUT" | grep -q "^REFERRAL  *STATUS  *PRIORITY  *FROM  *TO  *CREATED  *DEADLINE" && grep -q "^$R2  *declined  *normal  *dma  *moh " "$OUT"'
check "list on a terminal: columns aligned" \
	eval '[ "$(col STATUS REFERRAL)" -gt 0 ] && [ "$(col STATUS REFERRAL)" = "$(col declined "^$R2 ")" ] && [ "$(col CREATED REFERRAL)" = "$(col "$(TZ=Asia/Baghdad date -d "@$((created2 / 1000))" "+%F %H:%M")" "^$R2 ")" ] || { show "$OUT"; false; }'
check "list on a terminal: local times (Baghdad), no epoch milliseconds" \
	eval 'grep "^$R2 " "$OUT" | grep -qF "$(TZ=Asia/Baghdad date -d "@$((created2 / 1000))" "+%F %H:%M")" && ! grep -qE "[0-9]{13}" "$OUT" || { show "$OUT"; false; }'
tty_run status-tty --config "$DMA" status "$R2"
check "status on a terminal: declined, the history as a table" \
	eval 'expect 0 && grep -q "^Status  *declined$" "$OUT" && grep -q "^SEQ  *TIME  *BY  *STATUS  *WHAT$" "$OUT" || { show "$OUT"; false; }'
check "status on a terminal: the Arabic reason isolated (FSI ... PDI) in its column" \
	eval 'grep "declined (no-capacity): " "$OUT" | grep -qF "$FSI""قائمة الانتظار ممتلئة""$PDI" && [ "$(col WHAT "^SEQ")" = "$(col "declined (no-capacity)" "no-capacity")" ] || { show "$OUT"; false; }'
tty_run note-tty --config "$DMA" note "$R2" --text "for people" --message-id "tty-$$"
check "a receipt on a terminal: one field a line" \
	eval 'expect 0 && grep -q "^Receipt  *accepted$" "$OUT" && grep -qE "^Seq  *[0-9]+$" "$OUT" && grep -q "^Message  *tty-$$$" "$OUT" && grep -qE "^Leaf hash  *[0-9a-f]{64}$" "$OUT" || { show "$OUT"; false; }'
tty_run status-tty-json --config "$DMA" --json status "$R2"
check "--json on a terminal: JSON" eval 'expect 0 && grep -q "^{\"referralId\":\"$R2\"" "$OUT"'

# --- cancel ---------------------------------------------------------------------------------------
R3=ref3-$$
mkref "$T/r3.json" "$R3"
run refer3 "$DMA" refer --to moh --file "$T/r3.json"
check "refer a third referral: exit 0" expect 0
run cancel-moh "$MOH" cancel "$R3" --reason client-relocated
check "cancel by the recipient: exit 1, INVALID_TRANSITION" exit_and_err 1 "refused: INVALID_TRANSITION: "
run cancel3 "$DMA" cancel "$R3" --reason client_relocated --text "moved to Erbil"
check "cancel by the referrer: exit 0" expect 0
run status3 "$MOH" status "$R3"
check "status after cancel: cancelled" exit_and_out 0 "\"status\":\"cancelled\""

# --- inbox --exec -----------------------------------------------------------------------------
R4=ref4-$$
mkref "$T/r4.json" "$R4"
run refer4 "$DMA" refer --to hi --file "$T/r4.json"
check "refer to hi: exit 0" expect 0
seq4=$(seq_of)
run exec-fail "$HI" inbox --exec 'cat >/dev/null; exit 3'
check "inbox --exec failing: exit 1, not acknowledged" \
	exit_and_err 1 "failed (exit status 3) for delivery $seq4; not acknowledged"
run exec-ok "$HI" inbox --exec "cat >\"$T/exec.json\"; echo \"\$IHALA_SEQ\" >\"$T/exec.seq\""
check "inbox --exec again: the same delivery comes again, exit 0" \
	eval 'expect 0 && grep -q "\"referralId\":\"$R4\"" "$T/exec.json"'
check "inbox --exec: IHALA_SEQ is the delivery's seq" eval '[ -n "$seq4" ] && [ "$(cat "$T/exec.seq")" = "$seq4" ]'
check "inbox --exec: the JSON line ends with a newline, Arabic intact" \
	eval '[ "$(tail -c1 "$T/exec.json" | od -An -c | tr -d " ")" = "\\n" ] && grep -qF "$ARABIC_NAME" "$T/exec.json"'
run exec-after "$HI" inbox
check "inbox after the successful --exec: nothing left" eval 'expect 0 && [ ! -s "$OUT" ]'

# --count, and --watch ending on SIGTERM
for i in 5 6 7; do
	mkref "$T/r$i.json" "ref$i-$$"
	run "refer$i" "$DMA" refer --to hi --file "$T/r$i.json"
done
run count1 "$HI" inbox --count 2
check "inbox --count 2: two deliveries" eval 'expect 0 && [ "$(lines)" -eq 2 ] && out_has "ref5-$$" && out_has "ref6-$$"'
"$IHALA" --config "$HI" inbox --watch >"$T/watch.out" 2>"$T/watch.err" &
wpid=$!
_pids+=("$wpid")
wait_for 10 grep -q "ref7-$$" "$T/watch.out"
kill -TERM "$wpid"
wait "$wpid"
RC=$?
check "inbox --watch: shows the rest, exits 0 on SIGTERM" eval '[ $RC -eq 0 ] && grep -q "ref7-$$" "$T/watch.out" && ! grep -q "ref5-$$" "$T/watch.out"'
mkref "$T/r8.json" "ref8-$$"
run refer8 "$DMA" refer --to hi --file "$T/r8.json"
LONG_NOTE=$(for _ in $(seq 1 40); do printf '%s ' "$KURDISH_NOTE"; done)
run note8 "$DMA" note "ref8-$$" --text "$LONG_NOTE"
tty_run inbox-tty --config "$HI" inbox
check "inbox on a terminal: a row per delivery, local time, the Arabic name isolated" \
	eval 'expect 0 && head -n1 "$OUT" | grep -q "^SEQ  *TIME  *FROM  *TO  *REFERRAL  *WHAT$" &&
		grep "ref8-$$" "$OUT" | grep -qE "^[0-9]+  *[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}  *dma  *hi  *ref8-$$  *${FSI}referral for $FSI$ARABIC_NAME$PDI \(normal\)$PDI$" || { show "$OUT"; false; }'
check "inbox on a terminal: a long Kurdish note cut at a whole character, its isolates balanced" \
	eval 'line=$(grep "note: " "$OUT") && [ -n "$line" ] && printf "%s" "$line" | iconv -f UTF-8 -t UTF-8 >/dev/null &&
		[ "$(printf "%s" "$line" | grep -o "$FSI" | wc -l)" = "$(printf "%s" "$line" | grep -o "$PDI" | wc -l)" ] &&
		[ "$(printf "%s" "$line" | wc -c)" -lt 600 ] || { show "$OUT"; false; }'
run inbox-after-tty "$HI" inbox
check "inbox on a terminal acknowledged what it showed" eval 'expect 0 && [ ! -s "$OUT" ]'

# --- audit replay -----------------------------------------------------------------------------
run replay "$AUD" audit replay
check "audit replay as auditor: exit 0, one line per entry from seq 1" \
	eval 'expect 0 && head -n1 "$OUT" | grep -q "^{\"seq\":1,\"entry\":{" && [ "$(lines)" -ge 10 ]'
check "audit replay: the referral's clear part decoded with its sealed part's SHA-256, no name" \
	eval 'grep "^{\"seq\":$seq1," "$OUT" | grep -qE "\"envelope\":\{\"messageId\":\"msg-$R1\",\"to\":\"moh\".*\"sealedSha256\":\"[0-9a-f]{64}\"" &&
		! grep -q "$ARABIC_NAME" "$OUT"'
tty_run replay-tty --config "$AUD" audit replay --from "$seq1" --to "$seq1"
check "audit replay on a terminal: a row for people, local time, the sealed part's hash, no name" \
	eval 'expect 0 && head -n1 "$OUT" | grep -q "^SEQ  *TIME  *FROM  *TO  *REFERRAL  *WHAT$" &&
		grep -qE "^$seq1  *[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}  *dma  *moh  *$R1  *.*referral \(urgent\); sealed sha256:[0-9a-f]{64}" "$OUT" &&
		! grep -q "$ARABIC_NAME" "$OUT" || { show "$OUT"; false; }'
run replay-range "$AUD" audit replay --from "$seq1" --to "$seq1"
check "audit replay --from N --to N: exactly that entry" \
	eval 'expect 0 && [ "$(lines)" -eq 1 ] && grep -q "^{\"seq\":$seq1,\"entry\":{\"seq\":$seq1," "$OUT"'
run replay-dma "$DMA" audit replay
check "audit replay as dma: exit 1, FORBIDDEN" exit_and_err 1 "refused: FORBIDDEN: "
run replay-bad "$AUD" audit replay --from 5 --to 2
check "audit replay --to before --from: exit 2" exit_and_err 2 "is before --from"

"$IHALA" --config "$AUD" audit replay --from "$seq4" --follow >"$T/follow.out" 2>"$T/follow.err" &
fpid=$!
_pids+=("$fpid")
wait_for 10 grep -q "^{\"seq\":$seq4," "$T/follow.out"
run follow-note "$DMA" note "ref5-$$" --text "follow me" --message-id "msg-follow-$$"
# The note's text is sealed: the auditor sees its entry (the node's message id), not the words.
wait_for 10 grep -q "\"messageId\":\"msg-follow-$$\"" "$T/follow.out"
kill -TERM "$fpid"
wait "$fpid"
RC=$?
check "audit replay --follow: old and new entries, exit 0 on SIGTERM" \
	eval '[ $RC -eq 0 ] && grep -q "^{\"seq\":$seq4," "$T/follow.out" && grep -q "\"messageId\":\"msg-follow-$$\"" "$T/follow.out" && ! grep -q "follow me" "$T/follow.out"'

run quiet "$DMA" -q outbox
check "-q: outbox prints its JSON but nothing on stderr" eval 'exit_and_out 0 "\"waiting\":0" && [ ! -s "$ERR" ]'
run notquiet "$DMA" outbox
check "without -q: outbox says how many wait on stderr" exit_and_err 0 "0 message(s) wait in the outbox"

# --- the broker goes away mid-life --------------------------------------------------------------
stop_broker
run status-down "$DMA" --timeout 1s status "$R1"
check "status, broker down: exit 3" exit_and_err 3 "cannot connect to tcp://127.0.0.1:$port"
run inbox-down "$DMA" --timeout 1s inbox
check "inbox, broker down: exit 3" expect 3
