#!/bin/sh
# test-lab-bench.sh: `ivlab bench` end to end on domains/pair.xml over a real
# libvirtd: every measurement present and sane in --json, a clear error on
# a lab that is down, nothing left behind.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

name=ivlabtest-bench
lab=$(make_lab pair.xml "$name")
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true

"$IVLAB" -f "$lab" bench >/dev/null 2>"$scratch/down.err"
status=$?
check "bench on a lab that is down exits 1 and says to run up" \
	sh -c "[ $status -eq 1 ] && grep -q \"lab '$name' is not up\" '$scratch/down.err' && grep -q 'ivlab up' '$scratch/down.err'"
diag "$(cat "$scratch/down.err")"

if ! run_logged up "$IVLAB" -f "$lab" up; then
	not_ok "up"
	tap_done
	exit 1
fi
ok "up"

start=$(date +%s.%N)
"$IVLAB" -f "$lab" bench --json --iterations 200 >"$scratch/bench.json" 2>"$scratch/bench.err"
status=$?
elapsed=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
check "bench --json --iterations 200 exits 0 (${elapsed} s)" test $status -eq 0
[ $status -eq 0 ] || diag "$(cat "$scratch/bench.err")"
check "bench --json: every guest, region and ordered pair, numbers that make sense" \
	"$PYTHON3" -c '
import json, sys
bench = json.load(open(sys.argv[1]))
assert bench["lab"] == sys.argv[2] and bench["iterations"] == 200, bench
copies = {(c["region"], c["guest"]): c for c in bench["copy"]}
assert sorted(copies) == [("bell", "left"), ("bell", "right")], sorted(copies)
for c in copies.values():
    assert "error" not in c, c
    assert c["size"] == 1 << 20 and c["iterations"] == 200, c
    for key in ("to_region_mbps", "from_region_mbps", "ram_mbps"):
        assert isinstance(c[key], (int, float)) and c[key] > 0, (key, c)
pairs = {(p["region"], p["initiator"], p["responder"]): p for p in bench["pingpong"]}
want = [("bell", a, b) for a in ("host", "left", "right") for b in ("left", "right") if a != b]
assert sorted(pairs) == sorted(want), sorted(pairs)
for p in pairs.values():
    assert "error" not in p, p
    assert p["name"] == "pingpong/%s/%s->%s" % (p["region"], p["initiator"], p["responder"]), p
    assert isinstance(p["median_ns"], int) and isinstance(p["p99_ns"], int), p
    assert 0 < p["median_ns"] <= p["p99_ns"], p
    print("# %s median %.1f us p99 %.1f us" % (p["name"], p["median_ns"] / 1e3, p["p99_ns"] / 1e3))
for c in copies.values():
    print("# %s to %.1f from %.1f ram %.1f MB/s" % (c["name"], c["to_region_mbps"], c["from_region_mbps"], c["ram_mbps"]))
' "$scratch/bench.json" "$name"
json_schema_check "bench --json matches bench.schema.json" bench.schema.json "$scratch/bench.json"

"$IVLAB" -f "$lab" bench --filter 'pingpong/*/left->*' --iterations 20 >"$scratch/filter.out" 2>"$scratch/filter.err"
check "bench --filter runs only the matching measurements (a table)" \
	sh -c "grep -q '^bell  *left  *right ' '$scratch/filter.out' && ! grep -q 'host\|copy bandwidth' '$scratch/filter.out'"

"$IVLAB" -f "$lab" bench --iterations 0 >/dev/null 2>"$scratch/usage.err"
status=$?
check "bench --iterations 0 is a usage error" \
	sh -c "[ $status -ne 0 ] && grep -q 'iterations' '$scratch/usage.err'"

virsh -q destroy "$name-right" >/dev/null 2>&1
"$IVLAB" -f "$lab" bench --iterations 20 >/dev/null 2>"$scratch/half.err"
status=$?
check "bench with a guest shut off exits 1 and names it" \
	sh -c "[ $status -eq 1 ] && grep -q 'not fully up: guest right is not running (shut off)' '$scratch/half.err'"
diag "$(cat "$scratch/half.err")"

check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
