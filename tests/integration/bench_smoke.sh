#!/usr/bin/env bash
# bench_smoke.sh - the benchmark harness in smoke mode (tiny counts, ihala and ceilings only),
# so it never rots: it runs, cleans up after itself, and its JSON carries every key.
. "$(dirname "$0")/lib.sh"
plan 16

out=$T/out
"$IHALA_ROOT/bench/run.sh" --smoke --build "$IHALA_BUILD" --out "$out" >"$T/run.out" 2>"$T/run.err"
rc=$?
if [ $rc -eq 0 ]; then ok "bench/run.sh --smoke finishes"; else not_ok "bench/run.sh --smoke finishes (exit $rc)"; show "$T/run.err"; fi
json=$out/latest.json

# key_is KEY REGEX: the key is present once, with a value matching REGEX.
key_is() { [ "$(grep -cE "^  \"$1\": ($2),?\$" "$json")" -eq 1 ]; }
NUM='[0-9]+(\.[0-9]+)?(e[+-]?[0-9]+)?'
missing=""
for k in ihala_msgs_per_s rabbitmq_msgs_per_s mosquitto_msgs_per_s nats_msgs_per_s \
	lmdb_ceiling_msgs_per_s ihala_vs_rabbitmq ihala_vs_mosquitto ihala_vs_nats \
	ihala_vs_lmdb_ceiling p99_delivery_ms_at_1k rss_mib_1m_backlog drain_msgs_per_s \
	verify_entries_per_s ihala_vs_zmq_ceiling broker_cpu_us_per_referral ihala1_idle_pct \
	nats_idle_pct notes_first_per_s notes_last_per_s; do
	key_is "$k" "$NUM|null" || missing="$missing $k"
done
if [ -z "$missing" ]; then ok "latest.json has every required key"; else not_ok "latest.json lacks:$missing"; show "$json"; fi

bad=""
for k in ihala_msgs_per_s lmdb_ceiling_msgs_per_s zmq_ceiling_msgs_per_s tls_ceiling_frames_per_s \
	ihala_vs_lmdb_ceiling p99_delivery_ms_at_1k rss_mib_1m_backlog drain_msgs_per_s \
	verify_entries_per_s broker_cpu_us_per_referral ihala1_idle_pct ihala4_idle_pct lat1000_idle_pct \
	ceilings_idle_pct backlog_idle_pct drain_idle_pct notes_idle_pct ihala1_other_pct \
	notes_other_pct notes_first_per_s \
	notes_last_per_s; do
	key_is "$k" "$NUM" || bad="$bad $k"
done
if [ -z "$bad" ]; then ok "ihala and ceiling figures are numbers"; else not_ok "not measured:$bad"; show "$json"; fi

# The peers carry a whole ihala referral: its clear part and its sealed part (v2), not the
# clear part alone (the run before this check gave them 186 bytes against ihala's ~1 KiB).
sb=$(sed -n 's/^  "submit_bytes": \([0-9]*\),$/\1/p' "$json")
eb=$(sed -n 's/^  "envelope_bytes": \([0-9]*\),$/\1/p' "$json")
pb=$(sed -n 's/^  "peer_message_bytes": \([0-9]*\),$/\1/p' "$json")
if [ -n "$sb" ] && [ -n "$eb" ] && [ "$sb" -gt $((eb + 300)) ] && [ "$pb" = "$sb" ]; then
	ok "the peers' messages are the whole referral ($pb bytes; clear part $eb)"
else
	not_ok "peer message bytes '$pb', referral '$sb', clear part '$eb'"
fi
check "smoke mode runs no peers (their figures are null)" \
	eval 'key_is rabbitmq_msgs_per_s null && key_is nats_msgs_per_s null && key_is ihala_vs_nats null'
check "smoke mode says it runs no peers" grep -q 'smoke mode: the peers .* are not run' "$T/run.err"
# The broker's CPU is split by thread (its first one labelled main, ZeroMQ's by their names)
# and the parts add up to the total.
jval() { sed -n "s/^  \"$1\": \(.*\),\$/\1/p" "$json"; }
thread_split_adds_up() {
	local total obj
	total=$(jval broker_cpu_us_per_referral)
	obj=$(jval broker_cpu_us_per_referral_by_thread)
	case "$obj" in *'"main":'*) ;; *) return 1 ;; esac
	echo "$obj" | tr -d '{}' | tr ',' '\n' | awk -F: -v t="$total" \
		'{ s += $2 } END { d = t - s; exit !(t > 0 && NR >= 2 && d < 0.05 && d > -0.05) }'
}
check "broker CPU per referral, split by thread, adds up" thread_split_adds_up
diag "broker CPU per referral: $(jval broker_cpu_us_per_referral) us, $(jval broker_cpu_us_per_referral_by_thread)"
check "400 notes on one referral, all receipted, a rate for the first and last 100" \
	eval 'key_is notes_count 400 && key_is notes_chunk 100 && grep -q "^one referral, 400 notes: " "$out/latest.txt"'
# 4 pipelined senders keep over 1 000 requests in flight to the writer (a full inproc pipe each
# way once froze the broker).
check "every referral receipted and delivered, with 1 and with 4 pipelined senders" \
	test "$(grep -cE '^  "ihala(1|4)_(receipted|delivered)": 2400,$' "$json")" -eq 4
check "the table names the targets" grep -q 'p99 submit->delivery at 1k/s' "$out/latest.txt"

tmp=$(sed -n 's/^bench: temp dir //p' "$T/run.err")
if [ -n "$tmp" ] && [ ! -e "$tmp" ] && ! pgrep -f "$tmp" >/dev/null; then
	ok "no process and no temp dir left behind"
else
	not_ok "no process and no temp dir left behind ($tmp)"
fi
# Regression: 20 000 submissions in flight at once (max_inflight raised) reach the writer in one
# burst; its answers used to fill the inproc pipe back while the main thread blocked sending
# more, and the broker froze for good with a handful of receipts. 20 000 envelopes of ~1 KiB
# sent at once are ~21 MB: max_inflight_bytes is raised with max_inflight, and in_cap with it
# (the broker requires in_cap >= max_inflight_bytes + max_frame + 64K: a client within its
# window is never cut off; under ASan the default 16M was passed, and the session ended).
port=$(free_port)
write_broker_conf "$T/dl" "$port" "
[limits]
max_inflight = 20000
max_inflight_bytes = 64M
in_cap = 80M"
if start_broker "$T/dl"; then
	"$IHALA_BUILD/bench/ihala_load" send -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a dma -t moh \
		-n 20000 -T 30 >"$T/dl.out" 2>"$T/dl.err"
	check "20 000 submissions in flight at once all get their receipts" \
		grep -qx 'receipted=20000' "$T/dl.out"
	stop_broker
else
	not_ok "20 000 submissions in flight at once all get their receipts (no broker)"
fi
# Regression: an acker faster than the writer. Acks free delivery credit at once; the broker
# used to queue them for the writer without bound (memory grew by some 600 bytes per ack and
# the queue in the store lagged by thousands). Right after the recipient took its last
# delivery, at most MAX_ACKS_PENDING (1024) + credit_window (64) may still wait.
port=$(free_port)
mport=$(free_port)
write_broker_conf "$T/ack" "$port" "
[limits]
queue_limit = 100000"
sed -i "s|^\[broker\]\$|[broker]\nmetrics_listen = tcp://127.0.0.1:$mport|" "$T/ack/broker.conf"
sed -i 's/^log_level = debug$/log_level = info/' "$T/ack/broker.conf"
depth=
if start_broker "$T/ack"; then
	L=$IHALA_BUILD/bench/ihala_load
	$L send -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a dma -t moh -n 20000 -p ack -T 60 \
		>"$T/ack.send" 2>&1
	$L recv -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a moh -n 20000 -T 60 >"$T/ack.recv" 2>&1
	if exec 3<>"/dev/tcp/127.0.0.1/$mport"; then
		printf 'GET /metrics HTTP/1.0\r\n\r\n' >&3
		depth=$(sed -n 's/^ihala_queue_depth{agency="moh"} \([0-9]*\).*/\1/p' <&3)
		exec 3<&-
	fi
	stop_broker
fi
if grep -qx 'delivered=20000' "$T/ack.recv" 2>/dev/null && [ -n "$depth" ] && [ "$depth" -le 1088 ]; then
	ok "a fast acker: acks waiting for the writer stay bounded ($depth <= 1088)"
else
	not_ok "a fast acker: acks waiting for the writer stay bounded (got '${depth}')"
	show "$T/ack.recv" "$T/ack/broker.log"
fi
# OVERLOADED: a sender with more submissions in flight than max_inflight has the excess
# refused, the limit named; nothing it was told is lost, and the broker keeps serving.
L=$IHALA_BUILD/bench/ihala_load
port=$(free_port)
write_broker_conf "$T/ov" "$port" "
[limits]
max_inflight = 8"
if start_broker "$T/ov"; then
	$L send -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a dma -t moh -n 2000 -W 500 -p ov -T 60 \
		>"$T/ov.out" 2>"$T/ov.err"
	refused=$(sed -n 's/^refused=//p' "$T/ov.out")
	receipted=$(sed -n 's/^receipted=//p' "$T/ov.out")
	diag "max_inflight 8, 500 sent at once: ${receipted:-?} receipted, ${refused:-?} refused"
	check "past max_inflight the excess is refused with OVERLOADED's sentence, the rest receipted" \
		eval '[ "${refused:-0}" -gt 0 ] && [ $((${refused:-0} + ${receipted:-0})) -eq 2000 ] &&
			grep -q "more than 8 submissions without receipts" "$T/ov.err"'
	$L send -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a dma -t moh -n 100 -p ov2 -T 60 \
		>"$T/ov2.out" 2>"$T/ov2.err"
	check "after it the broker serves a sender within the limit: every receipt" \
		grep -qx 'receipted=100' "$T/ov2.out"
	stop_broker
else
	not_ok "past max_inflight the excess is refused (no broker)"
	not_ok "after it the broker serves a sender within the limit (no broker)"
fi
# The bench's "under attack" section (bench/attack.sh, run by the full bench only), briefly:
# every case measured, every honest submission receipted and delivered, the JSON whole.
BENCH_ATTACK_SECONDS=1 BENCH_ATTACK_RATE=100 "$IHALA_ROOT/bench/attack.sh" --build "$IHALA_BUILD" \
	--pki "$IHALA_PKI" >"$T/attack.json" 2>"$T/attack.err"
rc=$?
attack_ok() {
	local c
	[ $rc -eq 0 ] || return 1
	for c in none query_flood dup_rid preauth refusals sessions; do
		grep -qE "^  \"attack_p99_ms_$c\": $NUM,?\$" "$T/attack.json" &&
			grep -qE "^  \"attack_receipted_$c\": 100,?\$" "$T/attack.json" &&
			grep -qE "^  \"attack_delivered_$c\": 100,?\$" "$T/attack.json" || return 1
	done
	grep -qE '^  "attack_p99_ms": \{"none":[0-9.]+,"query_flood":[0-9.]+,.*"sessions":[0-9.]+\},?$' \
		"$T/attack.json"
}
if attack_ok; then
	ok "bench/attack.sh: a p99 for each attack, every honest submission receipted and delivered"
else
	not_ok "bench/attack.sh: a p99 for each attack, every honest submission receipted and delivered"
	show "$T/attack.err" "$T/attack.json"
fi
diag "under attack (1 s at 100/s): $(sed -n 's/^  "attack_p99_ms": \(.*\),$/\1/p' "$T/attack.json")"
"$IHALA_ROOT/bench/run.sh" --smok >/dev/null 2>"$T/usage.err"
rc=$?
check "an unknown option is refused with exit 2" test $rc -eq 2
