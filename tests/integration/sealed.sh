#!/usr/bin/env bash
# sealed.sh - sealed referrals end to end (issue 16): a survivor's name never in clear at the broker
# or in a node's store, opened by the recipient, `openssl cms -decrypt` opens an exported sealed
# part for its recipient only, and erasure by the referrer (not by the recipient) removes the
# sealed parts everywhere while `ihala audit verify` still passes and counts it.
#
# Needs the broker (bk: Submit.sealed stored beside the log, Erase) and libihala (nd: the node
# seals on submit, opens on delivery, keeps the sealed form) of issue 16.
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

IHALA=$IHALA_BUILD/ihala
BROKER=$IHALA_BUILD/ihala-broker
P=$IHALA_PKI

plan 38

# The distinctive name, in Arabic script and in Latin: found nowhere the broker writes.
NAME_AR='زينب-QXZ-7731'
NAME_LA='Zaynab Qxz7731'

# hits PATH...: how many times either name occurs in the files under PATH (bytes, any file,
# binary ones too: data.mdb, lock files, logs).
hits() {
	python3 - "$NAME_AR" "$NAME_LA" "$@" <<'PY'
import os, sys
names = [sys.argv[1].encode(), sys.argv[2].encode()]
n = 0
for root in sys.argv[3:]:
    paths = [root] if os.path.isfile(root) else [
        os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs]
    for p in paths:
        try:
            data = open(p, "rb").read()
        except OSError:
            continue
        for name in names:
            c = data.count(name)
            if c:
                print("# %d x %r in %s" % (c, name.decode(), p), file=sys.stderr)
            n += c
print(n)
PY
}
# has_bytes FILE PATH...: how many times FILE's last 64 bytes occur in the files under PATH.
has_bytes() {
	python3 - "$@" <<'PY'
import os, sys
needle = open(sys.argv[1], "rb").read()[-64:]
n = 0
for root in sys.argv[2:]:
    for d, _, fs in os.walk(root):
        for f in fs:
            try:
                n += open(os.path.join(d, f), "rb").read().count(needle)
            except OSError:
                pass
print(n)
PY
}
# http PATH OUT: one GET to the metrics endpoint (bash's /dev/tcp, no curl needed).
http() {
	exec 3<>"/dev/tcp/127.0.0.1/$mport" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$1" >&3
	tr -d '\r' <&3 >"$2"
	exec 3<&-
}
# copy NAME: a consistent copy of the live store (ihala-broker --backup).
copy() { "$BROKER" --backup "$T/$1" -c "$T/b/broker.conf" >/dev/null 2>"$T/$1.err"; }
# seq_of_referral FILE RID: the seq of RID's referral entry in an export.
seq_of_referral() {
	jq -r --arg r "$2" 'select(.entry.envelope.referral.referralId == $r) | .seq' "$1" | head -n1
}

port=$(free_port)
mport=$(free_port)
write_broker_conf "$T/b" "$port"
sed -i "/^\[broker\]/a metrics_listen = tcp://127.0.0.1:$mport" "$T/b/broker.conf"
# every agency's encryption certificate in the directory (issue 16 item 2)
for a in dma moh molsa hi auditor; do
	if ! grep -q "^encryption_cert = .*$a-enc.crt" "$T/b/broker.conf"; then
		sed -i "/^\[agency\.$a\]\$/a encryption_cert = $P/$a-enc.crt" "$T/b/broker.conf"
	fi
done
DMA=$(write_client_conf "$T" dma "$port")
MOH=$(write_client_conf "$T" moh "$port")
HI=$(write_client_conf "$T" hi "$port")
AUD=$(write_client_conf "$T" auditor "$port")
echo "checkpoint_key = $P/checkpoint.pub" >>"$AUD"
unset IHALA_CONFIG

start_broker "$T/b" || { not_ok "broker starts"; exit 1; }
ok "broker starts"

R=sealed-$$
cat >"$T/ref.json" <<JSON
{"referralId":"$R","priority":"urgent",
 "services":["prosthetics-orthotics","physical-rehabilitation"],
 "reason":"below-knee amputation; $NAME_LA needs a prosthesis",
 "survivor":{"caseId":"IQ-NIN-QXZ-7731","name":"$NAME_AR","sex":"female","birthYear":1994,
             "governorate":"Ninewa"},
 "referringOfficer":{"name":"Officer of $NAME_LA","phone":"+964 770 000 7731"},
 "notes":"$NAME_LA lives with her mother",
 "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
            "agencies":["moh","hi"],
            "dataCovered":["identity","contact","demographics","location","injury","needs"]}}
JSON
n=$(hits "$T/ref.json" 2>/dev/null)
check "the search can fail: it finds the names in the submitted file ($n matches)" [ "$n" -ge 3 ]

run refer "$DMA" refer --to moh --file "$T/ref.json"
check "dma refers a survivor with a distinctive name to moh: exit 0" expect 0
run inbox-moh "$MOH" inbox
check "moh's node opens the sealed part: the name in Arabic script on its inbox" \
	eval 'expect 0 && grep -F "\"referralId\":\"$R\"" "$OUT" | grep -qF "$NAME_AR"'
check "... and the Latin one in the free text" grep -qF "$NAME_LA" "$OUT"
run status-moh "$MOH" status "$R"
check "moh: status of the referral works (exit 0)" expect 0
run accept "$MOH" accept "$R" --note "appointment for $NAME_LA on Sunday"
check "moh accepts with a note naming her: exit 0" expect 0
run inbox-dma "$DMA" inbox
check "dma's node opens moh's note (sealed): it names her" \
	eval 'expect 0 && grep -qF "appointment for $NAME_LA" "$OUT"'

# --- nothing in clear where the broker writes, nor in the nodes' stores --------------------------
run replay "$AUD" --json audit replay
check "audit replay by the auditor: exit 0" expect 0
check "audit replay shows the referral's sealed sha256 (hex), never the name" \
	eval 'grep -F "\"referralId\":\"$R\"" "$OUT" | grep -qE "\"sealedSha256\":\"[0-9a-f]{64}\"" && [ "$(hits "$OUT" 2>/dev/null)" -eq 0 ]'
# on a terminal (script(1) gives it one): rows for people
OUT=$T/replay.tty
script -qec "$(printf '%q ' "$IHALA" --config "$AUD" audit replay)" /dev/null </dev/null 2>/dev/null |
	tr -d '\r' >"$OUT"
check "audit replay for people: 'sealed sha256:HEX' on the referral's row, no name" \
	eval 'grep "$R" "$OUT" | grep -qE "referral \(urgent\); sealed sha256:[0-9a-f]{64}" && [ "$(hits "$OUT" 2>/dev/null)" -eq 0 ] || { show "$OUT"; false; }'
check "audit replay for people: a delivery entry says which seq was delivered" \
	eval 'grep -qE "^[0-9]+ .* delivery of seq [0-9]+" "$OUT" || { show "$OUT"; false; }'
http /metrics "$T/metrics.txt"
check "the metrics page answers" grep -q '^ihala_' "$T/metrics.txt"
copy backup1
check "ihala-broker --backup of the live store" [ -f "$T/backup1/data.mdb" ]
n=$(hits "$T/b/data" "$T/backup1" "$T/b/broker.log" "$T/metrics.txt")
check "the names: 0 matches in the broker's store (data.mdb), its backup, its log, its metrics" [ "$n" -eq 0 ]
n=$(hits "$T/dma/data" "$T/moh/data" "$T/hi/data" "$T/auditor/data")
check "the names: 0 matches in every node's data dir (they keep the sealed form)" [ "$n" -eq 0 ]
n=$(hits "$T/replay.out")
check "the search over the auditor's replay finds 0" [ "$n" -eq 0 ]

# --- openssl cms -decrypt opens an exported part for its recipients only ----------------------
mkdir -p "$T/parts"
run export "$AUD" audit export --format jsonl --db "$T/backup1" --sealed-dir "$T/parts"
check "audit export --db --sealed-dir: exit 0" expect 0
S=$(seq_of_referral "$OUT" "$R")
check "the export carries the referral's sealed part (base64) and wrote $S.der" \
	eval '[ -n "$S" ] && jq -e --argjson s "$S" "select(.seq == \$s) | .sealed | length > 0" "$OUT" >/dev/null && [ -s "$T/parts/$S.der" ]'
check "the base64 in the JSON is the DER file" \
	eval 'jq -r --argjson s "$S" "select(.seq == \$s) | .sealed" "$OUT" | base64 -d | cmp -s - "$T/parts/$S.der"'
check "its SHA-256 is the entry's sealedSha256" \
	eval '[ "$(sha256sum <"$T/parts/$S.der" | cut -d" " -f1)" = "$(jq -r --argjson s "$S" "select(.seq == \$s) | .sealedSha256" "$OUT")" ]'
decrypt() {
	[ -n "$S" ] && [ -s "$T/parts/$S.der" ] || return 99
	openssl cms -decrypt -inform DER -in "$T/parts/$S.der" -recip "$P/$1-enc.crt" \
		-inkey "$P/$1-enc.key" -out "$T/open-$1.bin" 2>"$T/open-$1.err"
}
decrypt moh
RC=$?
check "openssl cms -decrypt with moh-enc.key (the recipient) opens it: the name is inside" \
	eval '[ $RC -eq 0 ] && grep -qF "$NAME_AR" "$T/open-moh.bin" || { show "$T/open-moh.err"; false; }\'
decrypt dma
RC=$?
check "... with dma-enc.key (the referrer, a recipient of its own parts) too" [ $RC -eq 0 ]
decrypt hi
RC=$?
check "... with hi-enc.key (covered by the consent, not a recipient): fails, nothing written" \
	eval '[ $RC -ne 0 ] && [ $RC -ne 99 ] && ! grep -qF "$NAME_AR" "$T/open-hi.bin" 2>/dev/null'
decrypt molsa
RC=$?
check "... with molsa-enc.key (not a party): fails" eval '[ $RC -ne 0 ] && [ $RC -ne 99 ]'

# a byte of the sealed part changed in a store copy: verify names the entry
cp -r "$T/backup1" "$T/tampered"
python3 - "$T/parts/$S.der" "$T/tampered/data.mdb" <<'PY'
import sys
part = open(sys.argv[1], "rb").read()
db = bytearray(open(sys.argv[2], "rb").read())
i = db.find(part[-64:])
assert i > 0
db[i + 10] ^= 0x01
open(sys.argv[2], "wb").write(db)
PY
run verify-tampered "$AUD" audit verify --db "$T/tampered"
check "audit verify --db: a sealed part changed in the copy: exit 5, names its seq" \
	exit_and_err 5 "audit verify: seq $S: sealed part does not match its sealed_sha256"
run verify1 "$AUD" audit verify --db "$T/backup1"
check "audit verify --db before the erasure: 0 erasure entries, 0 sealed parts erased" \
	eval 'expect 0 && grep -qE "audit verify: [0-9]+ entries, 0 erasure entries, 0 sealed parts erased \(of [1-9][0-9]* entries with a sealed part\)" "$ERR" || { show "$ERR"; false; }\'

# --- erasure -----------------------------------------------------------------------------------
run erase-moh "$MOH" erase "$R" --reason consent-withdrawn
check "erase by moh (the recipient, not the referrer): refused, exit 1" \
	eval 'expect 1 && grep -q "^ihala: refused: " "$ERR"'
run erase-bad "$DMA" erase "$R" --reason no-capacity
check "erase with a reason that is not an erasure's: exit 2, names the three" \
	exit_and_err 2 "invalid reason 'no-capacity' (one of: consent-withdrawn entered-in-error other)"
run erase "$DMA" erase "$R" --reason consent_withdrawn
check "erase by dma (the referrer): exit 0 and a receipt" \
	eval 'expect 0 && grep -q "\"status\":\"accepted\"" "$OUT"'
run inbox-moh2 "$MOH" inbox
check "moh's node takes the erasure entry" \
	eval 'expect 0 && grep -F "\"referralId\":\"$R\"" "$OUT" | grep -q "\"kind\":\"erasure\""'
run inbox-dma2 "$DMA" inbox
check "dma's node takes its erasure entry" \
	eval 'expect 0 && grep -F "\"referralId\":\"$R\"" "$OUT" | grep -q "\"kind\":\"erasure\""'
copy backup2
run export2 "$AUD" audit export --format jsonl --db "$T/backup2"
check "after the erasure the broker's store serves no sealed part of it: the export marks it erased" \
	eval 'expect 0 && jq -e --argjson s "$S" "select(.seq == \$s) | .erased == true and (.sealed == null)" "$OUT" >/dev/null || { show "$OUT"; false; }\'
n=$(has_bytes "$T/parts/$S.der" "$T/backup2" "$T/dma/data" "$T/moh/data")
check "the sealed bytes are gone from the broker's backup and both nodes' stores" [ "$n" -eq 0 ]
run verify "$AUD" audit verify --db "$T/backup2"
check "audit verify over the erased log passes and counts it" \
	eval 'expect 0 && grep -qE "audit verify: [0-9]+ entries, [1-9][0-9]* erasure entries, [1-9][0-9]* sealed parts erased" "$ERR" || { show "$ERR"; false; }\'
run verify-online "$AUD" audit verify
check "audit verify through the broker passes too and counts the erasure entries" \
	eval 'expect 0 && jq -e ".erasures >= 1" "$OUT" >/dev/null'
run replay2 "$AUD" --json audit replay
check "audit replay (through the broker) marks the referral's entry erased, its hash still shown" \
	eval 'expect 0 && jq -e --argjson s "$S" "select(.seq == \$s) | .erased == true and (.sealedSha256 | length == 64)" "$OUT" >/dev/null || { show "$OUT"; false; }'
check "audit replay: the erasure entries name who (dma), why and which seqs" \
	eval 'expect 0 && jq -e --argjson s "$S" "select(.entry.kind == \"erasure\" and .entry.sender == \"dma\" and .entry.event.reasonCode == \"consent-withdrawn\" and (.entry.event.erasedSeqs | index(\$s) != null))" "$OUT" >/dev/null || { show "$OUT"; false; }\'
