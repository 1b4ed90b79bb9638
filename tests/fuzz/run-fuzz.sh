#!/bin/sh
# run-fuzz.sh SECONDS TARGET...: run each libFuzzer target (built as
# tests/fuzz/fuzz-TARGET) for SECONDS over its corpus (kept in the build
# tree between runs), its committed seeds, the seeds make-seeds.sh makes
# and the crashes found before (which must all pass first); then a line per
# target: executions, exec/s, coverage (libFuzzer's cov: and ft:), corpus
# size, crashes. Exit 1 when any target crashed. A crash's input is kept
# in tests/fuzz/artifacts/TARGET/ (commit it under tests/fuzz/crashes/).
set -u
seconds=$1
shift
src=$top_srcdir/tests/fuzz
build=$top_builddir/tests/fuzz

if ! sh "$src/make-seeds.sh" "$build/seeds-generated"; then
	echo "run-fuzz: cannot make the seeds (tests/fuzz/make-seeds.sh)" >&2
	exit 1
fi

status=0
report=$build/fuzz-report.txt
printf '%-14s %12s %8s %7s %7s %8s %s\n' target executions exec/s cov ft corpus crashes >"$report"
for target in "$@"; do
	program=$build/fuzz-$target
	corpus=$build/corpus/$target
	artifacts=$build/artifacts/$target
	log=$build/fuzz-$target.log
	# Scratch files (deb extractions, manifests) on tmpfs when there is one.
	scratch=$(mktemp -d "${FUZZ_TMPDIR:-/dev/shm}/ivlab-fuzz-$target-XXXXXX" 2>/dev/null) ||
		scratch=$(mktemp -d "$build/tmp-$target-XXXXXX")
	mkdir -p "$corpus" "$artifacts"
	dirs=$corpus
	for dir in "$src/seeds/$target" "$build/seeds-generated/$target" "$src/crashes/$target"; do
		[ -d "$dir" ] && dirs="$dirs $dir"
	done
	case $target in
	deb | initramfs | kmod) max_len=16384 ;;
	lab) max_len=8192 ;;
	*) max_len=4096 ;;
	esac
	crashes=0
	# The crashes found before: each must now pass.
	if [ -d "$src/crashes/$target" ] && [ -n "$(ls "$src/crashes/$target")" ]; then
		if ! TMPDIR=$scratch "$program" "$src/crashes/$target"/* >"$log.crashes" 2>&1; then
			echo "run-fuzz: $target: a committed crash fails again (see $log.crashes)" >&2
			crashes=$((crashes + 1))
		fi
	fi
	echo "run-fuzz: $target for $seconds s (log: $log)"
	# shellcheck disable=SC2086
	TMPDIR=$scratch "$program" -max_total_time="$seconds" -timeout=10 -max_len=$max_len \
		-print_final_stats=1 -artifact_prefix="$artifacts/" $dirs >"$log" 2>&1
	rc=$?
	[ $rc -eq 0 ] || crashes=$((crashes + 1))
	rm -rf "$scratch"
	last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
	speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
	cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(ls "$corpus" | wc -l)
	printf '%-14s %12s %8s %7s %7s %8s %s\n' "$target" "${execs:-?}" "${speed:-?}" "${cov:-?}" \
		"${ft:-?}" "$corp" "$crashes" >>"$report"
	if [ $crashes -ne 0 ]; then
		status=1
		grep -m 1 -E 'ERROR: |runtime error|ERROR:|\*\*' "$log" >&2
		echo "run-fuzz: $target crashed: input in $artifacts/ (log $log)" >&2
	fi
done
cat "$report"
exit $status
