#!/usr/bin/env bash
# attack.sh - attacks on a real broker while an honest agency keeps working: after each, the
# broker is alive, every honest submission was receipted and delivered, none was refused.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

PROBE=$IHALA_BUILD/tests/tools/probe
LG=$IHALA_BUILD/tests/tools/loadgen
NOTES=$IHALA_BUILD/bench/notes_load
LOAD=$IHALA_BUILD/bench/ihala_load

plan 33

for b in "$IHALA_BUILD/ihala-broker" "$PROBE" "$LG" "$NOTES" "$LOAD"; do
	if [ ! -x "$b" ]; then
		echo "Bail out! $b is missing (make)"
		exit 1
	fi
done

# Under ASan (make sanitize) freed memory waits in a quarantine of 256 MB by default, which
# attack 6 would count as the broker's: a small one keeps its memory figure meaningful.
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

PORT=$(free_port)
EP=tcp://127.0.0.1:$PORT
# Pre-authentication room for attack 4's burst of 100 handshakes from one address; attack 2
# goes far past it. A queue of 10 000 per recipient (one sender's share: 5 000) for attack 5, with
# no rate per referral so that the share is what stops it (quotas.sh tests the rate).
write_broker_conf "$T" "$PORT" "
[limits]
handshake_timeout = 2s
max_preauth_sessions = 128
max_preauth_per_address = 128
queue_limit = 10000
referral_rate = 0"
# hi's documented may_send default, written out (issue 15, item 13: it used to let hi open
# cases of its own; see the "config trap" check at the end).
sed -i '/^\[agency.hi\]$/a may_send = referral, status, outcome, note' "$T/broker.conf"
# moh may open a case of its own, to flood it (attack 5).
sed -i '/^\[agency.moh\]$/a may_open_cases = yes' "$T/broker.conf"
dma=$(write_client_conf "$T" dma "$PORT")
molsa=$(write_client_conf "$T" molsa "$PORT")
start_broker "$T" || { echo "Bail out! the broker does not start"; exit 1; }

probe_as() {
	local who=$1
	shift
	"$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" --cert "$IHALA_PKI/$who.pem" \
		--key "$IHALA_PKI/$who.key" "$@"
}

# honest NAME: dma submits referrals to molsa, five at a time, until $T/NAME.run goes.
honest() {
	local name=$1 i=0
	while [ -e "$T/$name.run" ]; do
		timeout 60 "$LG" submit "$dma" molsa 5 "$name-$i" "$T/$name.receipts" \
			>>"$T/$name.out" 2>>"$T/$name.err" || echo "loadgen failed: $?" >>"$T/$name.err"
		i=$((i + 1))
	done
}

# attack NAME SETTLE CMD...: CMD while the honest agency works, and SETTLE seconds after it
# (what an attack breaks may show a few seconds later); then the checks.
attack() {
	local name=$1 settle=$2 hp sent got missing
	shift 2
	touch "$T/$name.run"
	bg honest "$name"
	hp=$LAST_PID
	"$@" >"$T/$name.attack" 2>&1
	sleep "$settle"
	rm -f "$T/$name.run"
	wait "$hp"
	diag "$name: $(tr '\n' ' ' <"$T/$name.attack")"
	if kill -0 "$BROKER_PID" 2>/dev/null; then
		ok "$name: the broker is alive"
	else
		not_ok "$name: the broker is alive"
		grep -E 'Assertion|security' "$T/broker.log" | tail -n 5 | sed 's/^/#   /'
		start_broker "$T" # so that the next attacks still test something
	fi
	sent=$(awk '/^# counts: submitted/ {n += $4} END {print n + 0}' "$T/$name.out")
	got=$(wc -l <"$T/$name.receipts" 2>/dev/null || echo 0)
	if [ "$sent" -gt 0 ] && [ "$got" -eq "$sent" ] && [ ! -s "$T/$name.err" ]; then
		ok "$name: every honest submission was receipted ($got of $sent), none refused"
	else
		not_ok "$name: every honest submission was receipted ($got of $sent), none refused"
		show "$T/$name.err"
	fi
	timeout 60 "$LG" drain "$molsa" 0 1500 "$T/$name.delivered" >/dev/null 2>&1
	missing=$(awk 'NR == FNR {d[$2] = 1; next} !($1 in d) {n++} END {print n + 0}' \
		"$T/$name.delivered" "$T/$name.receipts" 2>/dev/null)
	check "$name: every receipted honest submission was delivered (${missing:-?} missing)" \
		test "${missing:-1}" -eq 0 -a "$got" -gt 0
}

# 1. An authenticated agency writes Query frames as fast as it can, reads none of the answers,
#    and closes; twice. It used to abort the broker inside libzmq (see open_sockets()).
query_flood() {
	probe_as moh query-flood 1 2000
	probe_as moh query-flood 1 2000
}
attack query-flood 11 query_flood
diag "query-flood: $(grep -c 'bytes of input waiting; closing' "$T/broker.log") session(s) ended for their input backlog"

# 1b. No certificate needed: two connections naming the same ZeroMQ routing id, each writing,
#     then closed. It also aborted the broker inside libzmq.
dup_rid() {
	local i pids=()
	for i in 1 2 3 4 5 6; do
		"$PROBE" --endpoint "$EP" --timeout 5000 dup-rid 3000 &
		pids+=($!)
	done
	wait "${pids[@]}"
}
attack dup-rid 11 dup_rid

# 2. No certificate needed: 300 stalled ClientHellos (max_preauth_sessions is 128) and 300 ZeroMQ connections that never start TLS, all from the honest agency's
#    own address. New handshakes used to be dropped silently while they lasted, and the
#    silent connections stayed open for good.
preauth_flood() {
	local pids=()
	"$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" --no-cert halfopen 300 6 \
		>"$T/halfopen.out" 2>&1 &
	pids+=($!)
	"$PROBE" --endpoint "$EP" silent 300 6 >"$T/silent.out" 2>&1 &
	pids+=($!)
	wait_for 10 grep -q '^sent 300$' "$T/halfopen.out"
	sleep 0.5
	probe_as dma --timeout 3000 welcome >"$T/during.out" 2>&1
	wait "${pids[@]}"
	cat "$T/halfopen.out" "$T/silent.out"
}
attack preauth 1 preauth_flood
check "preauth: during the flood a new handshake (dma) still gets its Welcome" \
	grep -q '^welcome dma' "$T/during.out"
check "preauth: the 300 connections that sent nothing were closed (handshake_timeout 2s)" \
	grep -q '^silent 300: 300 disconnected' "$T/silent.out"
check "preauth: evictions and closures are logged as one security line a second, with counts" \
	grep -qE 'security: last [0-9]+ ms: [0-9]+ half-open handshakes evicted by newer ones.*, [0-9]+ connections closed for sending no ClientHello' "$T/broker.log"

# 3. Refusals as a weapon on the log: hi sends 40 envelopes that are refused (their 'from' is
#    another agency), the first with a message id that carries a newline and a forged line.
#    One full line per agency per interval, then a count; nothing forged.
refusal_flood() {
	local i forged
	forged=$'inj-1\n2026-01-01T00:00:00.000Z ihala-broker: session 9: agency \'dma\' (dma) authenticated'
	"$PROBE" --to molsa --from moh --message-id "$forged" make-envelope M >"$T/inj.env"
	probe_as hi submit-file "$T/inj.env"
	"$PROBE" --to molsa --from moh make-envelope M >"$T/bad.env"
	for i in $(seq 1 40); do
		probe_as hi submit-file "$T/bad.env" >/dev/null 2>&1
	done
}
mark=$(wc -l <"$T/broker.log")
attack refusals 1 refusal_flood
check "refusals: no forged line in the log" \
	bash -c "! grep -q '^2026-01-01T00:00:00.000Z ihala-broker: session 9' '$T/broker.log'"
check "refusals: the newline was written escaped" grep -qF "inj-1\\n2026-01-01" "$T/broker.log"
full=$(tail -n "+$((mark + 1))" "$T/broker.log" | grep -c "security: agency 'hi': message .* refused")
check "refusals: 41 refusals of hi gave $full full line(s) (at most 2: one per 10 s)" \
	test "$full" -ge 1 -a "$full" -le 2
check "refusals: the rest are counted in one line" \
	wait_for 12 grep -qE "security: agency 'hi': [0-9]+ more refusals in the last" "$T/broker.log"

# 4. One agency opening session after session (100 at once; max_sessions_per_agency is 64)
#    used to be able to take every slot of the broker.
sessions_flood() {
	probe_as moh --timeout 15000 flood 100
}
attack sessions 1 sessions_flood
check "sessions: moh got its 64 sessions and no more" \
	grep -q '^flood 100: 64 welcome, 36 refused, 0 no answer$' "$T/sessions.attack"

# 5. One party floods notes on its own referral to molsa (issue 15, item 6). molsa has one
#    queue: it used to fill (queue_limit) and every other sender to molsa, the honest dma
#    included, got QUEUE_FULL. moh may fill its share (queue_share, 50%) and no more.
note_flood() {
	"$NOTES" -b "$EP" -P "$IHALA_PKI" -a moh -t molsa -n 11000 -W 200 -T 90
}
attack note-flood 1 note_flood
nf_ok=$(sed -n 's/^notes=//p' "$T/note-flood.attack")
nf_ref=$(sed -n 's/^refused=//p' "$T/note-flood.attack")
check "note-flood: moh's notes stop at its share of molsa's queue ($nf_ok logged, $nf_ref refused)" \
	test "${nf_ok:-0}" -le 5000 -a "${nf_ref:-0}" -gt 0
check "note-flood: the refusal names moh's share, not molsa's backlog" \
	grep -q "refused: this sender's share of the recipient's queue is full (5000 undelivered entries, 50% of queue_limit)" "$T/note-flood.attack"

# 6. Pipelined submissions of ~0.55 MB (issue 15, item 7; protocol v2: a sealed part of
#    560 000 bytes, under SEAL_DER_MAX): 200 at once from one session. The
#    broker's memory used to grow by all of them (RSS 590 MB for one session); now a session's
#    input waits up to in_cap (16M; past it the session is ended) and its submissions in
#    flight up to max_inflight_bytes (8M), the rest answered OVERLOADED. Measured: it grows by ~20 MB (~140 MB under ASan),
#    and by ~330 MB without max_inflight_bytes.
rss_anon() { awk '/^RssAnon:/ {print $2}' "/proc/$BROKER_PID/status" 2>/dev/null; }
# Each about the largest a node can send: a sealed part holds at most 512 KiB of content.
big_pipeline() {
	local peak=0 v pid
	"$LOAD" send -b "$EP" -P "$IHALA_PKI" -a dma -t molsa -n 200 -s 520000 -W 200 -p BIG \
		-T 60 &
	pid=$!
	while kill -0 "$pid" 2>/dev/null; do
		v=$(rss_anon)
		[ "${v:-0}" -gt "$peak" ] && peak=$v
		sleep 0.05
	done
	wait "$pid"
	echo "peak_rss_anon_kb=$peak"
}
rss0=$(rss_anon)
attack big-pipeline 1 big_pipeline
peak=$(sed -n 's/^peak_rss_anon_kb=//p' "$T/big-pipeline.attack")
bigr=$(sed -n 's/^receipted=//p' "$T/big-pipeline.attack")
diag "big-pipeline: broker RssAnon ${rss0:-?} kB before, peak ${peak:-?} kB; ${bigr:-?} logged"
check "big-pipeline: the broker's anonymous memory grew by less than 200 MB (some logged)" \
	test -n "$peak" -a "$((${peak:-0} - ${rss0:-0}))" -lt 200000 -a "${bigr:-0}" -gt 0

# A config trap, not an attack: with its may_send default written out, hi (an NGO) still may
# not open a case of its own; who may is may_open_cases.
"$PROBE" --to molsa make-envelope TRAP >"$T/trap.env"
out=$(probe_as hi submit-file "$T/trap.env" 2>&1)
diag "config trap: $out"
check "config trap: hi's referral without a parent is refused (FORBIDDEN)" \
	grep -q '^receipt REFUSED FORBIDDEN' <<<"$out"
