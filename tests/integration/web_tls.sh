#!/usr/bin/env bash
# web_tls.sh - `ihala web` beyond loopback (issue 18): HTTPS and clerk accounts, with curl.
#
# Refused at start: a --listen address beyond loopback without [web] cert_file/key_file, and
# with them but without a clerk account. `ihala web-user` keeps accounts in a 0600 file of
# argon2id hashes (no password in it), refuses bad names and short passwords. Then MoH's node
# serves https on 0.0.0.0: TLS 1.3 by default, 1.2 allowed, 1.1 refused, no plain HTTP; the
# login form logs a clerk in with the right password (a Secure HttpOnly SameSite=Strict
# cookie), refuses a wrong one and an unknown name alike, and a login POST without the
# form's token; a clerk added while it runs logs in too (two sessions at once); a POST
# without the session's CSRF token is refused; the clerk's accept reaches DMA and carries the
# clerk's pseudonymous id (not the name) in `ihala audit replay` and the CSV export; `ihala --clerk ID` sets it
# from the command line and a bad one is refused. A clerk removed, or given a new password, is out at once. Five failed
# logins make the address wait. On loopback with HTTPS the one-time link is https and its
# clerk id is "local". In a real headless Chromium (web_tls_browser.py, trusting the server's
# key): a wrong password refused in words, the right one opens the inbox, the clerk accepts,
# the accept carries her clerk id, the Sign out button has the page's style, Sign out ends
# the session.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
PY=/usr/bin/python3
BROWSER_STEPS=5
plan $((56 + BROWSER_STEPS))

# The browser and its driver are stopped whatever happens (as in web.sh): the process group
# web_tls_browser.py leads, its chromedriver, any process using this test's Chromium profile.
BROWSER_PID=""
trap 'stop_browser; cleanup' EXIT

RUN_TIMEOUT=60 # a web that wrongly starts would serve until killed
# code_of URL [CURL ARGS...]: the HTTP status curl gets over HTTPS (the test CA).
code_of() {
	local url=$1
	shift
	curl -s -o "$T/curl.body" -D "$T/curl.head" -w '%{http_code}' --max-time 60 \
		--cacert "$IHALA_PKI/ca.pem" --resolve "localhost:$WPORT:127.0.0.1" "$@" "$url"
}
is() {
	[ "$1" = "$2" ] && return 0
	diag "got '$1', wanted '$2'"
	show "$T/curl.head"
	show "$T/curl.body"
	return 1
}
# field NAME: the value of the first hidden input NAME in the last page curl got.
field() { sed -n 's/.*name="'"$1"'" value="\([0-9a-f]*\)".*/\1/p' "$T/curl.body" | head -n 1; }

port=$(free_port)
write_broker_conf "$T/b" "$port"
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
AUD=$(write_client_conf "$T" auditor "$port")
unset IHALA_CONFIG
start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

# --- refused at start -------------------------------------------------------------------------
run nl "$MOH" web --listen 0.0.0.0:0
check "--listen 0.0.0.0 without [web] cert_file: refused, exit 2, says why" \
	eval 'expect 2 && err_has "refusing to listen on '"'"'0.0.0.0:0'"'"' without TLS" &&
	err_has "set [web] cert_file and key_file"'

# MoH's node with HTTPS: the dev PKI's broker certificate (localhost, 127.0.0.1) serves
MOHT=$T/moh/client-tls.conf
cp "$MOH" "$MOHT"
cat >>"$MOHT" <<CONF

[web]
cert_file = $IHALA_PKI/broker.pem
key_file = $IHALA_PKI/broker.key
server_name = localhost
CONF
run nl2 "$MOHT" web --listen 0.0.0.0:0
check "with HTTPS but no clerk account: refused, exit 2, says how to add one" \
	eval 'expect 2 && err_has "without clerk accounts: add one with '"'"'ihala web-user add NAME'"'"'"'
BADKEY=$T/moh/client-badkey.conf
cp "$IHALA_PKI/broker.key" "$T/open.key"
chmod 644 "$T/open.key"
sed "s|^key_file = $IHALA_PKI/broker.key|key_file = $T/open.key|" "$MOHT" >"$BADKEY"
run badkey "$BADKEY" web --listen 0.0.0.0:0
check "a [web] key_file open to others: refused at start" eval '[ "$RC" -ne 0 ] && err_has "open.key"'

# --- web-user ---------------------------------------------------------------------------------
PW='correct horse battery staple'
USERS=$T/moh/data/web-users
printf '%s\n' "$PW" | "$IHALA" --config "$MOHT" web-user add layla --password-stdin \
	>"$T/add.out" 2>"$T/add.err"
RC=$? ERR=$T/add.err
check "web-user add layla --password-stdin: exit 0" expect 0
check "web-users is mode 0600" is "$(stat -c %a "$USERS")" 600
hashed() { grep -q '^layla c-[0-9a-f]\{16\} [$]argon2id[$]v=19[$]m=' "$USERS" && ! grep -qF "$PW" "$USERS"; }
check "web-users holds an argon2id hash, not the password" hashed
printf '%s\n' "$PW" | "$IHALA" --config "$MOHT" web-user add layla --password-stdin 2>"$T/add2.err"
RC=$? ERR=$T/add2.err
check "web-user add of an existing name: exit 2" eval 'expect 2 && err_has "exists already"'
printf 'short\n' | "$IHALA" --config "$MOHT" web-user add omar --password-stdin 2>"$T/add3.err"
RC=$? ERR=$T/add3.err
check "a password of 5 bytes: refused, exit 2" eval 'expect 2 && err_has "10..1024 bytes"'
printf '%s\n' "$PW" | "$IHALA" --config "$MOHT" web-user add 'Layla Saeed' --password-stdin \
	2>"$T/add4.err"
RC=$? ERR=$T/add4.err
check "a name with capitals and a space: refused, exit 2" eval 'expect 2 && err_has "invalid name"'
run list "$MOHT" web-user list
CLERK=$(sed -n 's/.*"name":"layla","clerkId":"\(c-[0-9a-f]*\)".*/\1/p' "$OUT")
check "web-user list: layla and her clerk id" eval 'expect 0 && [ -n "$CLERK" ]'

# --- serving HTTPS beyond loopback ------------------------------------------------------------
bg "$IHALA" --config "$MOHT" web --listen 0.0.0.0:0 >"$T/web.out" 2>"$T/web.err" </dev/null
WEB_PID=$LAST_PID
check "ihala web on 0.0.0.0 with HTTPS and an account starts, prints its https login URL" \
	wait_for 60 grep -qE '^https://localhost:[0-9]+/login$' "$T/web.out"
WPORT=$(sed -n 's|^https://localhost:\([0-9]*\)/login$|\1|p' "$T/web.out")
BASE=https://localhost:$WPORT
diag "web: $BASE"

check "TLS 1.3 by default" \
	eval 'openssl s_client -connect "127.0.0.1:$WPORT" -CAfile "$IHALA_PKI/ca.pem" </dev/null 2>&1 |
	grep -q "TLSv1.3"'
check "TLS 1.2 allowed, TLS 1.1 refused" \
	eval 'openssl s_client -connect "127.0.0.1:$WPORT" -tls1_2 </dev/null >/dev/null 2>&1 &&
	! openssl s_client -connect "127.0.0.1:$WPORT" -tls1_1 -cipher "DEFAULT:@SECLEVEL=0" \
		</dev/null >/dev/null 2>&1'
check "plain HTTP gets no page" \
	eval '[ "$(curl -s -o /dev/null -w "%{http_code}" --max-time 10 "http://127.0.0.1:$WPORT/login")" != 200 ]'
check "the inbox without a session: to the login form" \
	eval 'is "$(code_of "$BASE/")" 303 && grep -qi "^location: /login" "$T/curl.head"'
check "GET /login over HTTPS: the form, with the strict CSP and HSTS" \
	eval 'is "$(code_of "$BASE/login")" 200 && grep -q "name=\"password\"" "$T/curl.body" &&
	grep -qi "^content-security-policy: default-src '"'"'self'"'"'" "$T/curl.head" &&
	grep -qi "^strict-transport-security: max-age=31536000" "$T/curl.head"'
LOGIN=$(field csrf)
check "no one-time link beyond loopback" \
	eval 'is "$(code_of "$BASE/login?token=$(printf "%064d" 0)")" 403'

# login NAME PASSWORD [CSRF [CURL ARGS...]]: POST /login; prints the status
login() {
	code_of "$BASE/login" --data-urlencode "csrf=${3-$LOGIN}" --data-urlencode "name=$1" \
		--data-urlencode "password=$2" "${@:4}"
}
check "a wrong password: 403, said in words, no cookie" \
	eval 'is "$(login layla "$PW!")" 403 && grep -q "Wrong name or password" "$T/curl.body" &&
	! grep -qi "^set-cookie" "$T/curl.head"'
check "an unknown name: the same refusal" \
	eval 'is "$(login nobody "$PW")" 403 && grep -q "Wrong name or password" "$T/curl.body"'
check "a login POST without the login form's token: 403" \
	eval 'is "$(login layla "$PW" "")" 403 && ! grep -qi "^set-cookie" "$T/curl.head"'
check "a login POST from another Origin: 403" \
	eval 'is "$(login layla "$PW" "$LOGIN" -H "Origin: https://evil.example")" 403'
check "the right password: a session cookie, Secure, HttpOnly, SameSite=Strict" \
	eval 'is "$(login layla "$PW")" 303 &&
	grep -qiE "^set-cookie: ihala_session=[0-9a-f]{64}; Path=/; HttpOnly; SameSite=Strict; Secure" "$T/curl.head"'
SID=$(sed -n 's/^[Ss]et-[Cc]ookie: ihala_session=\([0-9a-f]*\);.*/\1/p' "$T/curl.head")
C=(-H "Cookie: ihala_session=$SID")
check "layla's session opens the inbox" is "$(code_of "$BASE/" "${C[@]}")" 200
CSRF=$(field csrf)

# a clerk added while ihala web runs logs in at once; both sessions live
printf 'omar password 1\n' | "$IHALA" --config "$MOHT" web-user add omar --password-stdin 2>/dev/null
code=$(login omar 'omar password 1')
SID2=$(sed -n 's/^[Ss]et-[Cc]ookie: ihala_session=\([0-9a-f]*\);.*/\1/p' "$T/curl.head")
check "omar, added while it runs, logs in too; layla's session still opens the inbox" \
	eval 'is "$code" 303 && [ -n "$SID2" ] && [ "$SID2" != "$SID" ] &&
	is "$(code_of "$BASE/" -H "Cookie: ihala_session=$SID2")" 200 &&
	is "$(code_of "$BASE/" "${C[@]}")" 200'
check "omar's CSRF token is not layla's" \
	eval 'code_of "$BASE/" -H "Cookie: ihala_session=$SID2" >/dev/null && [ "$(field csrf)" != "$CSRF" ]'

# --- a clerk's accept carries her clerk id ----------------------------------------------------
RID=tls-$$
mkref "$T/ref.json" "$RID" urgent "Layla Saeed" '["moh"]'
run refer "$DMA" refer --to moh --file "$T/ref.json"
check "DMA refers $RID to MoH" expect 0
check "the referral shows in layla's inbox" \
	wait_for 30 eval 'code_of "$BASE/" "${C[@]}" >/dev/null && grep -q "data-referral=\"$RID\"" "$T/curl.body"'
check "POST /accept without the CSRF token: 403" \
	is "$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID")" 403
check "POST /accept with omar's token in layla's session: 403" \
	is "$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID" \
		--data-urlencode "csrf=$(code_of "$BASE/" -H "Cookie: ihala_session=$SID2" >/dev/null; field csrf)")" 403
check "layla accepts: 303, the page says accepted" \
	eval 'is "$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID" --data-urlencode "csrf=$CSRF")" 303 &&
	code_of "$BASE/" "${C[@]}" >/dev/null && grep -qF "Referral accepted: $RID" "$T/curl.body"'
check "DMA's node sees it accepted" \
	wait_for 30 eval '"$IHALA" --config "$DMA" status "$RID" 2>/dev/null | head -n 1 | grep -q "\"status\":\"accepted\""'
run replay "$AUD" audit replay
check "audit replay: the accept carries layla's clerk id, not her name" \
	eval 'expect 0 && grep "\"referralId\":\"$RID\"" "$OUT" | grep "\"status\":\"accepted\"" |
	grep -qF "\"clerkId\":\"$CLERK\"" && ! grep -q "layla" "$OUT"'

run csv "$AUD" audit export --format csv
check "audit export csv: the accept's row ends with layla's clerk id" \
	eval 'expect 0 && grep ",$RID,accepted," "$OUT" | grep -q ",$CLERK"$'"'"'\r'"'"'"\$"'

# --- the command line's --clerk ---------------------------------------------------------------
RID2=cli-$$
mkref "$T/ref2.json" "$RID2" urgent "Layla Saeed" '["moh"]'
run badclerk "$DMA" --clerk 'Layla Saeed' refer --to moh --file "$T/ref2.json"
check "ihala --clerk with a name: refused, exit 2" eval 'expect 2 && err_has "invalid --clerk"'
run clerk "$DMA" --clerk dma-va-7 refer --to moh --file "$T/ref2.json"
check "ihala --clerk dma-va-7 refer: exit 0" expect 0
run replay2 "$AUD" audit replay
check "audit replay: the referral carries clerkId dma-va-7" \
	eval 'grep "\"referralId\":\"$RID2\"" "$OUT" | grep -qF "\"clerkId\":\"dma-va-7\""'

# --- in the browser: login, accept, Sign out -------------------------------------------------
RID4=brw-$$
mkref "$T/ref4.json" "$RID4" urgent "Layla Saeed" '["moh"]'
run refer4 "$DMA" refer --to moh --file "$T/ref4.json"
check "DMA refers $RID4 to MoH (for the browser)" expect 0
# the server's own key is what Chromium trusts (its SPKI's SHA-256), not any certificate
SPKI=$(openssl x509 -in "$IHALA_PKI/broker.pem" -noout -pubkey | openssl pkey -pubin -outform der |
	openssl dgst -sha256 -binary | base64)
WEB_T=$T WEB_BASE=$BASE WEB_USER=layla WEB_PW=$PW WEB_RID=$RID4 WEB_SPKI=$SPKI \
	setsid "$PY" "$IHALA_ROOT/tests/integration/web_tls_browser.py" \
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
	diag "web_tls_browser.py: exit $brc, $n of $BROWSER_STEPS steps"
	show "$T/browser.err"
	for i in $(seq $((n + 1)) "$BROWSER_STEPS"); do
		not_ok "browser: step $i not run"
	done
fi
stop_browser
BROWSER_PID=""
check "DMA's node sees $RID4 accepted" \
	wait_for 30 eval '"$IHALA" --config "$DMA" status "$RID4" 2>/dev/null | head -n 1 | grep -q "\"status\":\"accepted\""'
run replay4 "$AUD" audit replay
check "audit replay: the browser's accept carries layla's clerk id, not 'local' nor her name" \
	eval 'expect 0 && grep "\"referralId\":\"$RID4\"" "$OUT" | grep "\"status\":\"accepted\"" |
	grep -qF "\"clerkId\":\"$CLERK\"" && ! grep -q "layla" "$OUT"'
BSID=$(cat "$T/browser-session.txt" 2>/dev/null)
check "the browser's session, signed out, no longer opens the inbox (curl)" \
	eval '[ -n "$BSID" ] && is "$(code_of "$BASE/" -H "Cookie: ihala_session=$BSID")" 303'

# --- a clerk given a new password is out at once ---------------------------------------------
printf 'sara password 1\n' | "$IHALA" --config "$MOHT" web-user add sara --password-stdin 2>/dev/null
code=$(login sara 'sara password 1')
SID3=$(sed -n 's/^[Ss]et-[Cc]ookie: ihala_session=\([0-9a-f]*\);.*/\1/p' "$T/curl.head")
check "sara logs in; her session opens the inbox" \
	eval 'is "$code" 303 && [ -n "$SID3" ] && is "$(code_of "$BASE/" -H "Cookie: ihala_session=$SID3")" 200'
printf 'sara password 2\n' | "$IHALA" --config "$MOHT" web-user passwd sara --password-stdin \
	>/dev/null 2>"$T/passwd.err"
RC=$? ERR=$T/passwd.err
check "web-user passwd sara: exit 0" expect 0
check "web-user passwd sara: her open session no longer opens the inbox; layla's does" \
	eval 'is "$(code_of "$BASE/" -H "Cookie: ihala_session=$SID3")" 303 &&
	is "$(code_of "$BASE/" "${C[@]}")" 200'
check "sara logs in with the new password" is "$(login sara 'sara password 2')" 303

 ----------------------------------------------------------
"$IHALA" --config "$MOHT" web-user remove omar 2>/dev/null
check "web-user remove omar: his open session no longer opens the inbox; layla's does" \
	eval 'is "$(code_of "$BASE/" -H "Cookie: ihala_session=$SID2")" 303 &&
	is "$(code_of "$BASE/" "${C[@]}")" 200'

# --- failed logins: the address waits ---------------------------------------------------------
for i in 1 2 3 4 5; do
	login layla "wrong password $i" >/dev/null
done
check "after 5 failed logins even the right password waits: 429, said in words" \
	eval 'is "$(login layla "$PW")" 429 && grep -q "Too many failed attempts" "$T/curl.body" &&
	! grep -qi "^set-cookie" "$T/curl.head"'
check "the sessions already open are not affected" is "$(code_of "$BASE/" "${C[@]}")" 200
check "POST /logout without the CSRF token: 403, the session lives" \
	eval 'is "$(code_of "$BASE/logout" "${C[@]}" -d x=1)" 403 &&
	is "$(code_of "$BASE/" "${C[@]}")" 200 && grep -q "id=\"logout\"" "$T/curl.body"'
check "POST /logout with it: the cookie dropped, the session ended" \
	eval 'is "$(code_of "$BASE/logout" "${C[@]}" --data-urlencode "csrf=$CSRF")" 303 &&
	grep -qi "^set-cookie: ihala_session=; Path=/; Max-Age=0" "$T/curl.head" &&
	is "$(code_of "$BASE/" "${C[@]}")" 303'

kill -TERM "$WEB_PID"
wait "$WEB_PID"
rc=$?
check "ihala web stops on SIGTERM, exit 0" is "$rc" 0
check "its log names clerks by id and failed logins as security events, never a password" \
	eval 'grep -qF "clerk $CLERK logged in" "$T/web.err" &&
	grep -q "security: a failed login from 127.0.0.1" "$T/web.err" &&
	! grep -qF "$PW" "$T/web.err"'

# --- on loopback with HTTPS: the one-time link, clerk id "local" ------------------------------
bg "$IHALA" --config "$MOHT" web >"$T/web2.out" 2>"$T/web2.err" </dev/null
WEB_PID=$LAST_PID
check "on loopback with [web] cert_file: an https one-time link" \
	wait_for 60 grep -qE '^https://127\.0\.0\.1:[0-9]+/login\?token=[0-9a-f]{64}$' "$T/web2.out"
URL=$(head -n 1 "$T/web2.out")
BASE=${URL%%/login*}
check "the link opens a session, its cookie Secure" \
	eval 'is "$(code_of "$URL")" 303 && grep -qi "^set-cookie: ihala_session=.*; Secure" "$T/curl.head"'
SID=$(sed -n 's/^[Ss]et-[Cc]ookie: ihala_session=\([0-9a-f]*\);.*/\1/p' "$T/curl.head")
C=(-H "Cookie: ihala_session=$SID")
RID3=loc-$$
mkref "$T/ref3.json" "$RID3" urgent "Layla Saeed" '["moh"]'
run refer3 "$DMA" refer --to moh --file "$T/ref3.json"
wait_for 30 eval 'code_of "$BASE/" "${C[@]}" >/dev/null && grep -q "data-referral=\"$RID3\"" "$T/curl.body"'
CSRF=$(field csrf)
code=$(code_of "$BASE/accept" "${C[@]}" --data-urlencode "rid=$RID3" --data-urlencode "csrf=$CSRF")
run replay3 "$AUD" audit replay
check "the link's clerk accepts $RID3: clerkId local in audit replay" \
	eval 'is "$code" 303 && grep "\"referralId\":\"$RID3\"" "$OUT" | grep "\"status\":\"accepted\"" |
	grep -qF "\"clerkId\":\"local\""'
kill -TERM "$WEB_PID"
wait "$WEB_PID"
check "and it stops on SIGTERM, exit 0" is "$?" 0
