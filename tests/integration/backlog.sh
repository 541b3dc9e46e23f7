#!/usr/bin/env bash
# backlog.sh - a node whose outbox holds more than the broker's in_cap of input connects: every
# message is receipted, and no session is ended. libihala used to send the whole outbox at once
# on connect; the broker ended the session past in_cap ("input arrives faster than it is
# served"), and the node reconnected and did it again, for ever. Now the outbox goes a window
# at a time (max_inflight_bytes, which in_cap must hold); a client ignoring it is ended.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

LG=$IHALA_BUILD/tests/tools/loadgen
COUNT=400
BYTES=2000 # ~2.2 KB per envelope: ~0.9 MB of outbox, 4.5 times in_cap

plan 9

port=$(free_port)
write_broker_conf "$T" "$port" "
[limits]
max_frame = 64K
in_cap = 192K
max_inflight_bytes = 64K"
dma=$(write_client_conf "$T" dma "$port")
moh=$(write_client_conf "$T" moh "$port")

# The broker is down: the node's outbox grows.
timeout 120 "$LG" queue "$dma" moh "$COUNT" BL "$BYTES" >"$T/queue.out" 2>"$T/queue.err"
check "with the broker down, $COUNT messages wait in the node's outbox" \
	grep -q "^# counts: queued $COUNT, kept $COUNT, refused 0" "$T/queue.out"
bytes=$(du -sb "$T/dma" 2>/dev/null | cut -f1)
diag "node store: ${bytes:-?} bytes"

start_broker "$T" || { echo "Bail out! the broker does not start"; exit 1; }
timeout 120 "$LG" flush "$dma" 60000 >"$T/flush.out" 2>"$T/flush.err"
rc=$?
check "the node connects and its whole outbox is receipted (exit $rc)" \
	grep -q '^# outbox: 0 left' "$T/flush.out"
show "$T/flush.err"
check "no session was ended for its input" \
	bash -c "! grep -E 'bytes of input waiting|input arrives faster' '$T/broker.log'"
check "the node kept within the broker's max_inflight_bytes (no OVERLOADED refusal)" \
	bash -c "! grep -E 'without receipts|OVERLOADED' '$T/broker.log'"
n=$(grep -c "agency 'dma' (dma) authenticated" "$T/broker.log")
check "one session did it all ($n session(s) of dma)" test "$n" -eq 1
timeout 60 "$LG" drain "$moh" "$COUNT" 3000 "$T/drained" >/dev/null 2>&1
check "moh receives all $COUNT" test "$(wc -l <"$T/drained")" -eq "$COUNT"
check "the broker is alive" kill -0 "$BROKER_PID"

# The broker side alone: a client that ignores the window (bench/ihala_load pipelining 400
# submissions of ~2 KB at once, ~4.5 times in_cap) is ended, with a security line, and the
# broker goes on serving. The burst is written while the broker is stopped (SIGSTOP once the
# session is up), so that it all waits for the broker at once: a broker quick enough to take
# each submission as it arrives would otherwise never hold more than in_cap, and the case
# would be tested only on a slow machine.
"$IHALA_BUILD/bench/ihala_load" send -b "tcp://127.0.0.1:$port" -P "$IHALA_PKI" -a dma -t moh \
	-n 400 -s 2000 -W 400 -p PIPE -T 20 -R "$T/pipe.ready" -G "$T/pipe.go" \
	>"$T/pipe.out" 2>"$T/pipe.err" &
pipe_pid=$!
for _ in $(seq 1 200); do [ -e "$T/pipe.ready" ] && break; sleep 0.05; done
kill -STOP "$BROKER_PID"
touch "$T/pipe.go"
sleep 1 # the client writes its burst meanwhile (socket buffers and its own queue)
kill -CONT "$BROKER_PID"
wait "$pipe_pid"
diag "pipelined: $(tr '\n' ' ' <"$T/pipe.out")"
check "a client pipelining past in_cap, ignoring its window: its session is ended, said in the log" \
	grep -qE "security: session [0-9]+ \(dma\): more than [0-9]+ bytes of input waiting; closing" "$T/broker.log"
check "... and the broker serves the next one" \
	bash -c "timeout 30 '$LG' submit '$dma' moh 3 after '$T/after.receipts' >/dev/null 2>&1 && [ \$(wc -l <'$T/after.receipts') -eq 3 ]"
