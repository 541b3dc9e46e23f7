#!/usr/bin/env bash
# quotas.sh - fair shares (issue 15, item 6): one sender's share of a recipient's queue, given
# back as the recipient acks; one referral's message rate and byte quota. Each refusal names
# its limit and nothing of another agency's figures.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

LG=$IHALA_BUILD/tests/tools/loadgen
NOTES=$IHALA_BUILD/bench/notes_load

plan 10

port=$(free_port)
EP=tcp://127.0.0.1:$port
write_broker_conf "$T" "$port" "
[limits]
queue_limit = 20
queue_share = 50
referral_rate = 20
referral_bytes = 16K"
mport=$(free_port)
sed -i "s|^\[broker\]\$|[broker]\nmetrics_listen = tcp://127.0.0.1:$mport|" "$T/broker.conf"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")
start_broker "$T" || { echo "Bail out! the broker does not start"; exit 1; }

# 1. Share: dma may hold 10 of moh's 20 queue places.
timeout 60 "$LG" submit "$dma" moh 15 SH "$T/sh.receipts" >"$T/sh.out" 2>"$T/sh.err"
check "dma's 15 referrals to moh (offline): 10 logged, 5 refused" \
	grep -q '^# counts: submitted 15, receipted 10, refused 5' "$T/sh.out"
check "the refusal is QUEUE_FULL naming dma's share (10 entries, 50% of queue_limit)" \
	grep -q "refused: this sender's share of the recipient's queue is full (10 undelivered entries, 50% of queue_limit)" "$T/sh.err"
timeout 60 "$LG" drain "$moh" 10 3000 "$T/sh.drained" >/dev/null 2>&1
timeout 60 "$LG" submit "$dma" moh 10 SH2 "$T/sh2.receipts" >"$T/sh2.out" 2>"$T/sh2.err"
check "once moh took them, dma's share is free again: 10 more logged" \
	grep -q '^# counts: submitted 10, receipted 10, refused 0' "$T/sh2.out"
timeout 60 "$LG" drain "$moh" 10 3000 "$T/sh2.drained" >/dev/null 2>&1
# The rest with room in moh's queue (no one takes those notes).
stop_broker
sed -i 's/^queue_limit = 20$/queue_limit = 1000/' "$T/broker.conf"
start_broker "$T" || { echo "Bail out! the broker does not restart"; exit 1; }

# 2. Rate: 20 messages a minute on one referral (the referral itself is one).
"$NOTES" -b "$EP" -P "$IHALA_PKI" -a dma -t moh -n 40 -s 100 -W 5 -p RATE -T 30 \
	>"$T/rate.out" 2>"$T/rate.err"
n=$(sed -n 's/^notes=//p' "$T/rate.out")
f=$(sed -n 's/^refused=//p' "$T/rate.out")
check "40 notes at once on one referral: 19 logged, 21 refused (referral_rate 20) ($n, $f)" \
	test "${n:-0}" -eq 19 -a "${f:-0}" -eq 21
check "the refusal is OVERLOADED naming the limit" \
	grep -q "has had 20 messages in the last minute, its limit (referral_rate); retry later" "$T/rate.err"

# 3. Bytes: 16K of messages on one referral in all: the referral and 8 notes of 1 400
#    characters fit (each note's clear envelope and its sealed part: the text, its ids and the
#    CMS wrapping to two recipients, about 2 000 bytes), not a 9th. The same run without the
#    quota logs all 12.
"$NOTES" -b "$EP" -P "$IHALA_PKI" -a dma -t moh -n 12 -s 1400 -W 1 -p BYTES -T 30 \
	>"$T/bytes.out" 2>"$T/bytes.err"
n=$(sed -n 's/^notes=//p' "$T/bytes.out")
f=$(sed -n 's/^refused=//p' "$T/bytes.out")
check "12 notes of 1 400 characters (sealed) on one referral: 8 logged, 4 refused (referral_bytes 16K) ($n, $f)" \
	test "${n:-0}" -eq 8 -a "${f:-0}" -eq 4
check "the refusal is QUOTA_EXCEEDED naming the limit" \
	grep -q "would pass its quota of 16384 bytes of messages (referral_bytes)" "$T/bytes.err"
"$IHALA_BUILD/ihala" --config "$dma" status SH-R0 >"$T/st.out" 2>"$T/st.err"
check "a Query answer shows the referral's state, not the broker's byte count" \
	bash -c "grep -q '\"referralId\":\"SH-R0\"' '$T/st.out' && ! grep -qi 'bytes' '$T/st.out'"

metric() {
	local v=
	if exec 3<>"/dev/tcp/127.0.0.1/$mport"; then
		printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
		v=$(sed -n "s/^ihala_refusals_total{code=\"$1\"} \([0-9]*\).*/\1/p" <&3)
		exec 3<&-
	fi
	echo "${v:-0}"
}
q=$(metric QUOTA_EXCEEDED) o=$(metric OVERLOADED) s=$(metric QUEUE_FULL)
check "refusals are counted in the metrics by code (QUEUE_FULL $s, OVERLOADED $o, QUOTA_EXCEEDED $q)" \
	test "$s" -eq 0 -a "$o" -eq 21 -a "$q" -eq 4
check "the broker is alive" kill -0 "$BROKER_PID"
