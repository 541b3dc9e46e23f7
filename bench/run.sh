#!/usr/bin/env bash
# bench/run.sh - the benchmark harness: ihala beside RabbitMQ, Mosquitto and NATS JetStream, on
# loopback.
#
#   bench/run.sh [--smoke] [--build DIR] [--out DIR]
#
# Full run (`make bench`, about 2-5 minutes): ihala end to end (1 and 4 senders at full speed,
# latency at 1 000, 5 000 and 20 000 msg/s offered; the broker's CPU per referral, by thread;
# BENCH_NOTES (10 000) notes on one referral, median of BENCH_TRIALS runs), RabbitMQ, Mosquitto and NATS JetStream doing the
# same work (the compared throughputs as the median of BENCH_TRIALS runs, default 3; the
# machine's idle share beside each figure), the ceilings (raw ZeroMQ, raw LMDB synced appends,
# the TLS channel alone), a backlog of 1 000 000 referrals for an offline agency (broker RSS,
# drain rate), `ihala audit verify --db` over the resulting store, and the honest agency's p99
# submit->receipt under each attack of the test suite (bench/attack.sh, which runs alone too:
# `bench/attack.sh`, about a minute). Writes OUT/latest.json,
# OUT/latest.txt (the table) and OUT/latest.png (gnuplot); OUT defaults to bench/results.
# --smoke (`make bench-smoke`, a few seconds, part of the suite): tiny counts, ihala and the
# ceilings only (no peers, no chart); OUT defaults to a temp dir; same JSON keys (peers null).
#
# Every process it starts is a child it stops itself (broker, RabbitMQ node and its epmd on a
# private port, Mosquitto, nats-server), each with its own temp dir; nothing listens beyond
# 127.0.0.1.
# Environment: BENCH_COUNT (messages per throughput run, default 100000), BENCH_BACKLOG
# (default 1000000), BENCH_TRIALS (default 3; 1 in smoke mode), BENCH_NOTES (notes on one
# referral, default 10000; 400 in smoke mode), KEEP_TMP=1 keeps the temp dir.
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
B=$ROOT/build
SMOKE=0
OUT=
while [ $# -gt 0 ]; do
	case $1 in
	--smoke) SMOKE=1 ;;
	--build) B=$(cd "$2" && pwd) || exit 2; shift ;;
	--out) OUT=$2; shift ;;
	-h | --help) sed -n '2,25p' "$0"; exit 0 ;;
	*) echo "run.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
	esac
	shift
done

T=$(mktemp -d /tmp/ihala-bench.XXXXXX)
if [ -z "$OUT" ]; then
	if [ $SMOKE = 1 ]; then OUT=$T/results; else OUT=$ROOT/bench/results; fi
fi
mkdir -p "$OUT"
RES=$T/results.txt # KEY VALUE lines, turned into the JSON at the end
echo "bench: temp dir $T" >&2
: >"$RES"
LOAD=$B/bench/ihala_load
PIDS=()
RMQ_ENV=()

if [ $SMOKE = 1 ]; then
	COUNT=${BENCH_COUNT:-2400}
	BACKLOG=${BENCH_BACKLOG:-2000}
	RATES="1000"
	CEIL_COUNT=5000
else
	COUNT=${BENCH_COUNT:-100000}
	BACKLOG=${BENCH_BACKLOG:-1000000}
	RATES="1000 5000 20000"
	CEIL_COUNT=200000
fi
INFLIGHT=1000 # peers' publisher window (ihala's is Welcome.limits.max_inflight)

say() { echo "bench: $*" >&2; }
put() { echo "$1 $2" >>"$RES"; }
get() { awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "null" : v) }' "$RES"; }
# kv FILE KEY: the value of KEY=VALUE in FILE.
kv() { sed -n "s/^$2=//p" "$1" | tail -n 1; }
# calc EXPR: awk arithmetic, "null" when any operand is null or it divides by zero.
calc() {
	case "$*" in *null*) echo null; return ;; esac
	awk "BEGIN { d = $*; printf \"%.6g\n\", d }" 2>/dev/null || echo null
}
ratio() {
	case "$1 $2" in *null*) echo null; return ;; esac
	awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "null"; else printf "%.2f\n", a / b }'
}

# Stop the RabbitMQ node and its epmd (both on our private ports), if one runs.
rmq_stop() {
	[ ${#RMQ_ENV[@]} -gt 0 ] || return 0
	env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RMQ_NODE" -q stop >/dev/null 2>&1
	env "${RMQ_ENV[@]}" epmd -port "$RMQ_EPMD" -kill >/dev/null 2>&1
	RMQ_ENV=()
	wait "$RMQ_PID" 2>/dev/null
}

cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
	done
	sleep 0.2
	for p in "${PIDS[@]}"; do
		kill -9 "$p" 2>/dev/null
	done
	rmq_stop
	wait 2>/dev/null
	if [ -z "${KEEP_TMP:-}" ]; then rm -rf "$T"; else say "kept $T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A loopback TCP port nothing uses, below the ephemeral range (32768+), so no client
# connection takes it between this check and the bind.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		if ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
			echo "$p"
			return
		fi
	done
}

# Busy share of both cores over one second (other work on the machine skews every number).
cpu_busy_pct() {
	local a b
	read -r _ a1 a2 a3 a4 a5 a6 a7 _ </proc/stat
	sleep 1
	read -r _ b1 b2 b3 b4 b5 b6 b7 _ </proc/stat
	a=$((b1 + b2 + b3 + b6 + b7 - a1 - a2 - a3 - a6 - a7))
	b=$((a + b4 + b5 - a4 - a5))
	awk -v a="$a" -v b="$b" 'BEGIN { printf "%.0f\n", b ? 100 * a / b : 0 }'
}

# The machine's idle share during one figure: idle_begin NAME before the measured run,
# idle_end NAME after it puts NAME_idle_pct (idle + iowait over all of /proc/stat's cpu time,
# both cores) and NAME_other_pct (the share of that time other work was running: busy time
# less the CPU of this script's own process tree). A throughput run keeps the cores busy
# itself, so idle near 0 is normal; other work well above 0 marks a disturbed figure.
cpu_jiffies() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }
# own_jiffies: CPU time (clock ticks) of this script and every process under it, the
# exited ones included (a reaped child's time is in its parent's cutime and cstime).
own_jiffies() {
	cat /proc/[0-9]*/stat 2>/dev/null | awk -v root=$$ '
		{ pid = $1; sub(/.*\) /, ""); pp[pid] = $2; t[pid] = $12 + $13 + $14 + $15 }
		END {
			for (p in pp) {
				q = p
				for (h = 0; h < 64 && q != root && q > 1; h++) q = pp[q]
				if (q == root) n += t[p]
			}
			print n + 0
		}'
}
idle_begin() { echo "$(cpu_jiffies) $(own_jiffies)" >"$T/$1.jiffies"; }
idle_end() {
	local b0 i0 o0 b1 i1 o1
	read -r b0 i0 o0 <"$T/$1.jiffies"
	read -r b1 i1 < <(cpu_jiffies)
	o1=$(own_jiffies)
	put "${1}_idle_pct" "$(awk -v b=$((b1 - b0)) -v i=$((i1 - i0)) \
		'BEGIN { printf "%.0f\n", (b + i > 0 ? 100 * i / (b + i) : 0) }')"
	put "${1}_other_pct" "$(awk -v b=$((b1 - b0)) -v i=$((i1 - i0)) -v o=$((o1 - o0)) \
		'BEGIN { x = b - o; if (x < 0) x = 0; printf "%.0f\n", (b + i > 0 ? 100 * x / (b + i) : 0) }')"
}

# task_cpu PID: one line per thread of PID, "TID COMM TICKS": its comm (characters other than
# [A-Za-z0-9/_.:-] made '_') and utime + stime in clock ticks, from /proc/PID/task/TID/stat.
task_cpu() {
	local t c
	for t in /proc/"$1"/task/*; do
		c=$(tr -c 'A-Za-z0-9/_.:\n-' '_' <"$t/comm" 2>/dev/null) || continue
		awk -v tid="${t##*/}" -v comm="$c" '{ sub(/.*\) /, ""); print tid, comm, $12 + $13 }' \
			"$t/stat" 2>/dev/null
	done
}

# broker_cpu NAME PID N: the broker's CPU between $T/NAME.tcpu0 and $T/NAME.tcpu1 (task_cpu
# snapshots of PID) per referral (N) in microseconds: NAME_broker_cpu_us_per_referral, and
# NAME_broker_cpu_by_thread, a JSON object of the same per thread. The broker does not name
# its threads: the first one (TID = PID) is labelled "main", and when exactly one other
# thread carries the process's own name it is "writer" (the only thread ihala starts);
# threads with a name of their own (ZeroMQ's "ZMQbg/...") keep it.
broker_cpu() {
	local out
	out=$(awk -v pid="$2" -v n="$3" -v hz="$(getconf CLK_TCK)" '
		NR == FNR { t0[$1] = $3; next }
		{
			d = $3 - t0[$1]; total += d
			if ($1 == pid) pcomm = $2
			tid[++k] = $1; comm[k] = $2; dt[k] = d
		}
		END {
			for (i = 1; i <= k; i++)
				if (tid[i] != pid && comm[i] == pcomm) unnamed++
			s = ""
			for (i = 1; i <= k; i++) {
				l = tid[i] == pid ? "main" : comm[i] != pcomm ? comm[i] : \
					unnamed == 1 ? "writer" : "thread_" tid[i]
				s = s (s == "" ? "" : ",") sprintf("\"%s\":%.2f", l, n > 0 ? dt[i] * 1e6 / hz / n : 0)
			}
			printf "%.2f {%s}\n", (n > 0 ? total * 1e6 / hz / n : 0), s
		}' "$T/$1.tcpu0" "$T/$1.tcpu1" 2>/dev/null)
	put "${1}_broker_cpu_us_per_referral" "${out%% *}"
	put "${1}_broker_cpu_by_thread" "${out#* }"
}

# ---- ihala ----

PKI=$T/pki
"$ROOT/config/pki/mkpki" "$PKI" >/dev/null || { say "mkpki failed"; exit 1; }

# broker_start NAME: a fresh store in $T/NAME; sets BPORT, BPID, BDIR.
broker_start() {
	BDIR=$T/$1
	BPORT=$(free_port)
	mkdir -p "$BDIR"
	cat >"$BDIR/broker.conf" <<CONF
[broker]
listen = tcp://127.0.0.1:$BPORT
data_dir = $BDIR/data
log_level = info
log_origin = bench.ihala/log

[tls]
ca_file = $PKI/ca.pem
crl_file = $PKI/ca.crl
cert_file = $PKI/broker.pem
key_file = $PKI/broker.key

[limits]
queue_limit = 4000000
# the notes section puts 10 000 notes on one referral as fast as it can (the fair shares
# otherwise in force: queue_share, referral_bytes, max_inflight_bytes)
referral_rate = 0

[checkpoint]
key_file = $PKI/checkpoint.key

[agency.dma]
role = dma
[agency.moh]
role = ministry
[agency.molsa]
role = ministry
[agency.hi]
role = ngo
[agency.auditor]
role = auditor
CONF
	"$B/ihala-broker" -d -c "$BDIR/broker.conf" >"$BDIR/broker.log" 2>&1 &
	BPID=$!
	PIDS+=("$BPID")
	local i
	for i in $(seq 1 100); do
		grep -q 'listening on' "$BDIR/broker.log" 2>/dev/null && return 0
		kill -0 "$BPID" 2>/dev/null || break
		sleep 0.05
	done
	if grep -q 'Address already in use' "$BDIR/broker.log" && [ "${2:-0}" -lt 3 ]; then
		rm -rf "$BDIR"
		broker_start "$1" $((${2:-0} + 1))
		return
	fi
	say "the broker did not start:"
	tail -n 5 "$BDIR/broker.log" >&2
	exit 1
}

broker_stop() {
	kill -TERM "$BPID" 2>/dev/null
	wait "$BPID" 2>/dev/null
}

# recv_start NAME COUNT [LAT] AGENCY...: recipients in the background, online when it returns.
recv_start() {
	local name=$1 count=$2 lat=$3 i
	shift 3
	local args=()
	for a in "$@"; do args+=(-a "$a"); done
	[ -n "$lat" ] && args+=(-L "$lat")
	rm -f "$T/$name.ready"
	"$LOAD" recv -b "tcp://127.0.0.1:$BPORT" -P "$PKI" "${args[@]}" -n "$count" -I 10000 \
		-R "$T/$name.ready" >"$T/$name.out" 2>"$T/$name.err" &
	RPID=$!
	PIDS+=("$RPID")
	for i in $(seq 1 200); do
		[ -e "$T/$name.ready" ] && return 0
		kill -0 "$RPID" 2>/dev/null || break
		sleep 0.05
	done
	say "recipients '$name' did not come online:"
	cat "$T/$name.err" >&2
	exit 1
}

# e2e NAME SENDERS COUNT_PER_SENDER RATE: one end-to-end run on a fresh broker.
# Leaves $T/NAME.send*.out, .recv.out and latency files; echoes nothing. Puts the machine's
# idle and other-work shares over the run (NAME_idle_pct, NAME_other_pct) and the broker's CPU
# per referral (NAME_broker_cpu_*).
e2e() {
	local name=$1 senders=$2 count=$3 rate=$4 s spids=()
	broker_start "$name"
	recv_start "$name.recv" $((senders * count)) "$T/$name.dlat" moh molsa hi
	idle_begin "$name"
	task_cpu "$BPID" >"$T/$name.tcpu0"
	for s in $(seq 1 "$senders"); do
		"$LOAD" send -b "tcp://127.0.0.1:$BPORT" -P "$PKI" -a dma -t moh,molsa,hi \
			-n "$count" -r "$rate" -p "$name-s$s" -L "$T/$name.rlat$s" \
			>"$T/$name.send$s.out" 2>"$T/$name.send$s.err" &
		spids+=($!)
		PIDS+=($!)
	done
	for s in "${spids[@]}"; do wait "$s" || say "$name: a sender failed: $(cat "$T/$name".send*.err)"; done
	wait "$RPID" || say "$name: recipients: $(cat "$T/$name.recv.err")"
	task_cpu "$BPID" >"$T/$name.tcpu1"
	idle_end "$name"
	broker_cpu "$name" "$BPID" "$(cat "$T/$name".send*.out | sed -n 's/^receipted=//p' |
		awk '{ n += $1 } END { print n + 0 }')"
	broker_stop
}

# e2e_rates NAME SENDERS: throughput of a finished run into the results under prefix NAME.
e2e_rates() {
	local name=$1 senders=$2 s t0=0 tr=0 n=0 f
	for s in $(seq 1 "$senders"); do
		f=$T/$1.send$s.out
		local a b c
		a=$(kv "$f" t_first_us)
		b=$(kv "$f" t_last_us)
		c=$(kv "$f" receipted)
		if [ "$t0" = 0 ] || [ "$a" -lt "$t0" ]; then t0=$a; fi
		if [ "$b" -gt "$tr" ]; then tr=$b; fi
		n=$((n + c))
	done
	local td dn
	td=$(kv "$T/$name.recv.out" t_last_us)
	dn=$(kv "$T/$name.recv.out" delivered)
	put "${name}_receipted" "$n"
	put "${name}_delivered" "$dn"
	put "${name}_receipted_per_s" "$(calc "$n * 1e6 / ($tr - $t0)")"
	put "${name}_delivered_per_s" "$(calc "$dn * 1e6 / ($td - $t0)")"
	# End to end: every referral receipted (durable) and delivered, over the whole run.
	local te=$tr
	[ "$td" -gt "$te" ] && te=$td
	put "${name}_msgs_per_s" "$(calc "($n < $dn ? $n : $dn) * 1e6 / ($te - $t0)")"
	put envelope_bytes "$(kv "$T/$name.send1.out" envelope_bytes)"
	put submit_bytes "$(kv "$T/$name.send1.out" submit_bytes)"
	put max_inflight "$(kv "$T/$name.send1.out" max_inflight)"
}

# lat_stats NAME FILE...: p50/p99/max in ms into the results.
lat_stats() {
	local name=$1
	shift
	"$LOAD" stats "$@" >"$T/$name.stats" 2>/dev/null || true
	put "${name}_p50_ms" "$(calc "$(kv "$T/$name.stats" p50_us) / 1000")"
	put "${name}_p99_ms" "$(calc "$(kv "$T/$name.stats" p99_us) / 1000")"
	put "${name}_max_ms" "$(calc "$(kv "$T/$name.stats" max_us) / 1000")"
}

writer_batch() {
	sed -n 's/.*writer: [0-9]* batches, \([0-9.]*\) requests and \([0-9.]*\) submissions per batch.*/\1 \2/p' \
		"$T/$1/broker.log" | tail -n 1
}

put smoke "$SMOKE"
put machine_busy_pct_before "$(cpu_busy_pct)"
# Busy CPU time of the whole machine over the run, to tell our share from other work's.
stat_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
busy0=$(stat_busy)
put cores "$(nproc)"
t_start=$(date +%s)

# The three throughputs the targets compare (ihala 1 sender, RabbitMQ, Mosquitto) are each
# measured TRIALS times and the median kept (a 2-core machine varies by 10-20 % run to run).
TRIALS=${BENCH_TRIALS:-3}
[ $SMOKE = 1 ] && TRIALS=1
put trials "$TRIALS"
# median VALUE...: the middle value (the lower middle of an even count).
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : "null") }'; }

trial_list=""
for t in $(seq 1 "$TRIALS"); do
	say "ihala end to end, 1 sender, $COUNT referrals at full speed (trial $t of $TRIALS)"
	e2e "ihala1_t$t" 1 "$COUNT" 0
	e2e_rates "ihala1_t$t" 1
	put "ihala1_trial${t}_msgs_per_s" "$(get "ihala1_t${t}_msgs_per_s")"
	put "ihala1_trial${t}_idle_pct" "$(get "ihala1_t${t}_idle_pct")"
	put "ihala1_trial${t}_other_pct" "$(get "ihala1_t${t}_other_pct")"
	trial_list="$trial_list $(get "ihala1_t${t}_msgs_per_s"):ihala1_t$t"
done
# The median trial stands for the 1-sender run: its rates, latencies, batches and log.
I1=$(for x in $trial_list; do echo "${x%%:*} ${x#*:}"; done | sort -g |
	awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
for k in receipted delivered receipted_per_s delivered_per_s msgs_per_s idle_pct other_pct \
	broker_cpu_us_per_referral broker_cpu_by_thread; do
	put "ihala1_$k" "$(get "${I1}_$k")"
done
# Broker CPU per referral: all its threads (utime + stime from /proc), over the median 1-sender
# run, from the recipients' online to the last delivery.
put broker_cpu_us_per_referral "$(get ihala1_broker_cpu_us_per_referral)"
put broker_cpu_us_per_referral_by_thread "$(get ihala1_broker_cpu_by_thread)"
say "broker CPU per referral (1 sender, median trial): $(get broker_cpu_us_per_referral) us;" \
	"by thread: $(get broker_cpu_us_per_referral_by_thread)"
lat_stats ihala1_receipt "$T/$I1.rlat1"
lat_stats ihala1_delivery "$T/$I1.dlat"
# Log entries the run wrote (submissions, deliveries, 'received' events and their deliveries).
entries=$(mdb_stat -s log "$T/$I1/data" 2>/dev/null | awk '$1 == "Entries:" { print $2 }')
put ihala1_log_entries "${entries:-null}"
put log_entries_per_referral "$(calc "${entries:-null} / $COUNT")"
read -r reqs subs <<<"$(writer_batch "$I1")"
put batch_requests "${reqs:-null}"
put batch_submissions "${subs:-null}"

say "ihala end to end, 4 senders, $COUNT referrals at full speed"
e2e ihala4 4 $((COUNT / 4)) 0
e2e_rates ihala4 4

for r in $RATES; do
	n=$((r * 5))
	[ $r -ge 5000 ] && n=$((r * 4))
	[ $r -ge 20000 ] && n=$((r * 3))
	[ $SMOKE = 1 ] && n=300
	say "ihala latency at $r msg/s offered ($n referrals)"
	e2e "lat$r" 1 "$n" "$r"
	lat_stats "lat${r}_receipt" "$T/lat$r.rlat1"
	lat_stats "lat${r}_delivery" "$T/lat$r.dlat"
	t0=$(kv "$T/lat$r.send1.out" t_first_us)
	t1=$(kv "$T/lat$r.send1.out" t_last_send_us)
	put "lat${r}_achieved_per_s" "$(calc "($n - 1) * 1e6 / ($t1 - $t0)")"
done

# One referral's history: NOTES notes on it, the receipt rate of each NOTES_CHUNK of them. The
# cost of one entry should not depend on how long its referral's history is: the last chunk
# as fast as the first.
NOTES=${BENCH_NOTES:-10000}
NOTES_CHUNK=1000
if [ $SMOKE = 1 ]; then
	NOTES=${BENCH_NOTES:-400}
	NOTES_CHUNK=100
fi
# TRIALS runs (the chunks are a few tens of milliseconds each once the rate does not fall:
# one run on a shared machine is noise); the trial of the median last/first ratio stands for
# the figure, every trial's ratio is kept beside it.
notes_list=""
for t in $(seq 1 "$TRIALS"); do
	say "ihala: $NOTES notes on one referral, entries/s per $NOTES_CHUNK as its history grows" \
		"(trial $t of $TRIALS)"
	broker_start "notes_t$t"
	recv_start "notes_t$t.recv" $((NOTES + 1)) "" moh
	idle_begin "notes_t$t"
	"$B/bench/notes_load" -b "tcp://127.0.0.1:$BPORT" -P "$PKI" -a dma -t moh -n "$NOTES" \
		-k "$NOTES_CHUNK" -T 1200 >"$T/notes_t$t.out" 2>"$T/notes_t$t.err" ||
		say "notes: $(cat "$T/notes_t$t.err")"
	idle_end "notes_t$t"
	wait "$RPID" || say "notes: recipient: $(cat "$T/notes_t$t.recv.err")"
	broker_stop
	r=$(ratio "$(kv "$T/notes_t$t.out" last_per_s)" "$(kv "$T/notes_t$t.out" first_per_s)")
	put "notes_trial${t}_last_vs_first" "$r"
	notes_list="$notes_list $r:$t"
done
NT=$(for x in $notes_list; do echo "${x%%:*} ${x#*:}"; done | sort -g |
	awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
put notes_count "$(kv "$T/notes_t$NT.out" notes)"
put notes_chunk "$NOTES_CHUNK"
put notes_first_per_s "$(kv "$T/notes_t$NT.out" first_per_s)"
put notes_last_per_s "$(kv "$T/notes_t$NT.out" last_per_s)"
put notes_last_vs_first "$(ratio "$(get notes_last_per_s)" "$(get notes_first_per_s)")"
put notes_idle_pct "$(get "notes_t${NT}_idle_pct")"
put notes_other_pct "$(get "notes_t${NT}_other_pct")"
c=$(kv "$T/notes_t$NT.out" chunks_per_s)
put notes_chunks_per_s "[${c}]"

# The peers carry what one ihala referral is on the wire: its clear part and its sealed part
# (protocol v2; the clear part alone is about 190 bytes).
ENV_BYTES=$(get submit_bytes)
[ "$ENV_BYTES" = null ] && ENV_BYTES=1024
put peer_message_bytes "$ENV_BYTES"

# ---- peers ----

# peer_trials NAME LABEL DIR LOADER PORT: TRIALS runs of a peer's load client (bench/LOADER),
# each figure kept as NAME_trialT_msgs_per_s (the machine's idle share during it as
# NAME_trialT_idle_pct and _other_pct) and the median as NAME_msgs_per_s (its trial's shares as
# NAME_idle_pct and NAME_other_pct).
peer_trials() {
	local name=$1 label=$2 d=$3 load=$4 port=$5 t mt vals=() pairs=()
	for t in $(seq 1 "$TRIALS"); do
		say "$label (trial $t of $TRIALS)"
		idle_begin "${name}_trial$t"
		if "$B/bench/$load" "$port" "$PKI" "$COUNT" "$ENV_BYTES" "$INFLIGHT" \
			>"$d/load$t.out" 2>"$d/load$t.err"; then
			idle_end "${name}_trial$t"
			vals+=("$(kv "$d/load$t.out" msgs_per_s)")
			pairs+=("${vals[-1]} $t")
			put "${name}_trial${t}_msgs_per_s" "${vals[-1]}"
		else
			say "$label: run failed: $(cat "$d/load$t.err" "$d"/*.log 2>/dev/null)"
		fi
	done
	[ ${#vals[@]} -gt 0 ] || return 0
	put "${name}_msgs_per_s" "$(median "${vals[@]}")"
	mt=$(printf '%s\n' "${pairs[@]}" | sort -g | awk '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }')
	put "${name}_idle_pct" "$(get "${name}_trial${mt}_idle_pct")"
	put "${name}_other_pct" "$(get "${name}_trial${mt}_other_pct")"
}

run_rabbitmq() {
	local d=$T/rabbitmq port dist i
	if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || [ ! -x "$B/bench/rabbitmq_load" ]; then
		say "RabbitMQ: not installed or rabbitmq_load not built (make bench-deps); skipped"
		return
	fi
	port=$(free_port)
	dist=$(free_port)
	RMQ_EPMD=$(free_port)
	RMQ_NODE=ihalabench$$@localhost
	mkdir -p "$d"
	echo '[].' >"$d/enabled_plugins"
	cat >"$d/rabbitmq.conf" <<CONF
listeners.tcp = none
listeners.ssl.default = 127.0.0.1:$port
ssl_options.cacertfile = $PKI/ca.pem
ssl_options.certfile = $PKI/broker.pem
ssl_options.keyfile = $PKI/broker.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
ssl_options.versions.1 = tlsv1.3
log.console = false
log.file.level = warning
CONF
	RMQ_ENV=(HOME="$d" RABBITMQ_HOME=/usr/lib/rabbitmq RABBITMQ_NODENAME="$RMQ_NODE"
		RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" RABBITMQ_CONF_ENV_FILE="$d/none"
		RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
		RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" RABBITMQ_MNESIA_BASE="$d/mnesia"
		RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PLUGINS_EXPAND_DIR="$d/plugins"
		RABBITMQ_PID_FILE="$d/pid" RABBITMQ_DIST_PORT="$dist" ERL_EPMD_PORT="$RMQ_EPMD"
		ERL_EPMD_ADDRESS=127.0.0.1
		RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}")
	say "RabbitMQ: starting a node on 127.0.0.1:$port"
	env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server >"$d/server.out" 2>&1 &
	RMQ_PID=$!
	PIDS+=($!)
	for i in $(seq 1 120); do
		env "${RMQ_ENV[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RMQ_NODE" -q await_startup \
			>/dev/null 2>&1 && break
		sleep 0.5
	done
	peer_trials rabbitmq "RabbitMQ: $COUNT persistent messages, confirms, manual acks" "$d" \
		rabbitmq_load "$port"
	rmq_stop
}

run_mosquitto() {
	local d=$T/mosquitto port mpid
	if ! command -v mosquitto >/dev/null || [ ! -x "$B/bench/mosquitto_load" ]; then
		say "Mosquitto: not installed or mosquitto_load not built (make bench-deps); skipped"
		return
	fi
	port=$(free_port)
	mkdir -p "$d/data"
	cat >"$d/mosquitto.conf" <<CONF
# mosquitto drops root for user 'mosquitto' by default, which cannot read the 0600 key
user $(id -un)
persistence true
persistence_location $d/data/
max_queued_messages 0
max_inflight_messages $INFLIGHT
log_dest stderr
log_type error
log_type warning
listener $port 127.0.0.1
cafile $PKI/ca.pem
certfile $PKI/broker.pem
keyfile $PKI/broker.key
require_certificate true
allow_anonymous true
tls_version tlsv1.3
CONF
	mosquitto -c "$d/mosquitto.conf" >"$d/mosquitto.log" 2>&1 &
	mpid=$!
	PIDS+=("$mpid")
	sleep 0.5
	peer_trials mosquitto "Mosquitto: $COUNT QoS 1 messages, persistent subscriber" "$d" \
		mosquitto_load "$port"
	kill -TERM "$mpid" 2>/dev/null
	wait "$mpid" 2>/dev/null
}

# JetStream's PubAck does not wait for fsync (ihala's receipt and RabbitMQ's confirm do).
NATS_NOSYNC="NATS JetStream acknowledges before fsync: its PubAck comes once the message is in
the stream's file store, which the server syncs to disk on a background timer (JetStream's
default sync interval, 2 minutes in NATS's documentation; 2.9 has no setting for it)"

run_nats() {
	local d=$T/nats port npid i n13 nall
	if ! command -v nats-server >/dev/null || [ ! -x "$B/bench/nats_load" ]; then
		say "NATS: nats-server not installed or nats_load not built (make bench-deps); skipped"
		return
	fi
	port=$(free_port)
	mkdir -p "$d/store"
	# debug: connection events only (each session's TLS version, checked below), no tracing.
	cat >"$d/nats.conf" <<CONF
listen: 127.0.0.1:$port
debug: true
log_file: "$d/nats.log"
jetstream {
  store_dir: "$d/store"
}
tls {
  ca_file: "$PKI/ca.pem"
  cert_file: "$PKI/broker.pem"
  key_file: "$PKI/broker.key"
  verify: true
  timeout: 5
}
CONF
	# nats-server 2.9 has no minimum TLS version setting: the client side is held to TLS 1.3
	# by OpenSSL's configuration (the C client's OpenSSL reads OPENSSL_CONF).
	cat >"$d/openssl.cnf" <<CONF
openssl_conf = default_conf
[default_conf]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.3
CONF
	say "NATS: starting nats-server $(nats-server --version 2>&1 | sed 's/.* v//') on 127.0.0.1:$port"
	nats-server -c "$d/nats.conf" >"$d/server.out" 2>&1 &
	npid=$!
	PIDS+=("$npid")
	for i in $(seq 1 100); do
		grep -q 'Server is ready' "$d/nats.log" 2>/dev/null && break
		kill -0 "$npid" 2>/dev/null || break
		sleep 0.1
	done
	say "$(echo $NATS_NOSYNC)"
	OPENSSL_CONF=$d/openssl.cnf peer_trials nats \
		"NATS JetStream: $COUNT messages, file stream, durable push consumers, explicit acks" \
		"$d" nats_load "$port"
	kill -TERM "$npid" 2>/dev/null
	wait "$npid" 2>/dev/null
	nall=$(grep -c 'TLS version' "$d/nats.log")
	n13=$(grep -c 'TLS version 1\.3,' "$d/nats.log")
	put nats_tls_sessions "$nall"
	put nats_tls13_sessions "$n13"
	[ "$nall" = "$n13" ] || say "NATS: only $n13 of $nall TLS sessions were TLS 1.3"
}

if [ $SMOKE = 0 ]; then
	run_rabbitmq
	run_mosquitto
	run_nats
else
	say "smoke mode: the peers (RabbitMQ, Mosquitto, NATS JetStream) are not run"
fi

# ---- ceilings ----

# A ceiling is the best the machine can do: each is run 3 times (once in smoke mode) and the
# best kept, so a moment of other work (another process's fsyncs) does not lower it.
say "ceilings: ZeroMQ, LMDB, TLS channel"
TRIES=3
[ $SMOKE = 1 ] && TRIES=1
# The broker's own batch size: submissions per group commit in the 1-sender run.
bsub=$(get batch_submissions)
bsub=$(awk -v b="$bsub" 'BEGIN { b = int(b + 0.5); print b < 1 ? 1 : b }')
breq=$(awk -v b="$(get batch_requests)" 'BEGIN { b = int(b + 0.5); print b < 1 ? 1 : b }')
batches=$bsub
[ "$breq" != "$bsub" ] && batches="$bsub,$breq"
idle_begin ceilings
for i in $(seq 1 $TRIES); do
	"$B/bench/zmq_ceiling" "tcp://127.0.0.1:$(free_port)" "$CEIL_COUNT" "$ENV_BYTES" 0 |
		sed -n 's/^msgs_per_s=/zmq /p'
	"$B/bench/zmq_ceiling" "tcp://127.0.0.1:$(free_port)" "$CEIL_COUNT" "$ENV_BYTES" \
		"$(get max_inflight)" | sed -n 's/^msgs_per_s=/zmqw /p'
	rm -rf "$T/lmdb"
	"$B/bench/lmdb_ceiling" "$T/lmdb" "$((CEIL_COUNT / 2))" "$ENV_BYTES" "$batches" |
		sed -n "s/^batch=$bsub msgs_per_s=\([0-9]*\).*/lmdb \1/p; s/^batch=$breq msgs_per_s=\([0-9]*\).*/lmdbr \1/p"
	"$B/bench/tls_ceiling" "$PKI" "$CEIL_COUNT" "$ENV_BYTES" |
		sed -n 's/^frames_per_s=\([0-9]*\).*/tls \1/p'
done >"$T/ceilings.out"
idle_end ceilings
best() { awk -v k="$1" '$1 == k && $2 + 0 > m { m = $2 + 0 } END { print (m > 0 ? m : "null") }' "$T/ceilings.out"; }
put zmq_ceiling_msgs_per_s "$(best zmq)"
put zmq_windowed_msgs_per_s "$(best zmqw)"
put lmdb_ceiling_batch "$bsub"
put lmdb_ceiling_msgs_per_s "$(best lmdb)"
if [ "$breq" != "$bsub" ]; then
	put lmdb_ceiling_at_request_batch_msgs_per_s "$(best lmdbr)"
else
	put lmdb_ceiling_at_request_batch_msgs_per_s "$(best lmdb)"
fi
put tls_ceiling_frames_per_s "$(best tls)"

# ---- backlog ----

# rss_sampler PID OUT: the largest VmRSS, RssAnon and RssFile (KiB) of PID, every 0.2 s, into
# OUT until PID ends (file pages are the LMDB map's; the kernel may drop them at any time).
rss_sampler() {
	local r a f mr=0 ma=0 mf=0
	while kill -0 "$1" 2>/dev/null; do
		read -r r a f < <(awk '/^VmRSS:/ { r = $2 } /^RssAnon:/ { a = $2 } /^RssFile:/ { f = $2 }
			END { print r + 0, a + 0, f + 0 }' "/proc/$1/status" 2>/dev/null)
		[ "${r:-0}" -gt $mr ] && mr=$r
		[ "${a:-0}" -gt $ma ] && ma=$a
		[ "${f:-0}" -gt $mf ] && mf=$f
		echo "$mr $ma $mf" >"$2"
		sleep 0.2
	done
}

say "backlog: $BACKLOG referrals for an offline agency"
broker_start backlog
rss_sampler "$BPID" "$T/rss.max" &
PIDS+=($!)
idle_begin backlog
"$LOAD" send -b "tcp://127.0.0.1:$BPORT" -P "$PKI" -a dma -t moh -n "$BACKLOG" -p bl -T 1200 \
	>"$T/bl.send.out" 2>"$T/bl.send.err" || say "backlog sender: $(cat "$T/bl.send.err")"
idle_end backlog
t0=$(kv "$T/bl.send.out" t_first_us)
t1=$(kv "$T/bl.send.out" t_last_us)
put backlog_count "$(kv "$T/bl.send.out" receipted)"
put backlog_submit_per_s "$(calc "$(kv "$T/bl.send.out" receipted) * 1e6 / ($t1 - $t0)")"
put backlog_submit_s "$(calc "($t1 - $t0) / 1e6")"
sleep 1
st=/proc/$BPID/status
put rss_mib_1m_backlog "$(awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "$st")"
put rss_anon_mib_1m_backlog "$(awk '/^RssAnon:/ { printf "%.1f\n", $2 / 1024 }' "$st")"
put rss_file_mib_1m_backlog "$(awk '/^RssFile:/ { printf "%.1f\n", $2 / 1024 }' "$st")"
put rss_hwm_mib_1m_backlog "$(awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "$st")"
put store_mib_1m_backlog "$(du -sm "$BDIR/data" | cut -f1)"
say "backlog: draining"
idle_begin drain
"$LOAD" recv -b "tcp://127.0.0.1:$BPORT" -P "$PKI" -a moh -n "$BACKLOG" -I 10000 -T 1200 \
	>"$T/bl.recv.out" 2>"$T/bl.recv.err" || say "backlog drain: $(cat "$T/bl.recv.err")"
idle_end drain
t0=$(kv "$T/bl.recv.out" t_open_us)
t1=$(kv "$T/bl.recv.out" t_last_us)
put drain_count "$(kv "$T/bl.recv.out" delivered)"
put drain_msgs_per_s "$(calc "$(kv "$T/bl.recv.out" delivered) * 1e6 / ($t1 - $t0)")"
put rss_mib_after_drain "$(awk '/^VmRSS:/ { printf "%.1f\n", $2 / 1024 }' "$st")"
broker_stop
read -r mr ma mf <"$T/rss.max"
put rss_peak_mib_backlog "$(calc "$mr / 1024")"
put rss_anon_peak_mib_backlog "$(calc "$ma / 1024")"
put rss_file_peak_mib_backlog "$(calc "$mf / 1024")"
read -r reqs subs <<<"$(writer_batch backlog)"
put backlog_batch_requests "${reqs:-null}"

# ---- audit ----

say "audit: verifying the backlog store"
if "$B/ihala" audit verify --help 2>&1 | grep -q -- '--db'; then
	t0=$(date +%s.%N)
	"$B/ihala" audit verify --db "$BDIR/data" --key "$PKI/checkpoint.pub" >"$T/verify.out" 2>"$T/verify.err"
	rc=$?
	t1=$(date +%s.%N)
	n=$(grep -oE '^\{"entries":[0-9]+' "$T/verify.out" | head -n 1 | cut -d: -f2)
	if [ $rc = 0 ] && [ -n "$n" ]; then
		put verify_tool 1
		put verify_entries "$n"
		put verify_entries_per_s "$(calc "$n / ($t1 - $t0)")"
	else
		say "ihala audit verify failed ($rc): $(cat "$T/verify.err")"
	fi
fi
"$B/bench/audit_rate" "$BDIR/data" >"$T/audit.out" 2>"$T/audit.err" || say "audit_rate: $(cat "$T/audit.err")"
put hash_range_entries_per_s "$(sed -n 's/.*entries_per_s=\([0-9]*\).*/\1/p' "$T/audit.out")"
if [ "$(get verify_entries_per_s)" = null ]; then
	# `ihala audit verify` missing or failed: the rate of its core (leaf hashes + range).
	put verify_tool 0
	put verify_entries "$(sed -n 's/^entries=\([0-9]*\).*/\1/p' "$T/audit.out")"
	put verify_entries_per_s "$(get hash_range_entries_per_s)"
fi
put bench_seconds $(($(date +%s) - t_start))
# Everything this run started has been waited for, so `times` holds its CPU time: the rest of
# the machine's busy time was other work, which lowers every figure above.
times >"$T/times"
own=$(tail -n 1 "$T/times" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } print s }')
put other_work_cpu_pct "$(awk -v b="$(($(stat_busy) - busy0))" -v hz="$(getconf CLK_TCK)" -v own="$own" \
	-v wall="$(get bench_seconds)" -v n="$(nproc)" \
	'BEGIN { o = b / hz - own; if (o < 0) o = 0; printf "%.0f\n", (wall > 0 ? 100 * o / (wall * n) : 0) }')"
put machine_busy_pct_after "$(cpu_busy_pct)"

# ---- under attack ----

# The honest agency's submit->receipt latency while each attack of tests/integration/attack.sh
# runs (bench/attack.sh, which also runs alone); not in smoke mode (about a minute).
if [ $SMOKE = 0 ]; then
	say "under attack: the honest agency's latency while each attack runs (bench/attack.sh)"
	idle_begin attack
	"$ROOT/bench/attack.sh" --build "$B" --pki "$PKI" --kv >>"$RES" 2>"$T/attack.err" ||
		say "attack: $(tail -n 3 "$T/attack.err")"
	idle_end attack
fi

# ---- report ----

put ihala_msgs_per_s "$(get ihala1_msgs_per_s)"
put ihala_4_senders_msgs_per_s "$(get ihala4_msgs_per_s)"
put ihala_vs_rabbitmq "$(ratio "$(get ihala1_msgs_per_s)" "$(get rabbitmq_msgs_per_s)")"
put ihala_vs_mosquitto "$(ratio "$(get ihala1_msgs_per_s)" "$(get mosquitto_msgs_per_s)")"
put ihala_vs_nats "$(ratio "$(get ihala1_msgs_per_s)" "$(get nats_msgs_per_s)")"
put ihala_vs_lmdb_ceiling "$(ratio "$(get ihala1_msgs_per_s)" "$(get lmdb_ceiling_msgs_per_s)")"
# Informative: the log appends ihala makes per second (several per referral) beside the same ceiling.
put ihala_log_appends_per_s "$(calc "$(get ihala1_msgs_per_s) * $(get log_entries_per_referral)")"
put ihala_appends_vs_lmdb_ceiling "$(ratio "$(get ihala_log_appends_per_s)" "$(get lmdb_ceiling_msgs_per_s)")"
put ihala_vs_zmq_ceiling "$(ratio "$(get ihala1_msgs_per_s)" "$(get zmq_ceiling_msgs_per_s)")"
put ihala_vs_tls_ceiling "$(ratio "$(get ihala1_msgs_per_s)" "$(get tls_ceiling_frames_per_s)")"
put p99_delivery_ms_at_1k "$(get lat1000_delivery_p99_ms)"
put p99_receipt_ms_at_1k "$(get lat1000_receipt_p99_ms)"

KEYS="ihala_msgs_per_s ihala_4_senders_msgs_per_s rabbitmq_msgs_per_s mosquitto_msgs_per_s
nats_msgs_per_s lmdb_ceiling_msgs_per_s zmq_ceiling_msgs_per_s ihala_vs_rabbitmq
ihala_vs_mosquitto ihala_vs_nats ihala_vs_lmdb_ceiling ihala_vs_zmq_ceiling p99_delivery_ms_at_1k
rss_mib_1m_backlog drain_msgs_per_s verify_entries_per_s broker_cpu_us_per_referral
broker_cpu_us_per_referral_by_thread ihala1_idle_pct ihala1_other_pct rabbitmq_idle_pct
rabbitmq_other_pct mosquitto_idle_pct mosquitto_other_pct nats_idle_pct nats_other_pct notes_first_per_s notes_last_per_s notes_last_vs_first attack_p99_ms attack_p99_ms_worst"
for k in $KEYS; do
	grep -q "^$k " "$RES" || put "$k" null
done

# JSON: every result, numbers or null, sorted by key.
{
	echo "{"
	echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
	echo "  \"commit\": \"$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)\","
	awk '{ v[$1] = $2 } END { for (k in v) print k, v[k] }' "$RES" | sort |
		awk '{ a[NR] = sprintf("  \"%s\": %s", $1, ($2 == "" ? "null" : $2)) }
		     END { for (i = 1; i <= NR; i++) print a[i] (i < NR ? "," : "") }'
	echo "}"
} >"$OUT/latest.json"

g() { get "$1"; }
# trials NAME: the trial figures of NAME, rounded, "/"-separated.
trials() {
	local t out=""
	for t in $(seq 1 "$TRIALS"); do
		out="$out${out:+ / }$(awk -v v="$(get "$1_trial${t}_msgs_per_s")" 'BEGIN { if (v == "null") print v; else printf "%.0f", v }')"
	done
	echo "$out"
}
# io NAME: "IDLE/OTHER" shares (%) of the machine during figure NAME; trials_io NAME: per trial.
io() { echo "$(g "$1_idle_pct")/$(g "$1_other_pct")"; }
trials_io() {
	local t out=""
	for t in $(seq 1 "$TRIALS"); do
		out="$out${out:+ }$(io "$1_trial$t")"
	done
	echo "$out"
}
target() { # target VALUE OP LIMIT
	case "$1" in null) echo "n/a" ;; *) awk -v v="$1" -v l="$3" -v op="$2" \
		'BEGIN { ok = op == ">=" ? v >= l : v <= l; print ok ? "met" : "MISSED" }' ;;
	esac
}
row() { printf '%-46s %12s %12s\n' "$@"; }
{
	echo "ihala benchmark  $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(nproc) cores  ~$(g submit_bytes)-byte referrals ($(g envelope_bytes)-byte clear part + sealed part; the peers carry as many bytes)$([ $SMOKE = 1 ] && echo '  (smoke: tiny counts; peers not run)')"
	echo "other work on the machine during the run: $(g other_work_cpu_pct)% of its CPU (busy $(g machine_busy_pct_before)% before, $(g machine_busy_pct_after)% after); it lowers every figure"
	echo "idle/other %: the machine's idle share during that figure's run, and the share other work"
	echo "   (not this benchmark's processes) took; a CPU-bound run leaves ~0 idle: other work marks a disturbed figure"
	echo
	row "throughput (durable, end to end)" "msgs/s" "idle/other %"
	row "ihala, 1 sender -> 3 recipients" "$(g ihala1_msgs_per_s)" "$(io ihala1)"
	row "   trials (median above)" "$(trials ihala1)" ""
	row "   their idle/other %" "$(trials_io ihala1)" ""
	row "   receipted/s, delivered/s" "$(g ihala1_receipted_per_s) / $(g ihala1_delivered_per_s)" ""
	row "ihala, 4 senders -> 3 recipients" "$(g ihala4_msgs_per_s)" "$(io ihala4)"
	row "   receipted/s, delivered/s" "$(g ihala4_receipted_per_s) / $(g ihala4_delivered_per_s)" ""
	row "RabbitMQ (durable, persistent, confirms)" "$(g rabbitmq_msgs_per_s)" "$(io rabbitmq)"
	row "   trials (median above)" "$(trials rabbitmq)" ""
	row "   their idle/other %" "$(trials_io rabbitmq)" ""
	row "Mosquitto (QoS 1, persistence on)" "$(g mosquitto_msgs_per_s)" "$(io mosquitto)"
	row "   trials (median above)" "$(trials mosquitto)" ""
	row "   their idle/other %" "$(trials_io mosquitto)" ""
	row "NATS JetStream (file, 1 sender -> 3 acking)" "$(g nats_msgs_per_s)" "$(io nats)"
	row "   trials (median above)" "$(trials nats)" ""
	row "   their idle/other %" "$(trials_io nats)" ""
	row "ceiling: LMDB synced append, batch $(g lmdb_ceiling_batch)" "$(g lmdb_ceiling_msgs_per_s)" "$(io ceilings)"
	row "ceiling: ZeroMQ DEALER->ROUTER stream" "$(g zmq_ceiling_msgs_per_s)" "$(io ceilings)"
	row "ceiling: ZeroMQ, window $(g max_inflight) with acks" "$(g zmq_windowed_msgs_per_s)" "$(io ceilings)"
	row "ceiling: TLS channel alone (frames/s)" "$(g tls_ceiling_frames_per_s)" "$(io ceilings)"
	if [ "$(g nats_tls_sessions)" != null ]; then
		echo "$NATS_NOSYNC." | fmt -w 100
		echo "NATS sessions on TLS 1.3 (server log): $(g nats_tls13_sessions) of $(g nats_tls_sessions)"
	fi
	echo
	echo "broker CPU per referral (1 sender, median trial, all threads, /proc utime+stime): $(g broker_cpu_us_per_referral) us"
	echo "   by thread (us): $(g broker_cpu_us_per_referral_by_thread | sed 's/[{}"]//g; s/,/, /g; s/:/ /g')"
	echo "   (the broker does not name its threads: main = its first thread, writer = the other one it starts)"
	echo "one referral, $(g notes_count) notes: $(g notes_first_per_s) entries/s for the first $(g notes_chunk)," \
		"$(g notes_last_per_s) for the last $(g notes_chunk) (last/first $(g notes_last_vs_first); idle/other $(io notes)%)"
	echo "   every $(g notes_chunk): $(g notes_chunks_per_s | tr -d '[]' | sed 's/,/ /g')" \
		"(median trial of $TRIALS by last/first; every trial's:" \
		"$(for t in $(seq 1 "$TRIALS"); do printf '%s ' "$(g "notes_trial${t}_last_vs_first")"; done | sed 's/ $//'))"
	echo
	printf '%-22s %12s %12s %12s %12s %12s\n' "latency (ms)" "achieved/s" "p50" "p99" "max" "idle/other %"
	for r in $RATES; do
		printf '%-22s %12s %12s %12s %12s %12s\n' "$r/s submit->receipt" "$(g lat${r}_achieved_per_s)" \
			"$(g lat${r}_receipt_p50_ms)" "$(g lat${r}_receipt_p99_ms)" "$(g lat${r}_receipt_max_ms)" "$(io lat$r)"
		printf '%-22s %12s %12s %12s %12s\n' "$r/s submit->delivery" "" \
			"$(g lat${r}_delivery_p50_ms)" "$(g lat${r}_delivery_p99_ms)" "$(g lat${r}_delivery_max_ms)"
	done
	echo
	echo "backlog: $(g backlog_count) queued in $(g backlog_submit_s) s ($(g backlog_submit_per_s)/s);" \
		"RSS $(g rss_mib_1m_backlog) MiB (anon $(g rss_anon_mib_1m_backlog), file $(g rss_file_mib_1m_backlog)," \
		"VmHWM $(g rss_hwm_mib_1m_backlog)); store $(g store_mib_1m_backlog) MiB; drain $(g drain_msgs_per_s)/s"
	echo "   idle/other while queueing $(io backlog)%, while draining $(io drain)%"
	echo "   RSS peaks while submitting and draining: VmRSS $(g rss_peak_mib_backlog), anon $(g rss_anon_peak_mib_backlog)," \
		"file $(g rss_file_peak_mib_backlog) MiB (file: pages of the LMDB map, reclaimable)"
	echo "audit verify: $(g verify_entries) entries at $(g verify_entries_per_s)/s" \
		"($([ "$(g verify_tool)" = 1 ] && echo "ihala audit verify --db" || echo "leaf hashing + merkle_range, bench/audit_rate"))"
	if [ "$(g attack_p99_ms)" != null ]; then
		printf '%-34s %10s %10s %10s %12s %8s  %s\n' "under attack: dma->molsa $(g attack_rate_per_s)/s" "p50 ms" \
			"p99 ms" "max ms" "receipted" "rounds" "idle/other $(io attack)%"
		for c in none query_flood dup_rid preauth refusals sessions; do
			printf '%-34s %10s %10s %10s %12s %8s\n' "   ${c//_/-}" "$(g attack_p50_ms_$c)" \
				"$(g attack_p99_ms_$c)" "$(g attack_max_ms_$c)" \
				"$(g attack_receipted_$c)/$(g attack_sent_$c)" "$(g attack_rounds_$c)"
		done
	fi
	echo "group commit (1 sender): $(g batch_requests) requests, $(g batch_submissions) submissions per batch"
	echo "log (1 sender): $(g log_entries_per_referral) entries per referral, $(g ihala_log_appends_per_s) appends/s," \
		"$(g ihala_appends_vs_lmdb_ceiling) of the LMDB ceiling (each append also hashes and stores tree nodes)"
	echo
	printf '%-34s %10s %10s  %s\n' "target" "value" "goal" ""
	printf '%-34s %10s %10s  %s\n' "ihala / NATS JetStream" "$(g ihala_vs_nats)" ">= 1.2" "$(target "$(g ihala_vs_nats)" ">=" 1.2)"
	printf '%-34s %10s %10s  %s\n' "ihala / RabbitMQ" "$(g ihala_vs_rabbitmq)" ">= 5" "$(target "$(g ihala_vs_rabbitmq)" ">=" 5)"
	printf '%-34s %10s %10s  %s\n' "ihala / Mosquitto" "$(g ihala_vs_mosquitto)" ">= 3" "$(target "$(g ihala_vs_mosquitto)" ">=" 3)"
	printf '%-34s %10s %10s  %s\n' "broker CPU per referral, us" "$(g broker_cpu_us_per_referral)" "<= 18" "$(target "$(g broker_cpu_us_per_referral)" "<=" 18)"
	printf '%-34s %10s %10s  %s\n' "notes: last / first $(g notes_chunk) rate" "$(g notes_last_vs_first)" ">= 0.8" "$(target "$(g notes_last_vs_first)" ">=" 0.8)"
	printf '%-34s %10s %10s  %s\n' "ihala / LMDB ceiling" "$(g ihala_vs_lmdb_ceiling)" "" ""
	printf '%-34s %10s %10s  %s\n' "ihala / ZeroMQ ceiling" "$(g ihala_vs_zmq_ceiling)" "" ""
	printf '%-34s %10s %10s  %s\n' "p99 submit->delivery at 1k/s, ms" "$(g p99_delivery_ms_at_1k)" "<= 2" "$(target "$(g p99_delivery_ms_at_1k)" "<=" 2)"
	printf '%-34s %10s %10s  %s\n' "p99 submit->receipt, worst attack" "$(g attack_p99_ms_worst)" "<= 50" "$(target "$(g attack_p99_ms_worst)" "<=" 50)"
	printf '%-34s %10s %10s  %s\n' "RSS with the backlog queued, MiB" "$(g rss_mib_1m_backlog)" "<= 100" "$(target "$(g rss_mib_1m_backlog)" "<=" 100)"
	printf '%-34s %10s %10s  %s\n' "drain, msgs/s" "$(g drain_msgs_per_s)" ">= 50000" "$(target "$(g drain_msgs_per_s)" ">=" 50000)"
	printf '%-34s %10s %10s  %s\n' "audit verify, entries/s" "$(g verify_entries_per_s)" ">= 500000" "$(target "$(g verify_entries_per_s)" ">=" 500000)"
	echo
	echo "total $(g bench_seconds) s; JSON: $OUT/latest.json"
} | tee "$OUT/latest.txt"

# ---- chart ----

if [ $SMOKE = 0 ] && command -v gnuplot >/dev/null; then
	{
		echo "\"ihala 1 sender\" $(g ihala1_msgs_per_s)"
		echo "\"ihala 4 senders\" $(g ihala4_msgs_per_s)"
		echo "RabbitMQ $(g rabbitmq_msgs_per_s)"
		echo "Mosquitto $(g mosquitto_msgs_per_s)"
		echo "\"NATS JetStream\" $(g nats_msgs_per_s)"
		echo "\"LMDB ceiling\" $(g lmdb_ceiling_msgs_per_s)"
		echo "\"TLS ceiling\" $(g tls_ceiling_frames_per_s)"
		echo "\"ZeroMQ ceiling\" $(g zmq_ceiling_msgs_per_s)"
	} | sed 's/ null$/ 0/' >"$T/thr.dat"
	for r in $RATES; do
		echo "$r $(g lat${r}_receipt_p50_ms) $(g lat${r}_receipt_p99_ms) $(g lat${r}_delivery_p50_ms) $(g lat${r}_delivery_p99_ms)"
	done | sed 's/null/NaN/g' >"$T/lat.dat"
	gnuplot <<GP 2>"$T/gnuplot.err" || say "gnuplot: $(cat "$T/gnuplot.err")"
set terminal pngcairo size 1400,560 font ",10"
set output "$OUT/latest.png"
set multiplot layout 1,2 title "ihala benchmark, $(date -u +%Y-%m-%d), $(nproc) cores, $(g submit_bytes)-byte referrals, durable, mutual TLS 1.3" noenhanced
set style fill solid 0.8
set boxwidth 0.6
set logscale y
set yrange [1000:*]
set ylabel "messages/s (log scale)"
set xtics rotate by -25
set grid ytics
set title "throughput"
plot "$T/thr.dat" using 0:2:xtic(1) with boxes lc rgb "#3060a0" notitle, \
     "" using 0:2:(sprintf("%.0f", \$2)) with labels offset 0,0.8 notitle
unset logscale y
set yrange [0:*]
set xtics norotate
set logscale x
set xrange [500:40000]
set xlabel "offered load (msg/s, log scale)"
set ylabel "latency (ms)"
set title "latency, 1 sender -> 3 recipients"
set key top left
plot "$T/lat.dat" using 1:2 with linespoints lw 2 title "submit->receipt p50", \
     "" using 1:3 with linespoints lw 2 title "submit->receipt p99", \
     "" using 1:4 with linespoints lw 2 title "submit->delivery p50", \
     "" using 1:5 with linespoints lw 2 title "submit->delivery p99"
unset multiplot
GP
fi
