#!/usr/bin/env bash
# demo.sh - a real referral lifecycle on loopback: broker, DMA, MoH, MoLSA, HI and an auditor.
#
#   config/demo.sh [BUILD_DIR]        (run by `make demo`; BUILD_DIR defaults to build/)
#
# Makes a development PKI and configs in a temp dir, starts ihala-broker on a free loopback port
# and drives each agency's node with the ihala tool: referrals accepted, completed, declined,
# referred onward, one sent to an NGO whose node is offline and that catches up later; DMA's
# node takes every status change from its inbox; the auditor replays the log. Everything about the
# survivors travels sealed (docs/SEALING.md): at its end the demo counts the bytes of their names
# found in clear in the broker's files (its store, a backup, its log: 0), DMA erases one
# referral, and the auditor verifies the log after it. It prints one line per step and exits 0,
# or says which step failed and exits 1. Every process it starts is stopped on exit.
# IHALA_DEMO_KEEP=1 keeps the temp dir (it is kept after a failure).
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$(cd "${1:-${IHALA_BUILD:-$ROOT/build}}" 2>/dev/null && pwd) || {
	echo "demo: build directory '${1:-build}' not found (run make first)" >&2
	exit 1
}
IHALA=$B/ihala
BROKER=$B/ihala-broker
for f in "$IHALA" "$BROKER"; do
	[ -x "$f" ] || { echo "demo: $f is missing (run make first)" >&2; exit 1; }
done

W=$(mktemp -d /tmp/ihala-demo.XXXXXX)
PIDS=()
FAILED=0

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	if [ "$FAILED" -ne 0 ] || [ -n "${IHALA_DEMO_KEEP:-}" ]; then
		echo "demo: files kept in $W (broker log: $W/broker.log)" >&2
	else
		rm -rf "$W"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	FAILED=1
	echo "demo: FAILED: $*" >&2
	exit 1
}

# say LABEL TEXT: one line of the account.
N=0
say() {
	local chars pad
	N=$((N + 1))
	# pad by characters, not bytes ("→" is three bytes), whatever the locale
	chars=$(printf '%s' "$1" | LC_ALL=C tr -d '\200-\277' | wc -c)
	pad=$((13 - chars))
	[ "$pad" -gt 0 ] || pad=1
	printf '%2d. %s%*s %s\n' "$N" "$1" "$pad" "" "$2"
}

# node AGENCY ARGS...: run the ihala tool as AGENCY's node; stdout to $W/last.out, stderr to
# $W/last.err; fails the demo when it does not exit 0.
node() {
	local agency=$1
	shift
	if ! "$IHALA" --config "$W/$agency/client.conf" "$@" >"$W/last.out" 2>"$W/last.err" </dev/null; then
		sed 's/^/    /' "$W/last.err" >&2
		fail "$agency: ihala $*"
	fi
}
# (These set globals rather than print: a failure inside $(...) would not stop the demo.)
# receipt_seq: SEQ = the seq of the receipt the last command printed.
receipt_seq() {
	SEQ=$(grep -oE '"seq":[0-9]+' "$W/last.out" | head -n1 | cut -d: -f2)
	[ -n "$SEQ" ] || fail "no receipt seq in: $(head -c 300 "$W/last.out")"
}
# expect_state AGENCY REFERRAL STATUS: fail unless the broker has REFERRAL in STATUS.
expect_state() {
	local got
	node "$1" status "$2"
	got=$(grep -oE '^\{"referralId":"[^"]*","referrer":"[^"]*","recipient":"[^"]*","status":"[a-z-]+"' "$W/last.out" |
		sed 's/.*"status":"//; s/"$//')
	[ "$got" = "$3" ] || fail "$2 is '$got', expected '$3'"
}
# history_seq AGENCY REFERRAL STATUS: HSEQ = seq of the history item that set STATUS (waits up to
# 5 s: the broker sets "received" right after the recipient's ack).
history_seq() {
	for _ in $(seq 1 50); do
		node "$1" status "$2"
		HSEQ=$(grep -oE '"seq":[0-9]+,"brokerTimeMs":[0-9]+,("sender":"[^"]*",)?"status":"'"$3"'"' "$W/last.out" |
			head -n1 | sed 's/"seq":\([0-9]*\),.*/\1/')
		[ -n "$HSEQ" ] && return 0
		sleep 0.1
	done
	fail "$2 never became $3"
}
# dma_hears N: DMA's node takes N deliveries from its inbox; one line each (status changes).
dma_hears() {
	local line seq rid st from extra
	node dma inbox --count "$1"
	[ "$(grep -c '^{"seq":' "$W/last.out")" -eq "$1" ] ||
		fail "DMA's inbox had $(grep -c '^{"seq":' "$W/last.out") deliveries, expected $1"
	say "DMA's inbox" "heard every change of its referral, in order:"
	while IFS= read -r line; do
		seq=$(echo "$line" | grep -oE '^\{"seq":[0-9]+' | cut -d: -f2)
		rid=$(echo "$line" | grep -oE '"referralId":"[^"]*"' | head -n1 | cut -d'"' -f4)
		st=$(echo "$line" | grep -oE '"status":"[a-z-]+"' | head -n1 | cut -d'"' -f4)
		from=$(echo "$line" | grep -oE '"sender":"[^"]*"' | head -n1 | cut -d'"' -f4)
		extra=$(echo "$line" | grep -oE '"reasonCode":"[a-z-]+"' | cut -d'"' -f4)
		printf '                  seq %-3s %-6s %-12s by %s%s\n' "$seq" "$rid" "$st" "${from:-the broker}" \
			"${extra:+ ($extra)}"
		DMA_HEARD="$DMA_HEARD $rid:$st"
	done <"$W/last.out"
}
DMA_HEARD=""

# A port below the kernel's ephemeral range (no client connection on this machine can hold it
# as its source port) that no socket uses in any state.
free_port() {
	local lo p
	lo=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)
	[ "${lo:-0}" -gt 12000 ] || lo=32768
	while :; do
		p=$((10000 + RANDOM % (lo - 10000)))
		if ! ss -Hatn "( sport = :$p or dport = :$p )" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# --- set-up: PKI, configs, broker -----------------------------------------------------------
"$ROOT/config/pki/mkpki" "$W/pki" >"$W/mkpki.log" 2>&1 || { cat "$W/mkpki.log" >&2; fail "mkpki"; }
PORT=$(free_port)
mkdir -m 700 "$W/data"
cat >"$W/broker.conf" <<CONF
[broker]
listen = tcp://127.0.0.1:$PORT
data_dir = data
log_level = info
log_origin = ihala.demo/log

[tls]
ca_file = pki/ca.pem
crl_file = pki/ca.crl
cert_file = pki/broker.pem
key_file = pki/broker.key

[checkpoint]
key_file = pki/checkpoint.key
every_seconds = 1s

[agency.dma]
role = dma
name = دائرة شؤون الألغام - قسم مساعدة الضحايا
encryption_cert = pki/dma-enc.crt

[agency.moh]
role = ministry
name = وزارة الصحة
encryption_cert = pki/moh-enc.crt

[agency.molsa]
role = ministry
name = وزارة العمل والشؤون الاجتماعية
encryption_cert = pki/molsa-enc.crt

[agency.hi]
role = ngo
name = Handicap International (Humanity & Inclusion)
encryption_cert = pki/hi-enc.crt

[agency.auditor]
role = auditor
name = DMA oversight
encryption_cert = pki/auditor-enc.crt
CONF
for a in dma moh molsa hi auditor; do
	mkdir -p "$W/$a"
	cat >"$W/$a/client.conf" <<CONF
[client]
broker = tcp://127.0.0.1:$PORT
server_name = localhost
ca_file = ../pki/ca.pem
cert_file = ../pki/$a.pem
key_file = ../pki/$a.key
data_dir = data
agency = $a
timeout = 5s
encryption_cert = ../pki/$a-enc.crt
encryption_key = ../pki/$a-enc.key
CONF
done

"$BROKER" -d -c "$W/broker.conf" >"$W/broker.log" 2>&1 &
PIDS+=($!)
BPID=$!
for _ in $(seq 1 100); do
	grep -q 'listening on' "$W/broker.log" && break
	kill -0 "$BPID" 2>/dev/null || { tail -n 20 "$W/broker.log" >&2; fail "the broker did not start"; }
	sleep 0.05
done
grep -q 'listening on' "$W/broker.log" || fail "the broker did not start listening"

echo "ihala demo: broker on tcp://127.0.0.1:$PORT (mutual TLS 1.3), five agency nodes, dev PKI in $W"

# --- the referrals -----------------------------------------------------------------------------
# referral FILE ID REFERRER PARENT NAME SEX BIRTH GOV DISTRICT PRIORITY SERVICES REASON NOTES CONSENT-AGENCIES
referral() {
	cat >"$1" <<JSON
{
  "referralId": "$2",
  "referringAgency": "$3",
  "parentReferralId": "$4",
  "priority": "${10}",
  "services": ${11},
  "reason": "${12}",
  "survivor": {
    "caseId": "IQ-$2",
    "name": "$5",
    "sex": "$6",
    "birthYear": $7,
    "governorate": "$8",
    "district": "$9",
    "injury": { "deviceType": "landmine-ap" }
  },
  "consent": {
    "given": true,
    "givenBy": "survivor",
    "date": "2024-04-02",
    "recordedBy": "DMA-VA-0231",
    "agencies": ${14},
    "dataCovered": ["identity", "contact", "demographics", "location", "functioning", "injury", "needs"]
  },
  "referringOfficer": { "name": "Layla Hassan", "organisation": "DMA Victim Assistance, Mosul" },
  "notes": "${13}"
}
JSON
}

NAME1='نور الهدى خلف حسن'
NAME2='کاوە عومەر ئەحمەد'
NAME3='ژیان ئەحمەد کەریم'

# R-001: the example referral (prosthetics), consent also covering MoLSA for the onward step.
sed -e 's/3f1c9a52-7b4e-4d0a-9c61-2a8e5d7f0b13/R-001/' -e 's/"hi"/"hi", "molsa"/' \
	"$ROOT/config/examples/referral.json" >"$W/r001.json"
grep -q '"molsa"' "$W/r001.json" || fail "could not build R-001 from config/examples/referral.json"
node dma refer --to moh --file "$W/r001.json"
receipt_seq
say "DMA → MoH" "referral R-001 for $NAME1 (prosthesis, rehabilitation), logged at seq $SEQ"

node moh inbox --count 1
grep -q '"referralId":"R-001"' "$W/last.out" || fail "MoH's inbox lacks R-001"
grep -qF "$NAME1" "$W/last.out" || fail "MoH's inbox lacks the survivor's name"
history_seq dma R-001 received
say "MoH" "took R-001 from its inbox; the broker marked it received at seq $HSEQ"

node moh accept R-001 --note "سنتصل بالناجية لتحديد موعد القياس"
receipt_seq
say "MoH" "accepted R-001, seq $SEQ"

node moh progress R-001 --business-status "appointment scheduled, Mosul limb-fitting centre"
receipt_seq
say "MoH" "R-001 in progress: appointment scheduled at the Mosul limb-fitting centre, seq $SEQ"

# R-001-A carries only what the disability allowance needs (minimum necessary): who she is,
# sex and year of birth, where she lives, her functioning, and the need; not her injuries,
# displacement or contact. Its consent covers MoLSA alone, within R-001's (the broker refuses
# an onward consent wider than its parent's, and data its own consent does not cover).
cat >"$W/r001a.json" <<JSON
{
  "referralId": "R-001-A",
  "referringAgency": "moh",
  "parentReferralId": "R-001",
  "priority": "normal",
  "services": ["social-protection", "economic-inclusion"],
  "reason": "Below-knee amputee; needs registration for the disability allowance and vocational training.",
  "survivor": {
    "caseId": "IQ-R-001-A",
    "name": "$NAME1",
    "sex": "female",
    "birthYear": 1996,
    "governorate": "Ninewa",
    "district": "Sinjar",
    "functioning": { "walking": "a-lot", "selfCare": "some", "hearing": "some" }
  },
  "consent": {
    "given": true,
    "givenBy": "survivor",
    "date": "2024-04-02",
    "recordedBy": "DMA-VA-0231",
    "agencies": ["molsa"],
    "dataCovered": ["identity", "demographics", "location", "functioning", "needs"]
  },
  "notes": "تحتاج الناجية إلى التسجيل في راتب الرعاية الاجتماعية لذوي الإعاقة."
}
JSON
node moh refer --to molsa --file "$W/r001a.json"
receipt_seq
say "MoH → MoLSA" "onward referral R-001-A for $NAME1 (disability allowance), parent R-001, seq $SEQ; consent [molsa], within R-001's; only what the allowance needs (identity, demographics, location, functioning, needs)"

node molsa inbox --count 1
grep -q '"parentReferralId":"R-001"' "$W/last.out" || fail "MoLSA's inbox lacks R-001-A with its parent"
grep -q '"injury"' "$W/last.out" && fail "MoLSA's inbox has R-001's injury details"
node molsa accept R-001-A --note "تم تسجيل الطلب في دائرة الحماية الاجتماعية في الموصل"
receipt_seq
say "MoLSA" "took R-001-A and accepted it, seq $SEQ"

node moh inbox --count 2
if ! grep -q '"referralId":"R-001-A","status":"received"' "$W/last.out" ||
	! grep -q '"sender":"molsa".*"referralId":"R-001-A","status":"accepted"' "$W/last.out"; then
	fail "MoH did not hear back on R-001-A"
fi
say "MoH" "hears back on its onward referral: R-001-A received, then accepted by MoLSA"

# The example outcome carries no referralId: the command line names the referral.
node moh outcome R-001 --file "$ROOT/config/examples/outcome.json"
receipt_seq
say "MoH" "completed R-001 with its outcome: prosthesis fitted, 12 gait-training sessions, seq $SEQ"
expect_state dma R-001 completed
dma_hears 4

referral "$W/r002.json" R-002 dma "" "$NAME2" male 1988 Kirkuk Daquq urgent \
	'["assistive-devices", "ongoing-medical"]' \
	"Hearing loss in both ears after an IED blast; needs hearing aids and ENT follow-up." \
	"نەخۆشەکە پێویستی بە ئامێری بیستن هەیە" '["moh", "hi"]'
node dma refer --to moh --file "$W/r002.json"
receipt_seq
say "DMA → MoH" "referral R-002 for $NAME2 (hearing aids), seq $SEQ"

node moh inbox --count 1
grep -q '"referralId":"R-002"' "$W/last.out" || fail "MoH's inbox lacks R-002"
grep -qF "$NAME2" "$W/last.out" || fail "MoH's inbox lacks the survivor's name"
node moh decline R-002 --reason no-capacity --text "لا تتوفر أجهزة سمع في مستشفى كركوك العام حالياً"
receipt_seq
say "MoH" "declined R-002: no-capacity (no hearing aids in stock at Kirkuk General), seq $SEQ"
expect_state dma R-002 declined
dma_hears 2

referral "$W/r003.json" R-003 dma "" "$NAME3" female 2009 Sulaymaniyah Penjwen normal \
	'["psychosocial-support", "education"]' \
	"Adolescent survivor of an ERW explosion near her school; psychosocial support and help to return to school." \
	"ژیان لەگەڵ دایکی دەژی؛ تکایە پەیوەندی بە دایکیەوە بکەن" '["hi"]'
node dma refer --to hi --file "$W/r003.json"
receipt_seq
expect_state dma R-003 requested
say "DMA → HI" "referral R-003 for $NAME3 (psychosocial support) while HI's node is offline: seq $SEQ, queued for HI"

node hi inbox
grep -q '"referralId":"R-003"' "$W/last.out" || fail "HI's inbox lacks R-003 after it came back"
grep -qF "$NAME3" "$W/last.out" || fail "HI's inbox lacks the survivor's name"
history_seq dma R-003 received
say "HI (back)" "its node starts and catches up: its inbox shows R-003 for $NAME3; received at seq $HSEQ"

node hi accept R-003 --note "سيزور أخصائي الدعم النفسي العائلة في بنجوين"
receipt_seq
say "HI" "accepted R-003, seq $SEQ"

dma_hears 2
want=" R-001:received R-001:accepted R-001:in-progress R-001:completed R-002:received R-002:declined R-003:received R-003:accepted"
[ "$DMA_HEARD" = "$want" ] || fail "DMA heard:$DMA_HEARD; expected:$want"

# --- the auditor ---------------------------------------------------------------------------------
node auditor audit replay
entries=$(grep -c '^{"seq":' "$W/last.out")
last=$(tail -n1 "$W/last.out" | grep -oE '^\{"seq":[0-9]+' | cut -d: -f2)
awk -F'[:,]' 'BEGIN { n = 0 } { n++; if ($2 != n) exit 1 }' "$W/last.out" ||
	fail "the replayed log has a gap or is out of order"
if [ "$entries" -eq 0 ] || [ "$entries" != "$last" ]; then
	fail "replay gave $entries entries, last seq '$last'"
fi
subs=$(grep -c '"kind":"submission"' "$W/last.out")
say "Auditor" "replayed the log: $entries entries, seq 1..$last in order ($subs submissions, the rest deliveries and broker events)"
# The Merkle tree recomputed from the log and the broker's signed checkpoint checked against it.
node auditor audit verify --key "$W/pki/checkpoint.pub" --origin ihala.demo/log
grep -q "^{\"entries\":$entries,\"root\":\"[0-9a-f]\{64\}\"" "$W/last.out" ||
	fail "audit verify said: $(cat "$W/last.out" "$W/last.err")"
grep -q "signature valid, root matches the log" "$W/last.err" ||
	fail "audit verify did not check the checkpoint: $(cat "$W/last.err")"
cksize=$(grep -oE '"lastCheckpointSize":[0-9]+' "$W/last.out" | cut -d: -f2)
if [ "$cksize" = "$entries" ]; then
	why="it covers all $entries entries"
else
	# Checkpoints are signed on a timer (every_seconds = 1s here), not per entry.
	why="the log has $entries entries: the broker signs a checkpoint each second there are new entries, so the latest one trails the log; the next covers the last $((entries - cksize))"
fi
say "Auditor" "ihala audit verify: Merkle tree recomputed, the broker's signed checkpoint matches it (size $cksize; $why)"

# --- nothing about the survivors in clear where the broker writes; erasure ---------------------
# Every file the broker wrote (its store, a consistent backup of it, its log) searched for the
# bytes of the survivors' names: the broker routes sealed parts it cannot open.
"$BROKER" --backup "$W/backup" -c "$W/broker.conf" >"$W/backup.log" 2>&1 ||
	fail "ihala-broker --backup: $(cat "$W/backup.log")"
found=0
for name in "$NAME1" "$NAME2" "$NAME3"; do
	n=$(cat "$W"/data/* "$W"/backup/* "$W/broker.log" | grep -oaF -- "$name" | wc -l)
	found=$((found + n * $(printf '%s' "$name" | wc -c)))
done
say "Broker files" "bytes of the survivors' names found in clear in the broker's store, its backup and its log: $found"

node dma erase R-002 --reason consent-withdrawn
receipt_seq
say "DMA" "erased R-002 (the survivor withdrew consent): its sealed parts deleted at the broker, its Erase logged at seq $SEQ"
node moh inbox --count 1
grep -q '"kind":"erasure".*"referralId":"R-002"' "$W/last.out" || fail "MoH's inbox lacks the erasure of R-002"
node dma inbox --count 1
grep -q '"kind":"erasure".*"referralId":"R-002"' "$W/last.out" || fail "DMA's inbox lacks the erasure of R-002"
say "MoH, DMA" "their nodes took the erasure of R-002 and deleted their copies"
node auditor audit verify --key "$W/pki/checkpoint.pub" --origin ihala.demo/log
grep -q "signature valid, root matches the log" "$W/last.err" ||
	fail "audit verify after the erasure said: $(cat "$W/last.out" "$W/last.err")"
counts=$(grep -oE '[0-9]+ entries, [0-9]+ erasure entries, [0-9]+ sealed parts erased' "$W/last.err")
[ -n "$counts" ] || fail "audit verify did not count the erasures: $(cat "$W/last.err")"
say "Auditor" "ihala audit verify after the erasure: the log still verifies ($counts)"

kill -TERM "$BPID" 2>/dev/null
wait "$BPID" 2>/dev/null
PIDS=()
grep -q 'stopped cleanly' "$W/broker.log" || fail "the broker did not stop cleanly"
echo "done: every step logged, broker and nodes stopped."
