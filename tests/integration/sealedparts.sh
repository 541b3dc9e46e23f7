#!/usr/bin/env bash
# sealedparts.sh - the broker's side of sealed parts (issue 16) over TLS with a real broker:
# a Submit's sealed part is checked against the envelope's sealed_sha256, stored beside the
# log entry (and in a backup), delivered with it and replayed to auditors; the categories a
# sealed part declares must be within the consent. The broker never opens a sealed part: the
# parts here are opaque bytes (the nodes' sealing is tested elsewhere).
: "${IHALA_ROOT:?run through tests/run}"
# shellcheck source=tests/integration/lib.sh
. "$IHALA_ROOT/tests/integration/lib.sh"

PROBE=$IHALA_BUILD/tests/tools/probe

plan 19

port=$(free_port)
EP=tcp://127.0.0.1:$port
write_broker_conf "$T/b" "$port"
start_broker "$T/b" || { echo "Bail out! the broker does not start"; exit 1; }

probe_as() {
	local who=$1
	shift
	"$PROBE" --endpoint "$EP" --ca "$IHALA_PKI/ca.pem" --cert "$IHALA_PKI/$who.pem" \
		--key "$IHALA_PKI/$who.key" "$@"
}
# tag FILE: what the probe prints for a sealed part: the first 8 bytes of its SHA-256, in hex.
tag() { sha256sum "$1" | cut -c1-16; }
# referral FILE ID DATA-COVERED DECLARED: a referral's clear part (dma to moh).
referral() {
	cat >"$1" <<JSON
{"to":"moh","dataDeclared":$4,
 "referral":{"referralId":"$2","priority":"normal","services":["social-protection"],
  "consent":{"given":true,"givenBy":"survivor","date":"2024-04-02","recordedBy":"DMA-VA-0231",
             "agencies":["moh"],"dataCovered":$3}}}
JSON
}

# An opaque sealed part with a distinctive marker (a real one is ciphertext).
MARK="SEALED-PART-MARKER-$$"
{ printf '0\x82'; echo "$MARK"; head -c 2000 /dev/urandom; } >"$T/s1.der"
head -c 3000 /dev/urandom >"$T/s2.der"

referral "$T/r1.json" "R1-$$" '["needs","identity"]' '["identity"]'
out=$(probe_as dma --sealed "$T/s1.der" submit-json "$T/r1.json" 2>&1)
check "a referral with a sealed part whose hash the envelope carries: accepted" \
	eval '[ "$out" = "receipt ACCEPTED seq 1" ] || { diag "$out"; false; }'

out=$(probe_as dma --sealed "$T/s2.der" --hash "$(sha256sum "$T/s1.der" | cut -d' ' -f1)" \
	submit-json "$T/r1.json" 2>&1)
check "a sealed part whose SHA-256 is not the envelope's: SEALED_MISMATCH" \
	eval 'grep -qF "receipt REFUSED SEALED_MISMATCH: the sealed part'"'"'s SHA-256 is not the envelope'"'"'s sealed_sha256" <<<"$out" || { diag "$out"; false; }'
out=$(probe_as dma --sealed "$T/s2.der" --hash "" submit-json "$T/r1.json" 2>&1)
check "a sealed part and no sealed_sha256: SEALED_MISMATCH" \
	eval 'grep -qF "receipt REFUSED SEALED_MISMATCH: the submission carries a sealed part but the envelope'"'"'s sealed_sha256 is 0 bytes" <<<"$out" || { diag "$out"; false; }'

referral "$T/r2.json" "R2-$$" '["needs","identity"]' '["identity","injury"]'
out=$(probe_as dma --sealed "$T/s2.der" submit-json "$T/r2.json" 2>&1)
check "a sealed part declaring INJURY, which the consent does not cover: CONSENT_MISSING naming it" \
	eval '[ "$out" = "receipt REFUSED CONSENT_MISSING: the consent does not cover INJURY, which the sealed part declares" ] || { diag "$out"; false; }'
out=$(probe_as dma submit-json "$T/r2.json" 2>&1)
check "categories declared without a sealed part: SCHEMA" \
	eval 'grep -qF "receipt REFUSED SCHEMA: data_declared names categories but the message has no sealed part" <<<"$out" || { diag "$out"; false; }'
referral "$T/r3.json" "R3-$$" '["needs"]' '["unspecified"]'
out=$(probe_as dma --sealed "$T/s2.der" submit-json "$T/r3.json" 2>&1)
check "an unspecified category declared: SCHEMA" \
	eval 'grep -qF "receipt REFUSED SCHEMA: data_declared holds the unspecified category 0" <<<"$out" || { diag "$out"; false; }'

# Personal fields in a clear part: refused, naming the field; nothing of them logged.
NAME='نور الهدى خلف حسن'
printf '{"to":"moh","referral":{"referralId":"R4-%s","priority":"normal","services":["legal"],"survivor":{"caseId":"IQ-1","name":"%s"},"consent":{"given":true,"agencies":["moh"],"dataCovered":["needs"]}}}\n' $$ "$NAME" >"$T/r4.json"
out=$(probe_as dma submit-json "$T/r4.json" 2>&1)
check "a survivor in the clear part: SCHEMA, 'referral.survivor must be sealed'" \
	eval '[ "$out" = "receipt REFUSED SCHEMA: referral.survivor must be sealed (docs/SEALING.md)" ] || { diag "$out"; false; }'
printf '{"note":{"referralId":"R1-%s","text":"%s"}}\n' $$ "$NAME" >"$T/n0.json"
out=$(probe_as dma submit-json "$T/n0.json" 2>&1)
check "a note's text in the clear part: SCHEMA, 'note.text must be sealed'" \
	eval '[ "$out" = "receipt REFUSED SCHEMA: note.text must be sealed (docs/SEALING.md)" ] || { diag "$out"; false; }'

# A note with its own sealed part, and one without.
printf '{"note":{"referralId":"R1-%s"}}\n' $$ >"$T/n1.json"
out=$(probe_as dma --sealed "$T/s2.der" submit-json "$T/n1.json" 2>&1)
check "a note with a sealed part: accepted (seq 2)" \
	eval '[ "$out" = "receipt ACCEPTED seq 2" ] || { diag "$out"; false; }'
out=$(probe_as dma submit-json "$T/n1.json" 2>&1)
check "a note without one: accepted (seq 3)" \
	eval '[ "$out" = "receipt ACCEPTED seq 3" ] || { diag "$out"; false; }'

out=$(probe_as moh --ack inbox 3 2>&1)
check "moh gets the referral with its sealed part ($(tag "$T/s1.der")), the notes with theirs" \
	eval 'grep -qE "^deliver 1 submission sender .dma. recipient .moh. sealed $(tag "$T/s1.der") " <<<"$out" &&
	grep -qE "^deliver 2 submission .* sealed $(tag "$T/s2.der") " <<<"$out" &&
	grep -qE "^deliver 3 submission .* sealed none " <<<"$out" || { diag "$out"; false; }'

out=$(probe_as auditor replay 2>&1)
check "the auditor's replay carries each entry's sealed part (none for broker events)" \
	eval 'grep -qE "^record 1 submission .* sealed $(tag "$T/s1.der") " <<<"$out" &&
	grep -qE "^record 2 submission .* sealed $(tag "$T/s2.der") " <<<"$out" &&
	grep -qE "^record 3 submission .* sealed none " <<<"$out" &&
	grep -qE "^record 4 status sender .moh. .* sealed none" <<<"$out" || { diag "$out"; false; }'

# The log entry holds the hash, not the part: the marker is in the "sealed" database only.
check "mdb_dump: the marker is in the 'sealed' database" \
	eval 'mdb_dump -p -s sealed "$T/b/data" | grep -qF "$MARK"'
check "mdb_dump: and not in the log" \
	eval '! mdb_dump -p -s log "$T/b/data" | grep -qF "$MARK"'
"$IHALA_BUILD/ihala-broker" --backup "$T/copy" -c "$T/b/broker.conf" >/dev/null 2>&1
check "a backup holds the sealed parts" \
	eval 'mdb_dump -p -s sealed "$T/copy" | grep -qF "$MARK"'

# Restart: still delivered with its part (a new session of moh gets nothing new; hi nothing).
stop_broker
start_broker "$T/b" || { echo "Bail out! the broker does not restart"; exit 1; }
out=$(probe_as auditor replay 2>&1)
check "after a restart the replay still carries them" \
	eval 'grep -qE "^record 1 submission .* sealed $(tag "$T/s1.der") " <<<"$out" || { diag "$out"; false; }'
check "the broker's log never printed the marker" eval '! grep -qF "$MARK" "$T/b/broker.log"'
check "nothing in the broker's files or its log holds the name refused in clear" \
	eval '! grep -rqF "$NAME" "$T/b" "$T/copy"'
check "the broker is alive" kill -0 "$BROKER_PID"
