#!/usr/bin/env bash
# consent.sh - the consent's scope is enforced by the broker (issue 16, item 4).
#
# A referral whose sealed part declares a data category its consent does not cover is refused,
# naming the category (the CLI names the field before sending); an onward referral whose consent is not within its parent's is
# refused, naming what is missing; what is within is accepted. Every refusal is
# CONSENT_MISSING, leaves no referral, and grows no log.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala

plan 19

# refused_with CODE TEXT: the last run was refused with CODE and exactly this sentence.
refused_with() {
	expect 1 || return 1
	grep -qxF -- "ihala: refused: $1: $2" "$ERR" && return 0
	diag "stderr lacks the line: ihala: refused: $1: $2"
	show "$ERR"
	return 1
}
# The ihala CLI says these refusals before queueing (exit 2); the broker's own refusal is
# shown with raw envelopes (the probe: what a client without the CLI's checks sends). In
# protocol v2 the broker sees only the clear part and the categories its sealed part declares
# (Envelope.data_declared): the sealed part here is opaque bytes.
PROBE=$IHALA_BUILD/tests/tools/probe
head -c 1500 /dev/urandom >"$T/opaque.der"
# envrun NAME AGENCY TO FILE DECLARED: the referral (clear part) of FILE submitted raw by AGENCY
# to TO with a sealed part declaring DECLARED (JSON list); sets RC, OUT, ERR.
envrun() {
	printf '{"messageId":"%s-%s","to":"%s","dataDeclared":%s,"referral":%s}\n' "$1" "$$" "$3" \
		"$5" "$(cat "$4")" >"$T/$1.env.json"
	OUT=$T/$1.out ERR=$T/$1.err
	"$PROBE" --endpoint "tcp://127.0.0.1:$port" --ca "$IHALA_PKI/ca.pem" \
		--cert "$IHALA_PKI/$2.pem" --key "$IHALA_PKI/$2.key" --sealed "$T/opaque.der" \
		submit-json "$T/$1.env.json" >"$OUT" 2>"$ERR"
	RC=$?
	grep -q "^receipt REFUSED" "$OUT" && RC=1
}
# env_refused_with CODE TEXT: the broker refused the raw envelope with CODE and this sentence.
env_refused_with() {
	expect 1 || return 1
	grep -qxF -- "receipt REFUSED $1: $2" "$OUT" && return 0
	diag "stdout lacks the line: receipt REFUSED $1: $2"
	show "$OUT"
	return 1
}
log_size() { "$IHALA" --config "$AUD" audit replay 2>/dev/null | grep -c '^{"seq":'; }

# mkc FILE ID PARENT AGENCIES-JSON DATA-JSON SURVIVOR-EXTRA: a referral whose consent covers
# AGENCIES and DATA; its survivor has a case id and SURVIVOR-EXTRA (JSON members, may be "").
mkc() {
	cat >"$1" <<JSON
{"referralId":"$2","parentReferralId":"$3","priority":"normal",
 "services":["social-protection"],
 "reason":"needs registration for the disability allowance",
 "survivor":{"caseId":"IQ-NIN-$2"$6},
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
            "agencies":$4,"dataCovered":$5}}
JSON
}
# mkclear FILE ID PARENT AGENCIES-JSON DATA-JSON: the same referral's clear part (v2: no
# survivor, no reason: those are sealed).
mkclear() {
	cat >"$1" <<JSON
{"referralId":"$2","parentReferralId":"$3","priority":"normal",
 "services":["social-protection"],
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
            "agencies":$4,"dataCovered":$5}}
JSON
}

NAME='ئاراس کەریم عەبدوڵا'
port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
HI=$(write_client_conf "$T" hi "$port")
AUD=$(write_client_conf "$T" auditor "$port")
unset IHALA_CONFIG

start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

# --- data categories -------------------------------------------------------------------------
n0=$(log_size)
mkc "$T/c1.json" "c1-$$" "" '["moh","hi"]' '["needs"]' ",\"name\":\"$NAME\""
run c1 "$DMA" refer --to moh --file "$T/c1.json"
check "the CLI: consent covering only needs, a full name carried: exit 2 before queueing, names the field" \
	eval 'expect 2 && grep -qE "c1.json:4:[0-9]+: survivor.name is identity data, which consent.dataCovered does not include" "$ERR" || { show "$ERR"; false; }'
mkclear "$T/c1c.json" "c1-$$" "" '["moh","hi"]' '["needs"]'
envrun c1 dma moh "$T/c1c.json" '["needs","identity"]'
check "consent covering only needs, a sealed part declaring identity: refused, names IDENTITY" \
	env_refused_with CONSENT_MISSING "the consent does not cover IDENTITY, which the sealed part declares"
mkclear "$T/c2c.json" "c2-$$" "" '["moh","hi"]' '["needs","identity"]'
envrun c2 dma moh "$T/c2c.json" '["identity","injury"]'
check "consent without injury, a sealed part declaring injury: refused, names INJURY" \
	env_refused_with CONSENT_MISSING "the consent does not cover INJURY, which the sealed part declares"
mkclear "$T/c3.json" "c3-$$" "" '["moh","hi"]' '[]'
envrun c3 dma moh "$T/c3.json" '[]'
check "consent covering no category: refused, the services are needs" \
	env_refused_with CONSENT_MISSING "the consent does not cover NEEDS, which services is"
run c3st "$DMA" status "c1-$$"
check "the refused referral does not exist" expect 1
n1=$(log_size)
check "the refusals left the log as it was ($n0 -> $n1 entries)" test "$n1" -eq "$n0"
P=par-$$
mkc "$T/p.json" "$P" "" '["moh","hi"]' '["needs","identity"]' ",\"name\":\"$NAME\""
run p "$DMA" refer --to moh --file "$T/p.json"
check "consent covering identity and needs, name and needs carried: accepted" expect 0
run pacc "$MOH" accept "$P"
check "moh accepts it" expect 0

# --- onward referrals: within the parent's consent ---------------------------------------------
n0=$(log_size)
mkc "$T/o1.json" "o1-$$" "$P" '["molsa"]' '["needs"]' ""
run o1 "$MOH" refer --to molsa --file "$T/o1.json"
check "the issue's case: parent covers moh and hi, onward consent [molsa]: refused, names molsa" \
	refused_with CONSENT_MISSING "the parent referral's consent does not cover agency 'molsa'"
mkc "$T/o2.json" "o2-$$" "$P" '["hi"]' '["needs","identity","injury"]' \
	",\"name\":\"$NAME\",\"injury\":{\"deviceType\":\"landmine-ap\"}"
run o2 "$MOH" refer --to hi --file "$T/o2.json"
check "onward consent covering injury, the parent's not: refused, names INJURY" \
	refused_with CONSENT_MISSING "the parent referral's consent does not cover data category INJURY"
mkc "$T/o3.json" "o3-$$" "$P" '["hi","molsa"]' '["needs","demographics"]' ",\"birthYear\":1990"
run o3 "$MOH" refer --to hi --file "$T/o3.json"
check "onward consent outside in agency and category: refused, names both" \
	refused_with CONSENT_MISSING \
	"the parent referral's consent does not cover agency 'molsa', data category DEMOGRAPHICS"
mkc "$T/o4.json" "o4-$$" "$P" '["hi"]' '["needs"]' ",\"name\":\"$NAME\""
run o4 "$MOH" refer --to hi --file "$T/o4.json"
check "the CLI: onward referral carrying a name its consent does not cover: exit 2, nothing queued" \
	eval 'expect 2 && grep -qF "survivor.name is identity data" "$ERR"'
mkclear "$T/o4c.json" "o4-$$" "$P" '["hi"]' '["needs"]'
envrun o4 moh hi "$T/o4c.json" '["identity"]'
check "onward referral within the parent's consent but declaring identity its own does not cover: refused" \
	env_refused_with CONSENT_MISSING "the consent does not cover IDENTITY, which the sealed part declares"
n1=$(log_size)
check "the onward refusals left the log as it was ($n0 -> $n1 entries)" test "$n1" -eq "$n0"
run o4st "$HI" status "o4-$$"
check "... and the refused onward referral does not exist" expect 1
mkc "$T/o5.json" "o5-$$" "$P" '["hi"]' '["needs"]' ""
run o5 "$MOH" refer --to hi --file "$T/o5.json"
check "onward consent within the parent's (hi; needs), carrying only needs: accepted" expect 0
run hiin "$HI" inbox
check "hi receives it, without the survivor's name" \
	eval 'expect 0 && grep -qF "\"referralId\":\"o5-$$\"" "$OUT" && ! grep -qF "$NAME" "$OUT"'
run pst "$DMA" status "$P"
check "the parent's state shows the consent scope it recorded" \
	eval 'expect 0 && grep -qF "\"consentAgencies\":[\"moh\",\"hi\"],\"consentData\":[\"needs\",\"identity\"]" "$OUT" || { show "$OUT"; false; }'

stop_broker
