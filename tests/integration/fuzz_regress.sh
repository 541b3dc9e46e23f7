#!/usr/bin/env bash
# fuzz_regress.sh - replays every committed fuzz seed and regression input through the fuzz
# targets built without libFuzzer (tests/fuzz/replay.c), one TAP case per input.
#
# The inputs are tests/fuzz/corpus/NAME/* (seeds) and tests/fuzz/regress/NAME/* (inputs that
# once crashed a target: each stays here as a test). A target checks its own invariants and
# aborts on a violation; under `make sanitize` ASan and UBSan watch every input too.
set -u
: "${IHALA_BUILD:?run through tests/run}"
: "${IHALA_ROOT:?run through tests/run}"
cd "$IHALA_ROOT" || exit 2

names=()
total=0
for src in tests/fuzz/fuzz_*.c; do
	name=${src#tests/fuzz/fuzz_}
	name=${name%.c}
	names+=("$name")
	# the target binary itself is one case; every input is one more
	total=$((total + 1))
	for f in tests/fuzz/corpus/"$name"/* tests/fuzz/regress/"$name"/*; do
		[ -f "$f" ] && total=$((total + 1))
	done
done
echo "1..$total"

n=0
out=$(mktemp /tmp/ihala-fuzzreg.XXXXXX)
trap 'rm -f "$out"' EXIT
for name in "${names[@]}"; do
	bin=$IHALA_BUILD/tests/fuzz/fuzz_$name
	inputs=()
	for f in tests/fuzz/corpus/"$name"/* tests/fuzz/regress/"$name"/*; do
		[ -f "$f" ] && inputs+=("$f")
	done
	n=$((n + 1))
	if [ ! -x "$bin" ]; then
		echo "not ok $n - fuzz_$name is built"
		continue
	fi
	echo "ok $n - fuzz_$name is built"
	[ ${#inputs[@]} -gt 0 ] || continue
	timeout -k 5 300 "$bin" "${inputs[@]}" >"$out" 2>&1
	rc=$?
	done_inputs=0
	current=""
	while IFS= read -r line; do
		case $line in
		"# input "*) current=${line#"# input "} ;;
		"ok "*)
			n=$((n + 1))
			done_inputs=$((done_inputs + 1))
			echo "ok $n - $name: ${line#ok }"
			current=""
			;;
		esac
	done <"$out"
	if [ $rc -ne 0 ] || [ $done_inputs -ne ${#inputs[@]} ]; then
		n=$((n + 1))
		echo "not ok $n - $name: ${current:-a run} (exit $rc)"
		grep -vE '^(ok |# input )' "$out" | head -n 30 | sed 's/^/#   /'
		# the inputs after the one that failed were not run: the plan counts them as failed
	fi
done
echo "# counts: $n fuzz replay cases"
