#!/usr/bin/env bash
# erase.sh - erasure at the broker (issue 16, item 5) over TLS with a real broker: an Erase by
# the referrer deletes the sealed parts of the referral and its onward referrals and tells
# every party with an ERASURE entry; the log keeps the clear parts; the retention period after
# closure erases by itself; an Unreadable goes back to the sender of the entry. The sealed
# parts here are opaque bytes with a marker (the nodes' sealing is tested elsewhere).
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

PROBE=$IHALA_BUILD/tests/tools/probe

plan 27

port=$(free_port)
EP=tcp://127.0.0.1:$port
mport=$(free_port)
write_broker_conf "$T/b" "$port" "
[limits]
retention = 3s"
sed -i "s|^\[broker\]\$|[broker]\nmetrics_listen = tcp://127.0.0.1:$mport|" "$T/b/broker.conf"
start_broker "$T/b" || { echo "Bail out! the broker does not start"; exit 1; }

probe_as() {
	local who=$1
	shift
	"$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" --cert "$IHALA_PKI/$who.pem" \
		--key "$IHALA_PKI/$who.key" "$@"
}
# sealed NAME: an opaque sealed part holding the marker MARK-NAME, in $T/NAME.der
sealed() { { printf '0\x82MARK-%s-%s\n' "$1" $$; head -c 500 /dev/urandom; } >"$T/$1.der"; }
# submit AGENCY NAME JSON [SEALED]: the envelope JSON (as NAME) with that sealed part;
# prints the probe's receipt line.
submit() {
	printf '%s\n' "$3" >"$T/$2.json"
	if [ -n "${4:-}" ]; then
		probe_as "$1" --sealed "$T/$4.der" submit-json "$T/$2.json" 2>&1
	else
		probe_as "$1" submit-json "$T/$2.json" 2>&1
	fi
}
# is OUT TEXT: OUT is exactly TEXT.
is() { [ "$1" = "$2" ] && return 0; diag "got:    $1"; diag "wanted: $2"; return 1; }
in_store() { mdb_dump -p -s sealed "$T/b/data" | grep -qF "MARK-$1-$$"; }
consent() { printf '"consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-1","agencies":%s,"dataCovered":["needs","identity"]}' "$1"; }
metric() {
	local v=
	if exec 3<>"/dev/tcp/127.0.0.1/$mport"; then
		printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
		v=$(sed -n "s/^ihala_$1 \([0-9]*\).*/\1/p" <&3)
		exec 3<&-
	fi
	echo "${v:-0}"
}

P=RP-$$ C=RC-$$ O=RO-$$
for n in p note c cnote o; do sealed $n; done
out=$(submit dma p "{\"to\":\"moh\",\"dataDeclared\":[\"identity\"],\"referral\":{\"referralId\":\"$P\",\"priority\":\"normal\",\"services\":[\"legal\"],$(consent '["moh","hi"]')}}" p)
check "set-up: dma refers $P to moh (seq 1)" is "$out" "receipt ACCEPTED seq 1"
out=$(submit moh acc "{\"statusUpdate\":{\"referralId\":\"$P\",\"status\":\"accepted\"}}")
check "set-up: moh accepts (seq 2)" is "$out" "receipt ACCEPTED seq 2"
out=$(submit moh note "{\"note\":{\"referralId\":\"$P\"}}" note)
check "set-up: moh's sealed note (seq 3)" is "$out" "receipt ACCEPTED seq 3"
out=$(submit moh c "{\"to\":\"hi\",\"referral\":{\"referralId\":\"$C\",\"parentReferralId\":\"$P\",\"priority\":\"normal\",\"services\":[\"legal\"],$(consent '["hi"]')}}" c)
check "set-up: moh refers onward $C to hi (seq 4)" is "$out" "receipt ACCEPTED seq 4"
out=$(submit hi cnote "{\"note\":{\"referralId\":\"$C\"}}" cnote)
check "set-up: hi's sealed note on $C (seq 5)" is "$out" "receipt ACCEPTED seq 5"
out=$(submit dma o "{\"to\":\"moh\",\"referral\":{\"referralId\":\"$O\",\"priority\":\"normal\",\"services\":[\"legal\"],$(consent '["moh"]')}}" o)
check "set-up: another referral $O (seq 6)" is "$out" "receipt ACCEPTED seq 6"
check "set-up: the five sealed parts are in the store" \
	eval 'in_store p && in_store note && in_store c && in_store cnote && in_store o'

out=$(submit moh e0 "{\"erase\":{\"referralId\":\"$P\",\"reasonCode\":\"consent-withdrawn\"}}")
check "moh (the recipient) erases $P: FORBIDDEN" \
	is "$out" "receipt REFUSED FORBIDDEN: only the referring agency of referral '$P' may erase it"
out=$(submit hi e1 "{\"erase\":{\"referralId\":\"$P\",\"reasonCode\":\"consent-withdrawn\"}}")
check "hi (no party to $P) erases it: UNKNOWN_REFERRAL, as for an unknown id" \
	is "$out" "receipt REFUSED UNKNOWN_REFERRAL: no referral '$P' that agency 'hi' is a party to"
out=$(submit dma e2 "{\"erase\":{\"referralId\":\"$P\"}}")
check "an erase without a reason: SCHEMA" \
	is "$out" "receipt REFUSED SCHEMA: an erase needs reason_code consent-withdrawn, entered-in-error or other"
out=$(submit dma e3 "{\"erase\":{\"referralId\":\"$P\",\"reasonCode\":\"consent-withdrawn\"}}" p)
check "an erase with a sealed part: SCHEMA" \
	is "$out" "receipt REFUSED SCHEMA: an erase carries no sealed part (sealed, sealed_sha256 and data_declared must be empty)"
e0=$(metric erasures_total)

out=$(submit dma e4 "{\"erase\":{\"referralId\":\"$P\",\"reasonCode\":\"consent-withdrawn\"}}")
check "dma (the referrer) erases $P: accepted (seq 7)" is "$out" "receipt ACCEPTED seq 7"
check "the sealed parts of $P and its onward $C are gone from the store, $O's stays" \
	eval '! in_store p && ! in_store note && ! in_store c && ! in_store cnote && in_store o'
# LMDB does not overwrite freed pages: the live file may still hold erased bytes (ciphertext)
# until its pages are reused; a compacted backup holds only live data.
diag "lines of data.mdb holding an erased part's bytes (free pages): $(grep -c -a -F "MARK-p-$$" "$T/b/data/data.mdb")"
"$IHALA_BUILD/ihala-broker" --backup "$T/copy" -c "$T/b/broker.conf" >/dev/null 2>&1
check "a backup made after the erasure holds none of the erased bytes, and the others" \
	eval '! grep -q -a -F "MARK-p-$$" "$T/copy/data.mdb" && ! grep -q -a -F "MARK-cnote-$$" "$T/copy/data.mdb" &&
	grep -q -a -F "MARK-o-$$" "$T/copy/data.mdb"'
out=$(probe_as hi --ack inbox 2 2>&1)
check "hi gets $C without its sealed part, then the ERASURE (sender dma, root $P, reason consent-withdrawn, seqs 1,3,4,5)" \
	eval 'grep -qE "^deliver 4 submission sender .moh. recipient .hi. sealed none" <<<"$out" &&
	grep -qE "^deliver [0-9]+ erasure sender .dma. recipient .hi. sealed none referral .$P. ref_seq 7 reason 26 text .erased. erased 1,3,4,5\$" <<<"$out" || { diag "$out"; false; }'
out=$(probe_as auditor replay 2>&1)
check "the log: one ERASURE per party (dma, moh, hi) after the Erase; every entry still there" \
	eval '[ "$(grep -c "^record [0-9]* erasure sender .dma." <<<"$out")" -eq 3 ] &&
	for a in dma moh hi; do grep -qE "^record (8|9|10) erasure sender .dma. recipient .$a." <<<"$out" || exit 1; done &&
	grep -qE "^record 1 submission .* sealed none" <<<"$out" && grep -qE "^record 6 submission .* sealed [0-9a-f]{16}" <<<"$out" || { diag "$out"; false; }'
check "erasures_total counts it ($e0 -> $(metric erasures_total))" test "$(metric erasures_total)" -eq $((e0 + 1))

DMA=$(write_client_conf "$T" dma "$port")
"$IHALA_BUILD/ihala" --config "$DMA" status "$P" >"$T/st.out" 2>"$T/st.err"
check "dma's Query of $P: erased, its history ends with the erasure (seq 7)" \
	eval 'grep -qF "\"erased\":true" "$T/st.out" && grep -qE "\"seq\":\"?7\"?,[^}]*\"what\":\"erased\"" "$T/st.out" || { show "$T/st.out" "$T/st.err"; false; }'
out=$(submit dma e5 "{\"erase\":{\"referralId\":\"$P\",\"reasonCode\":\"other\"}}")
check "erasing $P again: ERASED" is "$out" "receipt REFUSED ERASED: referral '$P' was already erased"
sealed late
out=$(submit hi late "{\"note\":{\"referralId\":\"$C\"}}" late)
check "a note with a sealed part on the erased $C: ERASED" \
	is "$out" "receipt REFUSED ERASED: referral '$C' was erased: its messages carry no sealed part any more"
out=$(submit hi clear "{\"note\":{\"referralId\":\"$C\"}}")
check "... without one: accepted (the workflow goes on)" eval 'grep -q "^receipt ACCEPTED" <<<"$out"'

# Unreadable: moh could not open $O (seq 6); it goes back to dma. hi may not say so.
out=$(submit hi u0 "{\"unreadable\":{\"referralId\":\"$O\",\"refSeq\":\"6\",\"code\":\"seal-auth-failed\",\"detail\":\"tag\"}}")
check "hi sends an Unreadable of an entry it was not sent: NOT_PARTY" \
	is "$out" "receipt REFUSED NOT_PARTY: no submission at seq 6 was delivered to agency 'hi'"
out=$(submit moh u1 "{\"unreadable\":{\"referralId\":\"$O\",\"refSeq\":\"6\",\"code\":\"seal-auth-failed\",\"detail\":\"the tag does not verify\"}}")
useq=${out##* }
out=$(probe_as dma --ack inbox 20 2>&1)
check "moh's Unreadable of seq 6 is delivered to dma, its sender (seq $useq)" \
	eval 'grep -qE "^deliver $useq submission sender .moh. recipient .dma. sealed none .* kind 15\$" <<<"$out" || { diag "$out"; false; }'

# Retention (3 s): moh declines $O; a few seconds later the broker erases it by itself.
out=$(submit moh dec "{\"statusUpdate\":{\"referralId\":\"$O\",\"status\":\"declined\",\"reasonCode\":\"no-capacity\"}}")
check "moh declines $O (closed)" eval 'grep -q "^receipt ACCEPTED" <<<"$out"'
gone() { ! in_store o; }
check "within 10 s of the retention period its sealed part is gone from the store" wait_for 10 gone
out=$(probe_as auditor replay 2>&1)
check "the broker logged the erasure: sender '', reason retention-expired, root $O, seq 6, to dma and moh" \
	eval '[ "$(grep -cE "^record [0-9]+ erasure sender .. recipient .(dma|moh). sealed none referral .$O. ref_seq 0 reason 43 text .erased. erased 6\$" <<<"$out")" -eq 2 ] || { diag "$out"; false; }'
check "the broker is alive" kill -0 "$BROKER_PID"
