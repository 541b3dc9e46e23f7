#!/usr/bin/env bash
# web.sh - `ihala web` (issue 18): MoH's clerk in a real headless browser (Chromium driven by
# Selenium, tests/integration/web_browser.py) against a real broker and DMA's node.
#
# Refused at start: a --listen address that is not loopback (no TLS). Then MoH's node serves
# its inbox; a second `ihala inbox` of the node is refused while it takes the deliveries. In
# the browser: the one-time link opens the inbox; DMA refers a survivor whose name holds
# <script>alert(1)</script> and Arabic, the referral appears live, its name as text; the clerk
# accepts and DMA's node sees it accepted; a third is declined with a reason code and the
# reason in words, and DMA's node sees it declined with them; a decline being filled in is not
# wiped by a live update; the inbox lists new referrals first, by priority; a referral's page
# (reached by the keyboard) shows its timeline and the survivor's record, its forms labelled;
# a note and progress posted there reach DMA's node as typed; DMA's new-referral form refused
# by the broker (no consent given) comes back with what was typed; DMA's clerk then creates
# the referral with its consent record in DMA's own ihala web and MoH's inbox shows it live; an outcome
# from DMA is refused in the broker's words; the auditor's page verifies the log and shows
# the entries' clear parts only; Arabic and Kurdish pages are dir=rtl; an emergency referral
# turns overdue. With curl: the link works once, a page without the session and a POST (accept,
# decline) without the session's CSRF token (or from another origin or Host) get 403, a decline
# without a valid reason code 400, and a refusal of the broker is shown in words; an onward
# referral from the referral's page reaches MoLSA with only the data categories chosen, and
# one to an agency the consent does not name is refused in words. With the
# broker down it still starts and shows the node's journal. The broker's shortest deadline is
# 1m, so the test takes a little over a minute.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
PY=/usr/bin/python3
BROWSER_STEPS=28

plan $((38 + BROWSER_STEPS))

# The browser and its driver are stopped whatever happens: web_browser.py quits them, and
# the process group it leads (setsid) is killed here, then any process still using this
# test's own Chromium profile (by pid, from /proc).
BROWSER_PID=""
trap 'stop_browser; cleanup' EXIT

# code_of URL [CURL ARGS...]: the HTTP status curl gets.
code_of() {
	local url=$1
	shift
	curl -s -o "$T/curl.body" -D "$T/curl.head" -w '%{http_code}' --max-time 60 "$@" "$url"
}
is() {
	[ "$1" = "$2" ] && return 0
	diag "got '$1', wanted '$2'"
	show "$T/curl.body"
	return 1
}

port=$(free_port)
write_broker_conf "$T/b" "$port" "
[deadlines]
emergency = 1m"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
MOLSA=$(write_client_conf "$T" molsa "$port")
# the auditor's node checks the broker's checkpoints with its key (its page's Verify)
AUD=$(write_client_conf "$T" auditor "$port")
echo "checkpoint_key = $IHALA_PKI/checkpoint.pub" >>"$AUD"
unset IHALA_CONFIG
start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts ([deadlines] emergency = 1m)"

# --- refused at start -------------------------------------------------------------------------
RUN_TIMEOUT=60 # a web that wrongly starts would serve until killed
run nl "$MOH" web --listen 0.0.0.0:0
check "--listen 0.0.0.0 without TLS: refused, exit 2, says why" \
	eval 'expect 2 && err_has "refusing to listen on '"'"'0.0.0.0:0'"'"' without TLS"'
run nl6 "$MOH" web --listen '[::]:0'
check "--listen [::] without TLS: refused, exit 2" eval 'expect 2 && err_has "without TLS"'
run nl2 "$MOH" web --listen 10.1.2.3:8080
check "--listen 10.1.2.3:8080: refused, exit 2" eval 'expect 2 && err_has "without TLS"'

# --- MoH's node serves its inbox --------------------------------------------------------------
OVD=ovd-$$
RID=web-$$
DEC=dec-$$
DRF=drf-$$
NEW=new-$$
NAME='<script>alert(1)</script> & نور الهدى خلف'
mkref "$T/ovd.json" "$OVD" emergency 'هێمن جەلال'
mkref "$T/ref.json" "$RID" urgent "$NAME"
mkref "$T/dec.json" "$DEC" normal 'سارا ئەحمەد'
mkref "$T/drf.json" "$DRF" normal 'Layla Saeed'
run ovd "$DMA" refer --to moh --file "$T/ovd.json"
check "DMA refers an emergency referral nobody will answer" expect 0
run dec "$DMA" refer --to moh --file "$T/dec.json"
check "DMA refers a referral MoH will decline" expect 0

IHALA_WEB_REFRESH_MS=1000 bg "$IHALA" --config "$MOH" web >"$T/web.out" 2>"$T/web.err" </dev/null
WEB_PID=$LAST_PID
check "ihala web prints a one-time link on loopback" \
	wait_for 60 grep -qE '^http://127\.0\.0\.1:[0-9]+/login\?token=[0-9a-f]{64}$' "$T/web.out"
URL=$(head -n 1 "$T/web.out")
BASE=${URL%%/login*}
diag "web: $URL"

run inbox2 "$MOH" inbox
check "while ihala web takes MoH's deliveries, ihala inbox is refused (exit 4)" \
	eval 'expect 4 && err_has "another ihala process takes"'

check "a page without a session: 403" is "$(code_of "$BASE/")" 403
check "an asset with the strict CSP, nosniff" \
	eval 'is "$(code_of "$BASE/static/app.js")" 200 &&
	grep -qi "^content-security-policy: default-src '"'"'self'"'"'; script-src '"'"'self'"'"';" "$T/curl.head" &&
	grep -qi "^x-content-type-options: nosniff" "$T/curl.head"'

# --- the browser ------------------------------------------------------------------------------
WEB_T=$T WEB_URL=$URL WEB_IHALA=$IHALA WEB_DMA_CONF=$DMA WEB_RID=$RID WEB_OVD=$OVD WEB_DEC=$DEC WEB_DRF=$DRF \
	WEB_NEW=$NEW WEB_AUD_CONF=$AUD \
	WEB_NAME=$NAME WEB_SCREENSHOTS=${WEB_SCREENSHOTS:-} setsid "$PY" "$IHALA_ROOT/tests/integration/web_browser.py" \
	>"$T/browser.out" 2>"$T/browser.err" </dev/null &
BROWSER_PID=$!
wait "$BROWSER_PID"
brc=$?
n=0
while IFS= read -r line; do
	case $line in
	"PASS "*) ok "browser: ${line#PASS }" ; n=$((n + 1)) ;;
	"FAIL "*) not_ok "browser: ${line#FAIL }" ; n=$((n + 1)) ;;
	"#"*) echo "$line" ;;
	esac
done <"$T/browser.out"
if [ "$n" -ne "$BROWSER_STEPS" ] || [ "$brc" -ne 0 ]; then
	diag "web_browser.py: exit $brc, $n of $BROWSER_STEPS steps"
	show "$T/browser.err"
fi
stop_browser
BROWSER_PID=""

# --- with curl and the browser's session ------------------------------------------------------
SID=$(cat "$T/session.txt" 2>/dev/null)
CSRF=$(cat "$T/csrf.txt" 2>/dev/null)
C=(-H "Cookie: ihala_session=$SID")
check "the link works once: opened again, 403" is "$(code_of "$URL")" 403
check "the session's page: 200" is "$(code_of "$BASE/" "${C[@]}")" 200
check "POST /accept without the CSRF token: 403" \
	is "$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID")" 403
check "POST /accept with another CSRF token: 403" \
	is "$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID" \
		--data-urlencode "csrf=$(printf '%064d' 0)")" 403
check "POST /accept with the token but from another Origin: 403" \
	is "$(code_of "$BASE/accept" "${C[@]}" -H "Origin: http://evil.example" \
		--data-urlencode "rid=$RID" --data-urlencode "csrf=$CSRF")" 403
check "POST /decline without the CSRF token: 403" \
	is "$(code_of "$BASE/decline" "${C[@]}" --data-urlencode "rid=$OVD" \
		--data-urlencode "reason=no-capacity")" 403
check "POST /decline with the token but from another Origin: 403" \
	is "$(code_of "$BASE/decline" "${C[@]}" -H "Origin: http://evil.example" \
		--data-urlencode "rid=$OVD" --data-urlencode "reason=no-capacity" \
		--data-urlencode "csrf=$CSRF")" 403
for a in progress outcome note onward refer verify; do
	check "POST /$a without the CSRF token: 403, nothing done" \
		is "$(code_of "$BASE/$a" "${C[@]}" --data-urlencode "rid=$RID" \
			--data-urlencode "status=in-progress" --data-urlencode "text=x")" 403
done
check "POST /decline with a reason code that is none: 400" \
	is "$(code_of "$BASE/decline" "${C[@]}" --data-urlencode "rid=$OVD" \
		--data-urlencode "reason=bored" --data-urlencode "csrf=$CSRF")" 400
check "the refused declines did nothing: $OVD still waits for an answer" \
	eval '"$IHALA" --config "$DMA" status "$OVD" >"$T/ovd.st" 2>&1 &&
	head -n 1 "$T/ovd.st" | "$PY" -c "import json,sys; sys.exit(json.load(sys.stdin)[\"status\"] not in (\"requested\", \"received\"))" ||
	{ show "$T/ovd.st"; false; }'
check "another Host name (DNS rebinding): 403" \
	is "$(code_of "$BASE/" "${C[@]}" -H "Host: evil.example:80")" 403
code=$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID" --data-urlencode "csrf=$CSRF")
code_of "$BASE/" "${C[@]}" >/dev/null
check "accepting it again: the broker's refusal is shown in words" \
	eval 'is "$code" 303 && grep -q "id=\"flash\"" "$T/curl.body" &&
	grep -qF "The broker refused it: INVALID_TRANSITION" "$T/curl.body"'
code=$(code_of "$BASE/decline" "${C[@]}" --data-urlencode "rid=$DEC" \
	--data-urlencode "reason=other" --data-urlencode "csrf=$CSRF")
code_of "$BASE/" "${C[@]}" >/dev/null
check "declining it again: the broker's refusal is shown in words" \
	eval 'is "$code" 303 && grep -q "id=\"flash\"" "$T/curl.body" &&
	grep -qF "The broker refused it: INVALID_TRANSITION" "$T/curl.body"'
# A new-referral form the node cannot take: the form again with what was typed (the clerk
# types nothing twice) and what is wrong in words, not a bare 400; nothing is sent.
refer_form() {
	code_of "$BASE/refer" "${C[@]}" --data-urlencode "csrf=$CSRF" --data-urlencode "to=molsa" \
		--data-urlencode "priority=urgent" --data-urlencode "name=هێمن جەلال" \
		--data-urlencode "reason=needs a wheelchair" "$@"
}
code=$(refer_form --data-urlencode "rid=bad-year-$$" --data-urlencode "birthYear=1850")
check "new-referral form with a birth year of 1850: the form again, the typed values kept, what is wrong in words" \
	eval 'is "$code" 200 && grep -qF "The birth year is not a year" "$T/curl.body" &&
	grep -qF "value=\"هێمن جەلال\"" "$T/curl.body" && grep -qF "value=\"1850\"" "$T/curl.body" &&
	grep -qF ">needs a wheelchair</textarea>" "$T/curl.body"'
code=$(refer_form --data-urlencode "rid=bad-ag-$$" --data-urlencode "agencies=hi, h<i>")
check "new-referral form naming an agency id that is none in the consent: the form again, naming it" \
	eval 'is "$code" 200 && grep -qF "names an agency id that is not valid: h&lt;i&gt;" "$T/curl.body" &&
	grep -qF "value=\"hi, h&lt;i&gt;\"" "$T/curl.body"'
unsent() { run unsent "$DMA" status "$1" && [ "$RC" -ne 0 ] && err_has "UNKNOWN_REFERRAL"; }
check "neither was sent: the broker knows no referral bad-year-$$ nor bad-ag-$$" \
	eval 'unsent "bad-year-$$" && unsent "bad-ag-$$"'

# --- an onward referral from the referral's page, with curl and the browser's session --------
code=$(code_of "$BASE/onward" "${C[@]}" --data-urlencode "rid=$RID" --data-urlencode "csrf=$CSRF" \
	--data-urlencode "to=molsa" --data-urlencode "priority=normal" \
	--data-urlencode "service=social-protection" --data-urlencode "data=identity" \
	--data-urlencode "data=needs" --data-urlencode "reason=disability allowance")
code_of "$BASE/r/$RID" "${C[@]}" >/dev/null
check "onward referral to MoLSA from the referral's page: sent, the page says so" \
	eval 'is "$code" 303 && grep -q "id=\"flash\" role=\"status\"" "$T/curl.body" &&
	grep -qF "Referral sent: R-" "$T/curl.body"'
run molsa_inbox "$MOLSA" inbox
check "MoLSA's node receives it: parent $RID, the survivor's name opened, only the data categories chosen" \
	eval 'expect 0 && "$PY" - "$OUT" "$RID" "$NAME" <<'"'"'PYEOF'"'"'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
refs = [l["envelope"]["referral"] for l in lines if "referral" in l.get("envelope", {})]
ok = [r for r in refs if r.get("parentReferralId") == sys.argv[2]]
if not ok:
    sys.exit("no onward referral of %s in %r" % (sys.argv[2], refs))
r = ok[0]
s = r.get("survivor", {})
if s.get("name") != sys.argv[3] or "birthYear" in s or "sex" in s or "district" in s:
    sys.exit("survivor %r" % s)
if r["consent"].get("agencies") != ["molsa"] or sorted(r["consent"].get("dataCovered")) != ["identity", "needs"]:
    sys.exit("consent %r" % r["consent"])
PYEOF'
code=$(code_of "$BASE/onward" "${C[@]}" --data-urlencode "rid=$RID" --data-urlencode "csrf=$CSRF" \
	--data-urlencode "to=hi" --data-urlencode "priority=normal" \
	--data-urlencode "service=psychosocial-support" --data-urlencode "data=needs")
code_of "$BASE/r/$RID" "${C[@]}" >/dev/null
check "onward referral to an agency the survivor's consent does not name: refused in words" \
	eval 'is "$code" 303 && grep -q "id=\"flash\" role=\"alert\"" "$T/curl.body" &&
	grep -qE "(The broker refused it|The answer could not be sent): [A-Z_]+: " "$T/curl.body"'

kill -TERM "$WEB_PID"
wait "$WEB_PID"
rc=$?
check "ihala web stops on SIGTERM, exit 0" is "$rc" 0

# --- with the broker down: it starts, and shows what the node's journal holds ----------------
stop_broker
IHALA_WEB_REFRESH_MS=1000 bg "$IHALA" --config "$MOH" web >"$T/web2.out" 2>"$T/web2.err" </dev/null
WEB_PID=$LAST_PID
check "with the broker down, ihala web starts anyway and prints its link" \
	wait_for 60 grep -qE '^http://127\.0\.0\.1:[0-9]+/login\?token=' "$T/web2.out"
URL=$(head -n 1 "$T/web2.out")
code=$(curl -s -c "$T/jar" -b "$T/jar" -L -o "$T/page2.html" -w '%{http_code}' --max-time 60 "$URL")
check "with the broker down, the page lists the journal's referrals and says the broker is unreachable" \
	eval '[ "$code" = 200 ] && grep -qF "data-referral=\"$RID\"" "$T/page2.html" &&
	grep -qF "data-referral=\"$OVD\"" "$T/page2.html" && grep -qF "id=\"broker-down\"" "$T/page2.html" ||
	{ diag "HTTP $code"; show "$T/page2.html"; show "$T/web2.err"; false; }'
kill -TERM "$WEB_PID"
wait "$WEB_PID"
rc=$?
check "and stops on SIGTERM, exit 0" is "$rc" 0
