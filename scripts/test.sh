#!/usr/bin/env bash
# test.sh is what `make test` and CI run: gofmt check, go vet, then
# `go test -race` against a throwaway Redis and MariaDB (scripts/testenv.sh).
#
#	scripts/test.sh                      # every package
#	scripts/test.sh ./internal/alloc/... # some packages (gofmt and vet still check all)
#	GOTESTFLAGS='-run TestRefill -v' make test
#
# The terminal gets package summaries and the output of failed and skipped
# tests; the full `go test -v` log is kept in .tmp/go-test.log. A skipped test
# fails the run: under make test every service a test needs is there. The exit
# status is go test's, or 1 when only the skip check failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

step() { printf '==> %s\n' "$*"; }
die() {
	printf 'test.sh: %s\n' "$*" >&2
	exit 1
}

command -v go >/dev/null 2>&1 || die "go not found in PATH (Go 1.26 lives in /usr/local/go/bin)"
gofmt=$(go env GOROOT)/bin/gofmt
[[ -x $gofmt ]] || gofmt=$(command -v gofmt) || die "gofmt not found"

# go_files lists the Go files of the work tree, tracked and untracked, that
# git does not ignore.
go_files() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard -- '*.go'
	else
		find . -path ./.git -prune -o -type f -name '*.go' -print0
	fi
}

step "gofmt"
files=()
while IFS= read -r -d '' f; do
	# A tracked file deleted in the work tree is still listed.
	[[ -f $f ]] && files+=("$f")
done < <(go_files)
if ((${#files[@]} > 0)); then
	if ! unformatted=$("$gofmt" -l -- "${files[@]}" 2>&1); then
		printf '%s\n' "$unformatted" >&2
		die "gofmt failed (syntax error?)"
	fi
	if [[ -n $unformatted ]]; then
		printf '%s\n' "$unformatted" >&2
		die "these files need gofmt (run: make fmt)"
	fi
fi

# An empty module makes go vet and go test exit 1 with "matched no packages".
pkgs=("$@")
((${#pkgs[@]} > 0)) || pkgs=(./...)
if [[ -z $(go list -e "${pkgs[@]}" 2>/dev/null) ]]; then
	no_packages=1
else
	no_packages=''
fi

step "go vet"
if [[ -n $no_packages ]]; then
	echo "no Go packages yet: nothing to vet"
else
	go vet ./...
fi

# -race needs cgo, and cgo a C compiler; without one Go quietly turns cgo off.
if [[ $(go env CGO_ENABLED) != 1 ]]; then
	if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1 && ! command -v gcc >/dev/null 2>&1; then
		step "installing gcc (go test -race needs cgo)"
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc </dev/null >/dev/null
	fi
	[[ $(go env CGO_ENABLED) == 1 ]] ||
		die "go test -race needs cgo: install gcc (apt-get install gcc) and leave CGO_ENABLED unset"
fi

step "test services"
# shellcheck source=scripts/testenv.sh
. "$root/scripts/testenv.sh"

if [[ -n $no_packages ]]; then
	step "go test"
	echo "no Go packages yet: nothing to test"
	echo "tests: 0 passed, 0 failed, 0 skipped"
	exit 0
fi

mkdir -p "$root/.tmp"
log=$root/.tmp/go-test.log
read -r -a extra <<<"${GOTESTFLAGS:-}"
# The nemesis test (test/nemesis) runs for $NEMESIS, a minute when unset: a
# longer run (NEMESIS=30m) gets that much more than the usual 12 minutes.
timeout=12m
if [[ -n ${NEMESIS:-} ]]; then
	[[ $NEMESIS =~ ^(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?$ ]] ||
		die "NEMESIS=$NEMESIS: want whole hours, minutes and seconds, such as 30m or 1h30m"
	timeout=$((10#${BASH_REMATCH[2]:-0} * 3600 + 10#${BASH_REMATCH[4]:-0} * 60 + 10#${BASH_REMATCH[6]:-0} + 720))s
fi
cmd=(go test -race -count=1 -timeout "$timeout" -v "${extra[@]}" "${pkgs[@]}")
step "${cmd[*]}"

# The filter reads `go test -v` output, one package block at a time (go test
# prints each package's output in one piece, ending with its ok/FAIL line). It
# keeps the lines of failed and skipped tests and anything printed outside a
# test (build errors, panics, TestMain), drops the rest, and prints the whole
# block when a package failed without a failed test to show for it.
# Portable awk: Debian's default is mawk.
# shellcheck disable=SC2016 # awk program, not shell
filter='
function flush(all,    i, t) {
	for (i = 1; i <= n; i++) {
		t = owner[i]
		if (all || (t == "" && !noise(text[i])) || (t in bad))
			print text[i]
	}
	n = 0; nbad = 0; cur = ""
	split("", owner); split("", text); split("", bad)
	fflush()
}
function noise(s) {
	return s ~ /^(PASS|FAIL)$/ || s ~ /^exit status [0-9]+$/ || s ~ /^coverage: /
}
function keep(s) { text[++n] = s; owner[n] = cur }
/^=== (RUN|PAUSE|CONT|NAME) / { cur = $3; keep($0); next }
/^[ \t]*--- (PASS|FAIL|SKIP): / {
	name = $3
	if ($2 != "PASS:") { bad[name] = 1; nbad++ }
	cur = name; keep($0)
	# After a result line output belongs to the parent test, or to none.
	if ($0 ~ /^---/) cur = ""; else sub(/\/[^\/]*$/, "", cur)
	next
}
/^(panic: |fatal error: |WARNING: DATA RACE|SIGQUIT|SIGABRT)/ { cur = "" }
/^(ok  |FAIL|\?   )\t/ {
	failed = ($1 == "FAIL")
	flush(failed && nbad == 0)
	print; fflush(); next
}
{ keep($0) }
END { flush(1) }
'

set +o errexit
"${cmd[@]}" 2>&1 | tee "$log" | awk "$filter"
statuses=("${PIPESTATUS[@]}")
set -o errexit
rc=${statuses[0]}
((statuses[1] == 0 && statuses[2] == 0)) || echo "test.sh: the output filter failed; see the full log" >&2

count() { grep -cE "^[[:space:]]*--- $1: " "$log" || true; }
passed=$(count PASS)
failed=$(count FAIL)
skipped=$(count SKIP)

echo
echo "full log: $log"
if ((skipped > 0)); then
	echo "test.sh: $skipped test(s) skipped; under make test nothing may skip:" >&2
	grep -E '^[[:space:]]*--- SKIP: ' "$log" | sed 's/^[[:space:]]*--- SKIP: /  /' >&2
	((rc != 0)) || rc=1
fi
if ((rc != 0)); then
	echo "test.sh: FAIL (exit $rc)"
else
	echo "test.sh: ok"
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
exit "$rc"
