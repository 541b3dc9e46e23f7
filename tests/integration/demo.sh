#!/usr/bin/env bash
# demo.sh - `make demo` keeps working: config/demo.sh runs its lifecycle, tells it, cleans up,
# and fails loudly (stopping everything) when a step fails.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

DEMO=$IHALA_ROOT/config/demo.sh
plan 19

start=$(date +%s)
"$DEMO" "$IHALA_BUILD" >"$T/out" 2>"$T/err" </dev/null
RC=$?
secs=$(($(date +%s) - start))
has() { grep -qF -- "$1" "$T/out" || { diag "account lacks: $1"; show "$T/out" "$T/err"; return 1; }; }

check "demo exits 0 (in ${secs}s)" eval '[ $RC -eq 0 ] || { show "$T/err"; false; }'
check "demo takes under 30 s" test "$secs" -lt 30
check "account: DMA refers R-001 for the Arabic-named survivor, logged at seq 1" \
	has " 1. DMA → MoH     referral R-001 for نور الهدى خلف حسن (prosthesis, rehabilitation), logged at seq 1"
check "account: MoH takes it and the broker marks it received" \
	has "MoH           took R-001 from its inbox; the broker marked it received at seq"
check "account: onward referral MoH → MoLSA for the disability allowance" \
	has "MoH → MoLSA   onward referral R-001-A for نور الهدى خلف حسن (disability allowance), parent R-001"
check "account: the onward referral's consent is [molsa], within R-001's, and it carries only what the allowance needs" \
	has "consent [molsa], within R-001's; only what the allowance needs (identity, demographics, location, functioning, needs)"
check "account: R-001 completed with its outcome" has "completed R-001 with its outcome"
check "account: DMA's inbox lines show R-001 received, accepted, in-progress, completed" \
	eval 'grep -E "^ +seq [0-9]+ +R-001 +(received|accepted|in-progress|completed) " "$T/out" | awk "{print \$4}" | tr "\n" " " | grep -qx "received accepted in-progress completed "'
check "account: R-002 for the Kurdish-named survivor declined with its reason" \
	eval 'has "referral R-002 for کاوە عومەر ئەحمەد" && has "declined R-002: no-capacity" && grep -qE "R-002 +declined +by moh \(no-capacity\)" "$T/out"'
check "account: HI offline when referred to, catching up when back" \
	eval 'has "while HI'"'"'s node is offline" && has "HI (back)     its node starts and catches up: its inbox shows R-003 for ژیان ئەحمەد کەریم"'
check "account: the auditor replayed the log, every seq in order" \
	grep -qE "^[0-9 ]+\. Auditor +replayed the log: [0-9]+ entries, seq 1\.\.[0-9]+ in order" "$T/out"
check "account: the auditor verified the tree and the signed checkpoint" \
	grep -qE "^[0-9 ]+\. Auditor +ihala audit verify: Merkle tree recomputed, the broker's signed checkpoint matches it \(size [0-9]+; (it covers all [0-9]+ entries|the log has [0-9]+ entries: the broker signs a checkpoint each second there are new entries, so the latest one trails the log; the next covers the last [0-9]+)\)" "$T/out"
check "account: 0 bytes of the survivors' names in clear in the broker's store, backup and log" \
	grep -qE "^[0-9 ]+\. Broker files +bytes of the survivors' names found in clear in the broker's store, its backup and its log: 0$" "$T/out"
check "account: DMA erases R-002 and both nodes take the erasure" \
	eval 'has "erased R-002 (the survivor withdrew consent)" && has "their nodes took the erasure of R-002"'
check "account: the log verifies after the erasure, which it counts" \
	grep -qE "audit verify after the erasure: the log still verifies \([0-9]+ entries, [1-9][0-9]* erasure entries, [1-9][0-9]* sealed parts erased\)" "$T/out"
check "account: ends with done" eval 'tail -n1 "$T/out" | grep -q "^done: "'
dir=$(head -n1 "$T/out" | grep -oE '/tmp/ihala-demo\.[A-Za-z0-9]+')
check "the demo's temp dir is gone and none of its processes is left" \
	eval '[ -n "$dir" ] && [ ! -e "$dir" ] && ! pgrep -f "$dir" >/dev/null'

# A step that fails: a build dir whose ihala refuses every decline.
mkdir -p "$T/bad"
ln -s "$IHALA_BUILD/ihala-broker" "$T/bad/ihala-broker"
cat >"$T/bad/ihala" <<SH
#!/bin/sh
for a in "\$@"; do [ "\$a" = decline ] && { echo "ihala: refused: INTERNAL: injected" >&2; exit 1; }; done
exec "$IHALA_BUILD/ihala" "\$@"
SH
chmod +x "$T/bad/ihala"
"$DEMO" "$T/bad" >"$T/bad.out" 2>"$T/bad.err" </dev/null
RC=$?
check "a failing step: non-zero exit, names the step" \
	eval '[ $RC -ne 0 ] && grep -q "demo: FAILED: moh: ihala decline R-002" "$T/bad.err" && ! grep -q "^done" "$T/bad.out" || { show "$T/bad.err"; false; }'
bdir=$(head -n1 "$T/bad.out" | grep -oE '/tmp/ihala-demo\.[A-Za-z0-9]+')
check "a failing step: its broker is stopped, its files kept for inspection" \
	eval '[ -n "$bdir" ] && ! pgrep -f "$bdir" >/dev/null && [ -d "$bdir" ] && grep -q "kept in $bdir" "$T/bad.err"'
[ -n "$bdir" ] && rm -rf "$bdir"
