#!/usr/bin/env bash
# privsep.sh - the checkpoint key lives in the signer process only: the broker process that
# parses network input never has the Ed25519 seed in its memory; the signer does (which shows
# the scan can see it); checkpoints still verify; the signer's death stops the broker.
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

LG=$IHALA_BUILD/tests/tools/loadgen
MEMSCAN=$IHALA_BUILD/tests/tools/memscan
IHALA=$IHALA_BUILD/ihala
PUB=$IHALA_PKI/checkpoint.pub

plan 15

if [ "$(id -u)" != 0 ]; then
	for i in $(seq 1 15); do ok "privsep $i # SKIP not root (reads /proc/PID/mem)"; done
	exit 0
fi

# The 32-byte Ed25519 seed: the last 32 bytes of the key's PKCS#8 DER.
seed=$(openssl pkey -in "$IHALA_PKI/checkpoint.key" -outform DER | tail -c 32 | od -An -v -tx1 | tr -d ' \n')
check "the checkpoint key's seed is 32 bytes" [ "${#seed}" -eq 64 ]

# signer_of PID: the broker's one child process.
signer_of() { cat /proc/"$1"/task/*/children 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+$' | head -n 1; }

port=$(free_port)
write_broker_conf "$T/b" "$port"
# As documented: started as root, switching to an unprivileged user.
sed -i "/^\[broker\]/a user = nobody" "$T/b/broker.conf"
chown nobody "$T/b/data"
dma=$(write_client_conf "$T" dma "$port")
start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts"
bp=$BROKER_PID
sp=$(signer_of "$bp")
check "the broker has a signer process, a child of its own" [ -n "$sp" ]
check "... logged with its pid" grep -q "checkpoint signer running as pid $sp" "$T/b/broker.log"

# Network input parsed, checkpoints signed (every 10 entries), before the memory is read.
$LG submit "$dma" moh 30 PS "$T/ps.receipts" >/dev/null 2>"$T/ps.err"
check "30 submissions receipted" [ "$(wc -l <"$T/ps.receipts")" -eq 30 ]
wait_for 5 grep -q 'checkpoint signed at tree size' "$T/b/broker.log"

"$MEMSCAN" "$sp" "$seed" >"$T/scan-signer.out" 2>&1
rc=$?
check "the seed IS in the signer's memory (the scan can see it): $(cat "$T/scan-signer.out")" [ $rc -eq 0 ]
"$MEMSCAN" "$bp" "$seed" >"$T/scan-broker.out" 2>&1
rc=$?
check "the seed is NOT in the broker's memory: $(cat "$T/scan-broker.out")" [ $rc -eq 1 ]
nuid=$(id -u nobody)
check "the signer runs as nobody too (real, effective, saved uid)" \
	grep -qP "^Uid:\t$nuid\t$nuid\t$nuid\t$nuid\$" /proc/"$sp"/status
# A dumpable process's /proc files belong to its user; PR_SET_DUMPABLE 0 makes them root's.
check "the signer is not dumpable: its /proc/PID/mem is root's, not nobody's" \
	[ "$(stat -c %U /proc/"$sp"/mem)" = root ]

stop_broker
mkdir -p "$T/copy"
mdb_copy -c "$T/b/data" "$T/copy"
"$IHALA" audit verify --db "$T/copy" --key "$PUB" >"$T/verify.out" 2>"$T/verify.err"
rc=$?
check "the store's checkpoints, signed by the signer process, verify (ihala audit verify)" [ $rc -eq 0 ]
check "... the signer process is gone with the broker" bash -c "! kill -0 $sp 2>/dev/null"

# The signer's death ends the broker, with a clear error, exit 1.
start_broker "$T/b" || { not_ok "broker starts again"; exit 1; }
ok "broker starts again"
bp=$BROKER_PID
sp=$(signer_of "$bp")
rc=none
if [ -n "$sp" ] && kill -KILL "$sp"; then
	wait "$bp"
	rc=$?
else
	kill_broker
fi
check "the signer killed: the broker stops with exit 1" [ "$rc" = 1 ]
check "... saying why" grep -q "the checkpoint signer process (pid $sp) was killed by signal 9: stopping" "$T/b/broker.log"
check "... and naming the cause at its end" grep -q 'stopped: the checkpoint signer process is gone' "$T/b/broker.log"
