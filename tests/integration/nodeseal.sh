#!/usr/bin/env bash
# nodeseal.sh - the nodes seal and open (issue 16): a referral with Arabic and Kurdish names goes
# sealed through a real broker and the recipient node opens it intact; the names are in clear in
# no node store and nowhere in the broker's data dir; a substituted encryption certificate
# (another agency's, a foreign CA's, an expired one) is refused by the sending node, nothing
# queued.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
P=$IHALA_PKI

plan 16

NAME='ژینەب قادر هەورامی'
NOTES='يرجى الاتصال بها صباحاً في سنجار'
CASE=IQ-NIN-SEALED-4471
# mkref FILE ID: a referral of the survivor above (its consent covers what it carries).
mkref() {
	cat >"$1" <<JSON
{"referralId":"$2","priority":"urgent",
 "services":["physical-rehabilitation"],
 "reason":"below-knee amputation",
 "survivor":{"caseId":"$CASE","name":"$NAME","sex":"female","birthYear":1996,
             "governorate":"Ninewa","district":"Sinjar"},
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
            "agencies":["moh"],"dataCovered":["identity","demographics","location","needs"]},
 "notes":"$NOTES"}
JSON
}
# count_in DIR TEXT: how many files under DIR hold TEXT (bytes).
count_in() { grep -rlaF -- "$2" "$1" 2>/dev/null | wc -l; }

port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
unset IHALA_CONFIG
start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts (its directory lists each agency's encryption certificate)"

R=sealed-$$
mkref "$T/r.json" "$R"
run refer "$DMA" refer --to moh --file "$T/r.json"
check "dma refers (sealed to moh and dma): exit 0" expect 0
run inbox "$MOH" inbox
check "moh takes it: exit 0" expect 0
check "... opened: the Kurdish name intact" out_has "\"name\":\"$NAME\""
check "... the Arabic notes intact" out_has "\"notes\":\"$NOTES\""
check "... the case id (sealed too)" out_has "\"caseId\":\"$CASE\""
run status "$DMA" status "$R"
check "dma's status shows its own referral's details (its journal, opened on read)" \
	bash -c "[ $RC -eq 0 ] && grep -qF '$NAME' '$OUT'"
check "no node store holds the name in clear" \
	bash -c "[ \$(grep -rlaF -- '$NAME' '$T/dma/data' '$T/moh/data' | wc -l) -eq 0 ]"
check "... nor the notes, nor the case id" \
	bash -c "[ \$(grep -rlaF -e '$NOTES' -e '$CASE' '$T/dma/data' '$T/moh/data' | wc -l) -eq 0 ]"
check "the broker's data dir holds none of them in clear" \
	bash -c "[ $(count_in "$T/b/data" "$NAME") -eq 0 ] && [ $(count_in "$T/b/data" "$CASE") -eq 0 ] && [ $(count_in "$T/b/data" "$NOTES") -eq 0 ]"
check "nor the broker's log" bash -c "! grep -qF -e '$NAME' -e '$CASE' '$T/b/broker.log'"

# --- a substituted certificate for moh: the sending node refuses, nothing queued -------------
reloads() { grep -c 'reload done' "$T/b/broker.log"; }
# subst CERT TEXT: the broker's directory offers CERT as moh's; a referral to moh is refused
# by dma's node (exit 4) naming moh and TEXT, and nothing waits in the outbox.
subst() {
	local n
	n=$(reloads)
	sed -i "s|^encryption_cert = .* ; moh\$|encryption_cert = $P/$1 ; moh|" "$T/b/broker.conf"
	kill -HUP "$BROKER_PID"
	wait_for 5 eval '[ "$(reloads)" -gt "$n" ]' || { diag "reload failed"; return 1; }
	mkref "$T/s.json" "$R-$1"
	run "subst-$1" "$DMA" refer --to moh --file "$T/s.json"
	exit_and_err 4 "no valid encryption certificate for agency 'moh'" && err_has "$2" &&
		"$IHALA" --config "$DMA" outbox --json 2>/dev/null | head -1 | grep -qF '"left":0' &&
		! grep -qF -- "$R-$1" <("$IHALA" --config "$DMA" outbox --json 2>/dev/null)
}
check "hi's certificate offered as moh's: refused" subst hi-enc.crt "names agency 'hi'"
check "a foreign CA's certificate as moh's: refused" subst foreign-enc.crt "unable to get local issuer certificate"
check "an expired certificate of moh: refused" subst moh-enc-expired.crt "certificate has expired"
check "moh's own certificate again: the referral goes" \
	bash -c "sed -i 's|^encryption_cert = .* ; moh\$|encryption_cert = $P/moh-enc.crt ; moh|' '$T/b/broker.conf'"
kill -HUP "$BROKER_PID"
sleep 1
run again "$DMA" refer --to moh --file "$T/s.json"
check "... exit 0" expect 0
