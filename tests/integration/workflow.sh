#!/usr/bin/env bash
# workflow.sh - whole referral lifecycles through a real broker and the ihala CLI (issue 5).
#
# 1 refer -> received -> accepted -> in-progress -> completed, every step seen by DMA;
# 2 decline; 3 cancel; 4 onward referral (and one refused: parent only requested);
# 5 overdue: an emergency referral left unanswered past its [deadlines] time;
# 6 illegal moves refused with their error code, changing nothing (state, log, inboxes).
#
# The shortest deadline the broker accepts is 1m (broker/config.c), so the overdue referral is
# sent first and checked after parts 1-4; this test takes a little over a minute.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
ENVSUBMIT=$IHALA_BUILD/tests/tools/envsubmit
EX=$IHALA_ROOT/config/examples
DEADLINE_S=60

plan 78

# refused CODE: the last run was refused by the broker with CODE (exit 1).
refused() { expect 1 && err_has "ihala: refused: $1: "; }
# The current status of a referral as CONF sees it ("" when the query fails).
status_of() {
	"$IHALA" --config "$1" status "$2" 2>/dev/null | grep -oE '^\{"referralId":"[^"]*","referrer":"[^"]*","recipient":"[^"]*","status":"[^"]*"' |
		sed 's/.*"status":"//; s/"$//'
}
# inbox_line FILE REFERRAL PATTERN: a line of an inbox dump about REFERRAL matching PATTERN (ERE).
inbox_line() { grep -F "\"referralId\":\"$2\"" "$1" | grep -qE -- "$3"; }
# log_size: how many entries the auditor replays now.
log_size() { "$IHALA" --config "$AUD" audit replay 2>/dev/null | grep -c '^{"seq":'; }

# mkref FILE ID PRIORITY NAME [PARENT] [CONSENT-AGENCIES-JSON] [CONSENT-JSON]: a valid referral
# (its consent covers what it carries: identity, demographics, location, needs).
mkref() {
	local f=$1 id=$2 prio=$3 name=$4 parent=${5:-} agencies=${6:-'["moh","molsa","hi"]'}
	local consent=${7:-"{\"given\":true,\"givenBy\":\"survivor\",\"date\":\"2024-04-02\",\"recordedBy\":\"DMA-VA-0231\",\"agencies\":$agencies,\"dataCovered\":[\"identity\",\"demographics\",\"location\",\"needs\"]}"}
	cat >"$f" <<JSON
{"referralId":"$id","parentReferralId":"$parent","priority":"$prio",
 "services":["physical-rehabilitation","prosthetics-orthotics"],
 "reason":"landmine survivor, below-knee amputation",
 "survivor":{"caseId":"IQ-NIN-$id","name":"$name","sex":"female","birthYear":1996,
             "governorate":"Ninewa","district":"Sinjar"},
 "consent":$consent,
 "notes":"يرجى الاتصال بها صباحاً"}
JSON
}
# mkoutcome FILE ID: the example outcome for referral ID.
mkoutcome() { sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/$2/" "$EX/outcome.json" >"$1"; }

port=$(free_port)
write_broker_conf "$T/b" "$port" "
[deadlines]
emergency = 1m
urgent = 1h
normal = 2h"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
MOLSA=$(write_client_conf "$T" molsa "$port")
HI=$(write_client_conf "$T" hi "$port")
AUD=$(write_client_conf "$T" auditor "$port")
unset IHALA_CONFIG

start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts with [deadlines] emergency = 1m"

# --- 5 (start): an emergency referral nobody answers, and one answered in time -------------
RE=emerg-$$
RE2=emerg2-$$
mkref "$T/re.json" "$RE" emergency 'كاوە عومەر ئەحمەد'
mkref "$T/re2.json" "$RE2" emergency 'هێمن جەلال'
run re "$DMA" refer --to molsa --file "$T/re.json"
t_re=$(date +%s)
check "emergency referral to molsa (nobody answers): exit 0" expect 0
run re2 "$DMA" refer --to moh --file "$T/re2.json"
check "emergency referral to moh: exit 0" expect 0
run re2-acc "$MOH" accept "$RE2"
check "moh accepts the second emergency referral in time" expect 0
run re-st "$DMA" status "$RE"
check "5: before its deadline the emergency referral is requested, not overdue" \
	eval 'expect 0 && out_has "\"status\":\"requested\"" && ! grep -qF "\"overdue\":true" "$OUT"'

# --- 1: the full lifecycle -----------------------------------------------------------------------
R1=life-$$
NAME1='نور الهدى خلف حسن'
sed "s/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/$R1/" "$EX/referral.json" >"$T/r1.json"
mkoutcome "$T/o1.json" "$R1"
run refer1 "$DMA" refer --to moh --file "$T/r1.json"
check "1: dma refers to moh: exit 0, accepted" eval 'expect 0 && out_has "\"status\":\"accepted\""'
check "1: status right after: requested" test "$(status_of "$DMA" "$R1")" = requested
run inbox1 "$MOH" inbox
check "1: moh's inbox has the referral with the Arabic name" \
	eval 'expect 0 && inbox_line "$OUT" "$R1" "\"kind\":\"submission\",\"sender\":\"dma\",\"recipient\":\"moh\"" && out_has "$NAME1"'
check "1: moh's ack makes it received (set by the broker)" wait_for 5 eval '[ "$(status_of "$DMA" "$R1")" = received ]'
run acc1 "$MOH" accept "$R1" --note "سيتم الاتصال بالناجية"
check "1: moh accepts: exit 0" expect 0
check "1: status accepted" test "$(status_of "$MOH" "$R1")" = accepted
run prog1 "$MOH" progress "$R1" --business-status "appointment scheduled"
check "1: moh reports in-progress: exit 0" expect 0
run out1 "$MOH" outcome "$R1" --file "$T/o1.json"
check "1: moh closes with the outcome: exit 0" expect 0
run st1 "$DMA" status "$R1"
check "1: status completed" eval 'expect 0 && grep -q "^{\"referralId\":\"$R1\",\"referrer\":\"dma\",\"recipient\":\"moh\",\"status\":\"completed\"" "$OUT"'
hist=$(grep -oE '"status":"[a-z-]+","what"' "$OUT" | sed 's/"status":"//; s/","what"//' | tr '\n' ' ')
check "1: history is requested, received, accepted, in-progress, completed (in that order)" \
	test "$hist" = "requested received accepted in-progress completed "
[ "$hist" = "requested received accepted in-progress completed " ] || diag "history: $hist"
check "1: history: received by the broker, the others by their senders" \
	eval 'out_has "\"sender\":\"dma\",\"status\":\"requested\"" && out_has "\"status\":\"received\",\"what\":\"received\"" && out_has "\"sender\":\"moh\",\"status\":\"completed\""'
run dmain1 "$DMA" inbox
check "1: dma's inbox: the broker's received event" \
	inbox_line "$OUT" "$R1" '"kind":"broker-status".*"status":"received"'
check "1: dma's inbox: accepted, from moh, with the Arabic note" \
	eval 'inbox_line "$OUT" "$R1" "\"sender\":\"moh\".*\"status\":\"accepted\"" && out_has "سيتم الاتصال بالناجية"'
check "1: dma's inbox: in-progress with its business status" \
	inbox_line "$OUT" "$R1" '"sender":"moh".*"status":"in-progress","businessStatus":"appointment scheduled"'
check "1: dma's inbox: completed with the outcome" \
	inbox_line "$OUT" "$R1" '"sender":"moh".*"status":"completed","outcome":\{.*"servicesDelivered":\["physical-rehabilitation","prosthetics-orthotics"\]'
check "1: dma's inbox: exactly those four changes for this referral" \
	test "$(grep -cF "\"referralId\":\"$R1\"" "$OUT")" -eq 4
run mohin1 "$MOH" inbox
check "1: moh's inbox: nothing more (its own changes are not echoed)" eval 'expect 0 && [ ! -s "$OUT" ]'

# --- 2: decline ----------------------------------------------------------------------------------
R2=decl-$$
mkref "$T/r2.json" "$R2" normal 'زينب عباس كاظم'
run refer2 "$DMA" refer --to moh --file "$T/r2.json"
check "2: dma refers: exit 0" expect 0
run dec2 "$MOH" decline "$R2" --reason no-capacity --text "قائمة الانتظار ممتلئة حتى أيلول"
check "2: moh declines with a reason: exit 0" expect 0
check "2: status declined" test "$(status_of "$DMA" "$R2")" = declined
run dmain2 "$DMA" inbox
check "2: dma sees the rejection with reason code and text" \
	inbox_line "$OUT" "$R2" '"sender":"moh".*"status":"declined".*"reasonCode":"no-capacity".*"reason":"قائمة الانتظار ممتلئة حتى أيلول"'
run acc2 "$MOH" accept "$R2"
check "2: accepting after declining: INVALID_TRANSITION" refused INVALID_TRANSITION

# --- 3: cancel -----------------------------------------------------------------------------------
R3=canc-$$
mkref "$T/r3.json" "$R3" urgent 'شيلان محمد رشيد'
run refer3 "$DMA" refer --to moh --file "$T/r3.json"
check "3: dma refers: exit 0" expect 0
run can3 "$DMA" cancel "$R3" --reason client-relocated --text "انتقلت العائلة إلى أربيل"
check "3: dma cancels with a reason: exit 0" expect 0
check "3: status cancelled (as moh sees it)" test "$(status_of "$MOH" "$R3")" = cancelled
run mohin3 "$MOH" inbox
check "3: moh sees the referral, then its cancellation with the reason" \
	eval 'inbox_line "$OUT" "$R3" "\"kind\":\"submission\",\"sender\":\"dma\".*\"referral\":" && inbox_line "$OUT" "$R3" "\"sender\":\"dma\".*\"status\":\"cancelled\".*\"reasonCode\":\"client-relocated\".*\"reason\":\"انتقلت العائلة إلى أربيل\""'
run acc3 "$MOH" accept "$R3"
check "3: accepting a cancelled referral: INVALID_TRANSITION" refused INVALID_TRANSITION
run dmain3 "$DMA" inbox
check "3: cancelled before moh took it: no 'received' for dma, history requested then cancelled" \
	eval 'expect 0 && ! inbox_line "$OUT" "$R3" "\"status\":\"received\"" && [ "$("$IHALA" --config "$DMA" status "$R3" | grep -oE "\"status\":\"[a-z-]+\",\"what\"" | tr "\n" " ")" = "\"status\":\"requested\",\"what\" \"status\":\"cancelled\",\"what\" " ]'

# --- 4: onward referral ----------------------------------------------------------------------------
R4=par-$$
R4A=onw-$$
R4B=onwbad-$$
NAME4='ئاراس کەریم عەبدوڵا'
mkref "$T/r4.json" "$R4" urgent "$NAME4"
run refer4 "$DMA" refer --to moh --file "$T/r4.json"
check "4: dma refers to moh: exit 0" expect 0
mkref "$T/r4a.json" "$R4A" normal "$NAME4" "$R4"
run early4 "$MOH" refer --to hi --file "$T/r4a.json"
check "4: onward referral while the parent is only requested/received: INVALID_PARENT" \
	refused INVALID_PARENT
run early4st "$HI" status "$R4A"
check "4: ... and it does not exist" refused UNKNOWN_REFERRAL
run acc4 "$MOH" accept "$R4"
check "4: moh accepts the parent: exit 0" expect 0
run hi4 "$HI" refer --to molsa --file "$T/r4a.json"
check "4: hi (no party to the parent) refers onward: UNKNOWN_REFERRAL, as for a parent that does not exist" \
	eval 'refused UNKNOWN_REFERRAL && err_has "no parent referral '"'"'$R4'"'"' that agency '"'"'hi'"'"' is a party to"'
run dma4 "$DMA" refer --to hi --file "$T/r4a.json"
check "4: dma (the parent's referrer, not its recipient) refers onward: INVALID_PARENT" refused INVALID_PARENT
run onw4 "$MOH" refer --to hi --file "$T/r4a.json"
check "4: moh refers onward to hi with parentReferralId: exit 0" expect 0
run hiin4 "$HI" inbox
check "4: hi receives it from moh, parent named, name intact" \
	eval 'expect 0 && inbox_line "$OUT" "$R4A" "\"sender\":\"moh\",\"recipient\":\"hi\".*\"parentReferralId\":\"$R4\"" && out_has "$NAME4"'
run st4 "$HI" status "$R4A"
check "4: the onward referral: referrer moh, recipient hi, received" \
	eval 'expect 0 && out_has "\"referrer\":\"moh\",\"recipient\":\"hi\",\"status\":\"received\""'
check "4: the parent is still accepted" test "$(status_of "$DMA" "$R4")" = accepted
mkref "$T/r4b.json" "$R4B" normal "$NAME4" "no-such-parent-$$"
run nopar4 "$MOH" refer --to hi --file "$T/r4b.json"
check "4: onward referral naming an unknown parent: UNKNOWN_REFERRAL" refused UNKNOWN_REFERRAL
mkref "$T/r4c.json" "top-$$" normal "$NAME4"
run open4 "$MOH" refer --to hi --file "$T/r4c.json"
check "4: a ministry opening a new case (no parent): FORBIDDEN" refused FORBIDDEN
run mohin4 "$MOH" inbox
check "4: moh hears the broker's received for its onward referral" \
	inbox_line "$OUT" "$R4A" '"kind":"broker-status".*"status":"received"'

# --- 5 (end): overdue ------------------------------------------------------------------------------
overdue=0
while [ "$(date +%s)" -le $((t_re + DEADLINE_S + 20)) ]; do
	if "$IHALA" --config "$DMA" status "$RE" 2>/dev/null | grep -q '"overdue":true'; then
		overdue=1
		break
	fi
	sleep 0.5
done
waited=$(($(date +%s) - t_re))
check "5: past its deadline the emergency referral is overdue=true (after ${waited}s)" \
	eval '[ $overdue -eq 1 ] && [ $waited -ge $((DEADLINE_S - 1)) ]'
run st5 "$DMA" status "$RE"
check "5: it is still requested, the history has the broker's overdue" \
	eval 'expect 0 && out_has "\"status\":\"requested\"" && out_has "\"status\":\"overdue\",\"what\":\"overdue\""'
run dmain5 "$DMA" inbox
check "5: dma's inbox: the overdue broker-status event" \
	inbox_line "$OUT" "$RE" '"kind":"broker-status","sender":"","recipient":"dma".*"event":\{"referralId":"'"$RE"'","status":"overdue"'
check "5: no overdue event for the referral answered in time" \
	eval '! inbox_line "$OUT" "$RE2" "\"status\":\"overdue\"" && ! "$IHALA" --config "$DMA" status "$RE2" | grep -q "\"overdue\":true"'
run molin5 "$MOLSA" inbox
check "5: the late recipient still gets it" eval 'expect 0 && inbox_line "$OUT" "$RE" "\"kind\":\"submission\",\"sender\":\"dma\""'
run acc5 "$MOLSA" accept "$RE"
check "5: an overdue referral can still be accepted; it stays marked overdue" \
	eval 'expect 0 && "$IHALA" --config "$DMA" status "$RE" | grep -q "\"status\":\"accepted\".*\"overdue\":true"'
run dmain5b "$DMA" inbox
check "5: dma hears the late acceptance" inbox_line "$OUT" "$RE" '"sender":"molsa".*"status":"accepted"'

# --- 6: illegal moves change nothing --------------------------------------------------------------
R6=acc-$$
R7=req-$$
R8=nocons-$$
mkref "$T/r6.json" "$R6" normal 'حسين علي جاسم'
mkref "$T/r7.json" "$R7" normal 'روژین سەلیم'
mkoutcome "$T/o6.json" "$R6"
mkoutcome "$T/o7.json" "$R7"
run refer6 "$DMA" refer --to moh --file "$T/r6.json"
run refer7 "$DMA" refer --to moh --file "$T/r7.json"
run acc6 "$MOH" accept "$R6"
# Everyone takes what waits (moh's acks make R7 received), DMA last: it hears of those.
for a in "$MOH" "$HI" "$MOLSA" "$DMA"; do "$IHALA" --config "$a" inbox >/dev/null 2>&1; done
is_received() { [ "$(status_of "$DMA" "$1")" = received ]; }
check "6: set-up: one referral accepted, one received" \
	eval '[ "$(status_of "$DMA" "$R6")" = accepted ] && wait_for 5 is_received "$R7"'
"$IHALA" --config "$DMA" status "$R6" >"$T/r6.before" 2>&1
"$IHALA" --config "$DMA" status "$R7" >"$T/r7.before" 2>&1
n_before=$(log_size)
check "6: the auditor replays the log (${n_before} entries)" test "$n_before" -gt 20

run ill1 "$HI" outcome "$R6" --file "$T/o6.json"
check "6: hi completes a referral it was not sent: UNKNOWN_REFERRAL, as for an unknown id" refused UNKNOWN_REFERRAL
run ill2 "$DMA" accept "$R7"
check "6: dma accepts its own referral: INVALID_TRANSITION" refused INVALID_TRANSITION
run ill3 "$MOH" outcome "$R7" --file "$T/o7.json"
check "6: outcome before acceptance: INVALID_TRANSITION" refused INVALID_TRANSITION
run ill4 "$AUD" refer --to moh --file "$T/r6.json"
check "6: the auditor submits a referral: READ_ONLY" refused READ_ONLY
run ill5 "$AUD" accept "$R7"
check "6: the auditor accepts a referral: READ_ONLY" refused READ_ONLY
run ill6 "$HI" accept "$R7"
check "6: hi sends a status update on moh's referral id: UNKNOWN_REFERRAL, as for an unknown id" refused UNKNOWN_REFERRAL
run ill7 "$MOLSA" progress "$R6" --status on-hold --reason no-capacity
check "6: molsa reports progress on moh's referral id: UNKNOWN_REFERRAL, as for an unknown id" refused UNKNOWN_REFERRAL
run ill8 "$MOH" cancel "$R6" --reason other
check "6: the recipient cancels: INVALID_TRANSITION" refused INVALID_TRANSITION
printf '{"messageId":"oc-%s","statusUpdate":{"referralId":"%s","status":"completed"}}\n' "$$" "$R6" >"$T/noout.json"
"$ENVSUBMIT" "$MOH" "$T/noout.json" >"$T/ill9.out" 2>"$T/ill9.err"
RC=$?
check "6: completed without an outcome: OUTCOME_REQUIRED" \
	eval '[ $RC -eq 1 ] && grep -q "^refused OUTCOME_REQUIRED: " "$T/ill9.out" || { show "$T/ill9.out" "$T/ill9.err"; false; }'
run ill10 "$MOH" progress "$R6" --status completed
check "6: the CLI itself will not send completed without an outcome (exit 2)" expect 2
printf '{"messageId":"sp-%s","from":"moh","statusUpdate":{"referralId":"%s","status":"in-progress"}}\n' "$$" "$R6" >"$T/spoof.json"
"$ENVSUBMIT" "$HI" "$T/spoof.json" >"$T/ill11.out" 2>"$T/ill11.err"
RC=$?
check "6: hi claiming to be moh: FROM_MISMATCH" \
	eval '[ $RC -eq 1 ] && grep -q "^refused FROM_MISMATCH: " "$T/ill11.out" || { show "$T/ill11.out" "$T/ill11.err"; false; }'
# The CLI says these before queueing anything (exit 2); the broker refuses them as well, which
# the raw envelopes show (envsubmit: what a client without the CLI's checks sends).
# envref NAME FILE: submit the clear part of the referral of FILE (protocol v2: without its
# personal fields, which are sealed) as dma to moh, raw (the probe: no node's checks before
# the broker's, as libihala now makes); sets RC, OUT, ERR.
envref() {
	printf '{"messageId":"%s-%s","to":"moh","referral":%s}\n' "$1" "$$" \
		"$(jq -c 'del(.survivor, .reason, .notes, .referringOfficer)' "$2")" >"$T/$1.env.json"
	OUT=$T/$1.out ERR=$T/$1.err
	"$IHALA_BUILD/tests/tools/probe" --endpoint "tcp://127.0.0.1:$port" --ca "$IHALA_PKI/ca.pem" \
		--cert "$IHALA_PKI/dma.pem" --key "$IHALA_PKI/dma.key" submit-json "$T/$1.env.json" \
		>"$OUT" 2>"$ERR"
	RC=$?
	grep -q "^receipt REFUSED" "$OUT" && RC=1
}
env_refused() { [ "$RC" -eq 1 ] && grep -q "^receipt REFUSED $1: " "$OUT" || { show "$OUT" "$ERR"; false; }; }
mkref "$T/r8a.json" "$R8" normal 'مريم يوسف' "" "" null
run ill12 "$DMA" refer --to moh --file "$T/r8a.json"
check "6: referral without consent: the CLI refuses it before queueing (exit 2)" \
	eval 'expect 2 && err_has "consent is required"'
envref ill12 "$T/r8a.json"
check "6: referral without consent: CONSENT_MISSING" env_refused CONSENT_MISSING
mkref "$T/r8b.json" "$R8" normal 'مريم يوسف' "" "" '{"given":false,"agencies":["moh"]}'
run ill13 "$DMA" refer --to moh --file "$T/r8b.json"
check "6: referral whose consent was not given: the CLI refuses it (exit 2)" \
	eval 'expect 2 && err_has "consent is required"'
envref ill13 "$T/r8b.json"
check "6: referral whose consent was not given: CONSENT_MISSING" env_refused CONSENT_MISSING
mkref "$T/r8c.json" "$R8" normal 'مريم يوسف' "" '["hi"]'
run ill14 "$DMA" refer --to moh --file "$T/r8c.json"
check "6: consent that does not cover the recipient: the CLI names it (exit 2)" \
	eval 'expect 2 && err_has "consent.agencies does not name the recipient '"'moh'"' (it names: hi)"'
envref ill14 "$T/r8c.json"
check "6: consent that does not cover the recipient: CONSENT_MISSING, names it" \
	eval 'env_refused CONSENT_MISSING && grep -q moh "$OUT"'

n_after=$(log_size)
check "6: the log did not grow (${n_before} -> ${n_after} entries)" test "$n_after" -eq "$n_before"
"$IHALA" --config "$DMA" status "$R6" >"$T/r6.after" 2>&1
"$IHALA" --config "$DMA" status "$R7" >"$T/r7.after" 2>&1
check "6: both referrals' state and history unchanged" \
	eval 'cmp -s "$T/r6.before" "$T/r6.after" && cmp -s "$T/r7.before" "$T/r7.after" && grep -q "\"status\":\"accepted\"" "$T/r6.after"'
run st8 "$DMA" status "$R8"
check "6: the refused referral does not exist" refused UNKNOWN_REFERRAL
for a in dma moh hi molsa; do
	conf=$T/$a/client.conf
	"$IHALA" --config "$conf" inbox >"$T/after-$a.out" 2>/dev/null
done
check "6: no party's inbox got anything from the refusals" \
	eval '[ ! -s "$T/after-dma.out" ] && [ ! -s "$T/after-moh.out" ] && [ ! -s "$T/after-hi.out" ] && [ ! -s "$T/after-molsa.out" ]'
run legal6 "$MOH" outcome "$R6" --file "$T/o6.json"
check "6: after all that, the legal move still works" \
	eval 'expect 0 && [ "$(status_of "$DMA" "$R6")" = completed ]'

stop_broker
check "broker exits cleanly on SIGTERM" eval '! kill -0 "$BROKER_PID" 2>/dev/null'
