# shellcheck shell=bash
# shellcheck disable=SC2034 # the LL_ variables are set here for the scripts that source this file
# loadlib.sh holds what scripts/loadtest.sh and scripts/bench.sh share: the
# pinned tools, throwaway servers (numberd, the baselines, and through
# scripts/testenv.sh a Redis and a MariaDB), their clean-up, and small helpers.
# It is sourced, never run; it starts nothing by itself. Every function and
# variable is prefixed ll_ / LL_.
#
# Callers set `set -euo pipefail`, cd to the repository root, source this file,
# and call ll_init WORKDIR first.

# The k6 version `make loadtest` builds from source (go install, never a
# prebuilt binary). Change it here and nowhere else.
LL_K6_VERSION=v1.8.1

ll_log() { printf '==> %s\n' "$*" >&2; }
ll_warn() { printf '%s: warning: %s\n' "$LL_NAME" "$*" >&2; }
ll_die() {
	printf '%s: FAIL: %s\n' "$LL_NAME" "$*" >&2
	exit 1
}

LL_PIDS=()
LL_TMP=''
LL_NAME=${LL_NAME:-load}

# ll_init NAME sets up the artefact directory .tmp/NAME (emptied; kept after
# the run for inspection), a scratch directory (removed on exit) and the traps.
ll_init() {
	LL_NAME=$1
	LL_ROOT=$PWD
	LL_OUT=$LL_ROOT/.tmp/$1
	rm -rf -- "$LL_OUT"
	mkdir -p -- "$LL_OUT"
	local base=${TMPDIR:-/tmp}
	((${#base} <= 60)) || base=/tmp
	LL_TMP=$(mktemp -d "${base%/}/numberd-$1.XXXXXX")
	trap 'll_cleanup' EXIT
	trap 'll_cleanup; trap - INT; kill -INT $$' INT
	trap 'll_cleanup; trap - TERM; kill -TERM $$' TERM
	trap 'll_cleanup; trap - HUP; kill -HUP $$' HUP
	PATH=/usr/local/go/bin:$PATH
	command -v go >/dev/null 2>&1 || ll_die "go not found in PATH (Go 1.26 lives in /usr/local/go/bin)"
}

# ll_alive PID succeeds while PID runs (a zombie does not count).
ll_alive() {
	local stat
	[[ -r /proc/$1/stat ]] || return 1
	stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# ll_stop PID sends SIGTERM, waits up to 20 s, then SIGKILLs, and reaps; it
# sets LL_RC to the process's exit status (143 and the like for a signal).
ll_stop() {
	local pid=$1 i rc=0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		ll_alive "$pid" || break
		sleep 0.1
	done
	if ll_alive "$pid"; then
		ll_warn "pid $pid ignored SIGTERM for 20 s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || rc=$?
	LL_RC=$rc
}

# ll_cleanup stops every process this script started (by pid), the test
# services, and removes the scratch directory. The traps call it; it is
# idempotent.
ll_cleanup() {
	local pid
	for pid in "${LL_PIDS[@]}"; do
		ll_alive "$pid" && ll_stop "$pid"
	done
	LL_PIDS=()
	if declare -F numberd_testenv_cleanup >/dev/null; then
		numberd_testenv_cleanup
	fi
	if [[ -n $LL_TMP && -d $LL_TMP ]]; then
		rm -rf -- "$LL_TMP"
	fi
	LL_TMP=''
}

# ll_free_port prints a TCP port nothing on 127.0.0.1 uses right now.
ll_free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
		ll_die "python3 is needed to find a free port"
}

# ll_build builds numberd and the load-test programs into ./bin.
ll_build() {
	ll_log "go build: numberd, baseline, dupcheck, openloop"
	go build -o bin/numberd ./cmd/numberd
	go build -o bin/baseline ./test/load/baseline
	go build -o bin/dupcheck ./test/load/dupcheck
	go build -o bin/openloop ./test/load/openloop
}

# ll_k6 makes sure ./bin/k6 is k6 $LL_K6_VERSION, built from source.
ll_k6() {
	if [[ -x bin/k6 ]] && [[ $(bin/k6 version 2>/dev/null) == "k6 $LL_K6_VERSION "* ]]; then
		return 0
	fi
	ll_log "go install go.k6.io/k6@$LL_K6_VERSION into ./bin (a few minutes the first time)"
	GOBIN=$LL_ROOT/bin go install "go.k6.io/k6@$LL_K6_VERSION" ||
		ll_die "could not build k6 $LL_K6_VERSION from source"
	[[ $(bin/k6 version 2>/dev/null) == "k6 $LL_K6_VERSION "* ]] || ll_die "bin/k6 is not $LL_K6_VERSION after go install"
}

# ll_need_wrk makes sure wrk (Debian's package) is there.
ll_need_wrk() {
	command -v wrk >/dev/null 2>&1 && return 0
	if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
		ll_log "installing Debian package wrk"
		apt-get update -qq || ll_die "apt-get update failed"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk </dev/null >/dev/null || ll_die "apt-get install wrk failed"
		command -v wrk >/dev/null 2>&1 || ll_die "wrk still not found after installing it"
	else
		ll_die "wrk not found; install it with: sudo apt-get install wrk"
	fi
}

# ll_services starts a throwaway Redis and MariaDB (scripts/testenv.sh) and
# creates the database numberd_load; it sets LL_REDIS_ADDR, LL_REDIS_URL and
# LL_MYSQL_DSN. testenv.sh replaces the traps, so they are set again here.
ll_services() {
	ll_log "throwaway redis-server and mariadbd (scripts/testenv.sh)"
	# shellcheck source=scripts/testenv.sh
	. "$LL_ROOT/scripts/testenv.sh" || ll_die "could not start the test services"
	trap 'll_cleanup' EXIT
	trap 'll_cleanup; trap - INT; kill -INT $$' INT
	trap 'll_cleanup; trap - TERM; kill -TERM $$' TERM
	trap 'll_cleanup; trap - HUP; kill -HUP $$' HUP
	local port=${NUMBERD_TEST_MYSQL_DSN##*:}
	port=${port%%)*}
	"$_ntenv_mariadb_admin" --no-defaults --user=root --protocol=tcp --host=127.0.0.1 --port="$port" \
		create numberd_load || ll_die "could not create the database numberd_load"
	LL_REDIS_ADDR=$NUMBERD_TEST_REDIS_ADDR
	LL_REDIS_URL=redis://$NUMBERD_TEST_REDIS_ADDR/0
	LL_MYSQL_DSN=${NUMBERD_TEST_MYSQL_DSN%/}/numberd_load
	LL_REDIS_VERSION=$("$NUMBERD_TEST_REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')
	LL_MYSQL_VERSION=${_ntenv_mysql_version:-?}
}

# ll_wait_http URL SECONDS PID waits until URL answers at all (any status)
# while PID runs.
ll_wait_http() {
	local url=$1 secs=$2 pid=$3 i
	for ((i = 0; i < secs * 10; i++)); do
		ll_alive "$pid" || return 1
		curl -s -o /dev/null --max-time 1 "$url" && return 0
		sleep 0.1
	done
	return 1
}

# ll_start NAME READY_PATH CMD... starts CMD with --addr 127.0.0.1:<free port>
# appended, its output in $LL_OUT/NAME.log, and waits (20 s at most) until
# READY_PATH answers; it retries on another port when the bind fails. It sets
# LL_PORT and LL_PID (and remembers the pid for clean-up).
ll_start() {
	local name=$1 ready=$2 attempt port pid log=$LL_OUT/$1.log
	shift 2
	for ((attempt = 1; attempt <= 5; attempt++)); do
		port=$(ll_free_port)
		[[ -n $port ]] || ll_die "found no free port"
		"$@" --addr "127.0.0.1:$port" </dev/null >"$log" 2>&1 &
		pid=$!
		LL_PIDS+=("$pid")
		if ll_wait_http "http://127.0.0.1:$port$ready" 20 "$pid"; then
			LL_PORT=$port LL_PID=$pid
			return 0
		fi
		ll_stop "$pid"
		if grep -qi 'address already in use' "$log"; then
			continue
		fi
		tail -n 30 -- "$log" >&2
		ll_die "$name did not start (log: $log)"
	done
	ll_die "$name: every port tried was taken"
}

# ll_numberd NAME MODE [FLAG...] starts a numberd in MODE (embedded: a fresh
# data directory; distributed: the test services, ll_services first) and sets
# LL_PORT, LL_PID.
ll_numberd() {
	local name=$1 mode=$2
	shift 2
	local -a args=(bin/numberd --log-level warn "$@")
	case $mode in
	embedded)
		mkdir -p -- "$LL_TMP/$name-data"
		args+=(--data-dir "$LL_TMP/$name-data")
		;;
	distributed)
		[[ -n ${LL_MYSQL_DSN:-} ]] || ll_die "distributed mode needs ll_services first"
		args+=(--redis "$LL_REDIS_URL" --mysql "$LL_MYSQL_DSN")
		;;
	*) ll_die "MODE must be embedded or distributed, not '$mode'" ;;
	esac
	ll_start "$name" /readyz "${args[@]}"
}

# ll_api METHOD URL [BODY] calls the API and fails the script on a status
# other than 2xx.
ll_api() {
	local method=$1 url=$2 body=${3:-} out code
	out=$(curl -sS -X "$method" -H 'Content-Type: application/json' ${NUMBERD_TOKEN:+-H "Authorization: Bearer $NUMBERD_TOKEN"} \
		${body:+--data "$body"} -w '\n%{http_code}' --max-time 30 "$url") || ll_die "$method $url: curl failed"
	code=${out##*$'\n'}
	[[ $code == 2?? ]] || ll_die "$method $url: $code ${out%$'\n'*}"
}

# ll_pool BASE POOL START END creates a 20-digit pool and loads START..END.
ll_pool() {
	ll_api PUT "$1/v1/pools/$2" '{"digits": 20}'
	ll_api POST "$1/v1/pools/$2/segments" "{\"start\": \"$3\", \"end\": \"$4\"}"
}

# ll_machine prints the machine's description, one fact a line.
ll_machine() {
	printf 'cores: %s\n' "$(nproc)"
	printf 'cpu: %s\n' "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
	printf 'memory: %s\n' "$(free -h | awk '/^Mem:/ { print $2 }')"
	printf 'kernel: %s\n' "$(uname -r)"
	printf 'go: %s\n' "$(go version)"
	printf 'numberd: commit %s, %s files changed in the work tree (internal/ cmd/ api/)\n' \
		"$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(git status --porcelain -- internal cmd api 2>/dev/null | wc -l)"
	printf 'wrk: %s\n' "$(wrk -v 2>&1 | head -n 1)"
	[[ -n ${LL_REDIS_VERSION:-} ]] && printf 'redis-server: %s\n' "$LL_REDIS_VERSION"
	[[ -n ${LL_MYSQL_VERSION:-} ]] && printf 'mariadbd: %s\n' "$LL_MYSQL_VERSION"
	printf 'load average before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
}

# ll_median prints the median of its arguments (the mean of the middle two for
# an even count).
ll_median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ll_kv LINE KEY prints KEY's value from a `RESULT k=v …` line.
ll_kv() {
	local line=$1 key=$2 f
	for f in $line; do
		if [[ $f == "$key="* ]]; then
			printf '%s\n' "${f#*=}"
			return 0
		fi
	done
	printf 'nan\n'
}

# ll_calc EXPR evaluates a floating-point expression with awk.
ll_calc() { awk "BEGIN { printf \"%.${2:-2}f\n\", $1 }"; }
