#!/bin/sh
# fuzz.sh runs every fuzz target of the module, one at a time (go test
# -fuzz takes one target per package), for FUZZTIME each, and fails if
# any fails. A failing input is left in the package's testdata/fuzz/,
# from where plain go test runs it again.
#
#   FUZZTIME=10s scripts/fuzz.sh
set -u
GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
cd "$(dirname "$0")/.."

# The packages that declare a fuzz target; go test -list then names the
# targets that build here.
dirs=$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
[ -n "$dirs" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
summary="" failed=0 targets=0
for dir in $dirs; do
	names=$($GO test -list '^Fuzz' "$dir" | grep '^Fuzz') || {
		echo "fuzz: cannot list the targets of $dir" >&2
		failed=$((failed + 1))
		continue
	}
	for name in $names; do
		targets=$((targets + 1))
		echo "== $dir $name"
		if $GO test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" "$dir" >"$log" 2>&1; then
			result=ok
		else
			result=FAIL
			failed=$((failed + 1))
			cat "$log"
		fi
		# The last progress line has the totals: execs and new interesting inputs.
		last=$(grep '^fuzz: elapsed' "$log" | tail -n 1)
		execs=$(echo "$last" | sed -n 's/.*execs: \([0-9]*\).*/\1/p')
		new=$(echo "$last" | sed -n 's/.*new interesting: \([0-9]*\).*/\1/p')
		summary="$summary$(printf '%-24s %-22s %12s %5s  %s' "$dir" "$name" "${execs:-?}" "${new:-?}" "$result")
"
	done
done

printf '\n%-24s %-22s %12s %5s  %s\n' package target execs new result
printf '%s' "$summary"
echo "$targets targets, $FUZZTIME each, $failed failed"
[ "$failed" -eq 0 ]
