#!/usr/bin/env bash
# testenv.sh starts a throwaway Redis and a throwaway MariaDB on free loopback
# ports for one test run, and stops them again. It never uses or touches the
# shared servers on 6379 and 3306.
#
# Sourced (this is what scripts/test.sh does):
#
#	. scripts/testenv.sh
#
# starts both servers, exports the variables below and sets traps on EXIT, INT,
# TERM and HUP that stop the servers and remove the scratch directory (the
# caller's own traps on those signals are replaced). It returns non-zero, having
# cleaned up, when a server cannot be started.
#
# Executed:
#
#	scripts/testenv.sh go test ./internal/store/...   # runs the command, then cleans up
#	scripts/testenv.sh                                 # prints export lines, waits for Ctrl-C
#
# Exported:
#
#	NUMBERD_TEST_REDIS_ADDR          127.0.0.1:<port>
#	NUMBERD_TEST_MYSQL_DSN           root@tcp(127.0.0.1:<port>)/   (no database, no parameters)
#	NUMBERD_TEST_REDIS_SERVER        absolute path of redis-server
#	NUMBERD_TEST_MARIADBD            absolute path of mariadbd
#	NUMBERD_TEST_MARIADB_INSTALL_DB  absolute path of mariadb-install-db
#
# The three path variables may be set beforehand to choose other binaries.
# A missing binary is installed with apt-get when running as root; otherwise
# the script fails and says how to install it. It never skips.

# Everything below is in functions and _ntenv_ variables so that sourcing this
# file changes nothing else in the caller's shell, not even its set options.

_ntenv_log() { printf 'testenv: %s\n' "$*" >&2; }

# _ntenv_fail prints an error and returns 1, so callers can write `|| return`.
_ntenv_fail() {
	printf 'testenv: error: %s\n' "$*" >&2
	return 1
}

# _ntenv_now_us prints the wall clock in microseconds.
_ntenv_now_us() {
	if [[ -n ${EPOCHREALTIME:-} ]]; then
		local t=${EPOCHREALTIME/[.,]/}
		printf '%s\n' "$((10#$t))"
	else
		date +%s%6N
	fi
}

# _ntenv_tail FILE prints the last lines of a log for an error message.
_ntenv_tail() {
	if [[ -s $1 ]]; then
		printf -- '--- last lines of %s ---\n' "$1" >&2
		tail -n 30 -- "$1" >&2
		printf -- '---\n' >&2
	else
		printf 'testenv: (%s is empty or missing)\n' "$1" >&2
	fi
}

# _ntenv_abs PATH prints PATH made absolute. Symlinks stay as they are: Debian's
# redis-server is a link to redis-check-rdb, and Redis picks its mode by name.
_ntenv_abs() {
	case $1 in
	/*) printf '%s\n' "$1" ;;
	*) printf '%s\n' "$PWD/${1#./}" ;;
	esac
}

# _ntenv_which NAME... prints the absolute path of the first NAME found in
# PATH or in the sbin directories a non-root PATH often lacks.
_ntenv_which() {
	local name dir
	for name in "$@"; do
		if command -v "$name" >/dev/null 2>&1; then
			_ntenv_abs "$(command -v "$name")"
			return 0
		fi
		for dir in /usr/sbin /usr/local/sbin /sbin /usr/bin /usr/local/bin; do
			if [[ -x $dir/$name && ! -d $dir/$name ]]; then
				printf '%s\n' "$dir/$name"
				return 0
			fi
		done
	done
	return 1
}

_ntenv_apt_updated=''
# _ntenv_apt_install PKG installs a Debian package as root, without letting
# its maintainer scripts start or stop any daemon (policy-rc.d answers 101,
# "action forbidden"), so a package that ships a service leaves nothing running
# and leaves the shared servers alone.
_ntenv_apt_install() {
	local pkg=$1 policy=/usr/sbin/policy-rc.d ours='' rc=0
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\n# written by numberd scripts/testenv.sh during apt-get install\nexit 101\n' >"$policy" &&
			chmod 755 "$policy" && ours=1
	fi
	_ntenv_log "installing Debian package $pkg"
	if [[ -z $_ntenv_apt_updated ]]; then
		apt-get update -qq || rc=$?
		[[ $rc -eq 0 ]] && _ntenv_apt_updated=1
	fi
	if [[ $rc -eq 0 ]]; then
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" </dev/null >/dev/null || rc=$?
	fi
	[[ -n $ours ]] && rm -f -- "$policy"
	[[ $rc -eq 0 ]] || _ntenv_fail "apt-get install $pkg failed (exit $rc)"
}

# _ntenv_need VAR PKG NAME... sets VAR to the absolute path of the first NAME
# found, installing PKG first if needed and possible. A VAR already set in the
# environment wins.
_ntenv_need() {
	local var=$1 pkg=$2 path='' hint=''
	shift 2
	path=${!var:-}
	if [[ -n $path ]]; then
		[[ -x $path && ! -d $path ]] || _ntenv_fail "$var=$path is not an executable file" || return
		printf -v "$var" '%s' "$(_ntenv_abs "$path")"
		return 0
	fi
	if ! path=$(_ntenv_which "$@"); then
		if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
			_ntenv_apt_install "$pkg" || return
			path=$(_ntenv_which "$@") || _ntenv_fail "$1 still not found after installing $pkg" || return
		else
			[[ $var == NUMBERD_* ]] && hint=" (or set $var to its path)"
			_ntenv_fail "$1 not found; install it with: sudo apt-get install $pkg$hint"
			return
		fi
	fi
	printf -v "$var" '%s' "$path"
}

# _ntenv_free_port prints a TCP port that nothing on 127.0.0.1 uses right now.
# Another process may still take it before the server binds, so the callers
# retry when the bind fails.
_ntenv_free_port() {
	local port i
	if command -v python3 >/dev/null 2>&1 &&
		port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null) &&
		[[ $port =~ ^[0-9]+$ ]]; then
		printf '%s\n' "$port"
		return 0
	fi
	# No python3: a random port below Linux's ephemeral range that refuses
	# connections.
	for ((i = 0; i < 100; i++)); do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	_ntenv_fail "found no free TCP port on 127.0.0.1"
}

# _ntenv_alive PID succeeds while PID runs (a zombie does not count).
_ntenv_alive() {
	local stat
	if [[ -r /proc/$1/stat ]]; then
		stat=$(<"/proc/$1/stat") 2>/dev/null || return 1
		stat=${stat##*) }
		[[ ${stat%% *} != Z ]]
	else
		kill -0 "$1" 2>/dev/null
	fi
}

# _ntenv_stop PID sends SIGTERM, waits up to 20 s, then SIGKILLs, and reaps.
_ntenv_stop() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 200; i++)); do
		_ntenv_alive "$pid" || break
		sleep 0.1
	done
	if _ntenv_alive "$pid"; then
		_ntenv_log "pid $pid ignored SIGTERM for 20 s; sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

_ntenv_pids=()
_ntenv_tmp=''

# numberd_testenv_cleanup stops the servers and removes the scratch directory.
# It is idempotent; the traps call it.
numberd_testenv_cleanup() {
	local pid
	for pid in "${_ntenv_pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${_ntenv_pids[@]}"; do
		_ntenv_stop "$pid"
	done
	_ntenv_pids=()
	if [[ -n $_ntenv_tmp && -d $_ntenv_tmp ]]; then
		rm -rf -- "$_ntenv_tmp"
	fi
	_ntenv_tmp=''
}

# _ntenv_redis_pid PORT prints the process_id that the Redis on PORT reports.
_ntenv_redis_pid() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'INFO server\r\n' >&3
		while IFS= read -r -t 2 line <&3; do
			line=${line%$'\r'}
			case $line in
			process_id:*)
				printf '%s\n' "${line#process_id:}"
				exit 0
				;;
			esac
		done
		exit 1
	) 2>/dev/null
}

# _ntenv_start_redis starts redis-server on a free port and waits (10 s at
# most) until it answers; it sets _ntenv_redis_port and _ntenv_redis_pid.
_ntenv_start_redis() {
	local dir=$_ntenv_tmp/redis log=$_ntenv_tmp/redis/redis.log
	local attempt port pid deadline timed_out
	mkdir -p -- "$dir" || return
	for ((attempt = 1; attempt <= 5; attempt++)); do
		port=$(_ntenv_free_port) || return
		"$NUMBERD_TEST_REDIS_SERVER" --bind 127.0.0.1 --port "$port" \
			--save "" --appendonly no --dir "$dir" --daemonize no \
			--logfile "" --pidfile "$dir/redis.pid" \
			</dev/null >"$log" 2>&1 &
		pid=$!
		_ntenv_pids+=("$pid")
		deadline=$(($(_ntenv_now_us) + 10000000)) timed_out=1
		while (($(_ntenv_now_us) < deadline)); do
			# Ours must be the server that answers: if another took
			# the port, ours exits and someone else would answer.
			if grep -q 'Ready to accept connections' "$log" &&
				[[ $(_ntenv_redis_pid "$port") == "$pid" ]]; then
				_ntenv_redis_port=$port
				_ntenv_redis_pid=$pid
				return 0
			fi
			_ntenv_alive "$pid" || {
				timed_out=''
				break
			}
			sleep 0.1
		done
		_ntenv_stop "$pid"
		if grep -qi 'address already in use' "$log"; then
			_ntenv_log "redis port $port was taken meanwhile; trying another"
			continue
		fi
		_ntenv_tail "$log"
		if [[ -n $timed_out ]]; then
			_ntenv_fail "redis-server (pid $pid) did not answer on 127.0.0.1:$port within 10 s"
		else
			_ntenv_fail "redis-server exited during start-up"
		fi
		return
	done
	_ntenv_fail "redis-server: every port tried was taken"
}

# _ntenv_start_mariadb creates a data directory, starts mariadbd on a free port
# and waits (60 s at most) until it answers; it sets _ntenv_mysql_port,
# _ntenv_mysql_pid and _ntenv_mysql_version.
_ntenv_start_mariadb() {
	local datadir=$_ntenv_tmp/mysql sock=$_ntenv_tmp/mysql.sock
	local errlog=$_ntenv_tmp/mariadb.err install_log=$_ntenv_tmp/mariadb-install.log
	local attempt port pid deadline timed_out out
	local -a user=() tuning admin
	# mariadbd refuses to run as root unless told to.
	[[ $EUID -eq 0 ]] && user=(--user=root)
	# Small and fast: a test database is thrown away, so durability does
	# not matter. Character set as in Debian's own server config.
	tuning=(
		--innodb-buffer-pool-size=64M
		--innodb-log-file-size=16M
		--innodb-log-buffer-size=8M
		--innodb-flush-log-at-trx-commit=2
		--innodb-doublewrite=0
		--innodb-use-native-aio=0
		--skip-name-resolve
		--character-set-server=utf8mb4
		--collation-server=utf8mb4_general_ci
	)
	"$NUMBERD_TEST_MARIADB_INSTALL_DB" --no-defaults --datadir="$datadir" "${user[@]}" \
		--auth-root-authentication-method=normal --skip-test-db \
		"${tuning[@]}" </dev/null >"$install_log" 2>&1 || {
		_ntenv_tail "$install_log"
		_ntenv_fail "mariadb-install-db failed"
		return
	}
	admin=("$_ntenv_mariadb_admin" --no-defaults --user=root --connect-timeout=2)
	for ((attempt = 1; attempt <= 5; attempt++)); do
		port=$(_ntenv_free_port) || return
		: >"$errlog"
		"$NUMBERD_TEST_MARIADBD" --no-defaults --datadir="$datadir" "${user[@]}" \
			--socket="$sock" --port="$port" --bind-address=127.0.0.1 \
			--skip-networking=0 --pid-file="$_ntenv_tmp/mariadb.pid" \
			--log-error="$errlog" --tmpdir="$_ntenv_tmp" \
			"${tuning[@]}" </dev/null >>"$errlog" 2>&1 &
		pid=$!
		_ntenv_pids+=("$pid")
		deadline=$(($(_ntenv_now_us) + 60000000)) timed_out=1
		while (($(_ntenv_now_us) < deadline)); do
			if "${admin[@]}" --socket="$sock" ping >/dev/null 2>&1; then
				# ping answers even when a login fails: log in with
				# the account the DSN uses, over TCP, and make sure
				# the server there is ours.
				if ! out=$("${admin[@]}" --protocol=tcp --host=127.0.0.1 --port="$port" variables 2>&1); then
					printf '%s\n' "$out" >&2
					_ntenv_fail "mariadbd is up but root@127.0.0.1:$port cannot log in without a password"
					return
				fi
				if [[ $(printf '%s\n' "$out" | awk '$2 == "socket" { print $4 }') != "$sock" ]]; then
					_ntenv_fail "the server on 127.0.0.1:$port is not the one just started"
					return
				fi
				_ntenv_mysql_version=$(printf '%s\n' "$out" | awk '$2 == "version" { print $4 }')
				_ntenv_mysql_port=$port
				_ntenv_mysql_pid=$pid
				return 0
			fi
			_ntenv_alive "$pid" || {
				timed_out=''
				break
			}
			sleep 0.1
		done
		_ntenv_stop "$pid"
		if grep -qi 'address already in use' "$errlog"; then
			_ntenv_log "mariadb port $port was taken meanwhile; trying another"
			continue
		fi
		_ntenv_tail "$errlog"
		if [[ -n $timed_out ]]; then
			_ntenv_fail "mariadbd did not answer on $sock within 60 s"
		else
			_ntenv_fail "mariadbd exited during start-up"
		fi
		return
	done
	_ntenv_fail "mariadbd: every port tried was taken"
}

# numberd_testenv_start does the whole job; on failure the caller cleans up.
numberd_testenv_start() {
	local t0 base redis_version
	t0=$(_ntenv_now_us)

	_ntenv_need NUMBERD_TEST_REDIS_SERVER redis-server redis-server || return
	_ntenv_need NUMBERD_TEST_MARIADBD mariadb-server mariadbd || return
	_ntenv_need NUMBERD_TEST_MARIADB_INSTALL_DB mariadb-server mariadb-install-db || return
	_ntenv_mariadb_admin=''
	_ntenv_need _ntenv_mariadb_admin mariadb-client mariadb-admin mysqladmin || return

	# A Unix socket path may not exceed 107 bytes: fall back to /tmp when
	# TMPDIR is deep.
	base=${TMPDIR:-/tmp}
	((${#base} <= 60)) || base=/tmp
	_ntenv_tmp=$(mktemp -d "${base%/}/numberd-test.XXXXXX") ||
		_ntenv_fail "cannot create a scratch directory in $base" || return

	_ntenv_start_redis || return
	_ntenv_start_mariadb || return

	export NUMBERD_TEST_REDIS_SERVER NUMBERD_TEST_MARIADBD NUMBERD_TEST_MARIADB_INSTALL_DB
	export NUMBERD_TEST_REDIS_ADDR="127.0.0.1:$_ntenv_redis_port"
	export NUMBERD_TEST_MYSQL_DSN="root@tcp(127.0.0.1:$_ntenv_mysql_port)/"

	redis_version=$("$NUMBERD_TEST_REDIS_SERVER" --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')
	_ntenv_log "redis-server ${redis_version:-?} on $NUMBERD_TEST_REDIS_ADDR (pid $_ntenv_redis_pid, $NUMBERD_TEST_REDIS_SERVER)"
	_ntenv_log "mariadbd ${_ntenv_mysql_version:-?} on 127.0.0.1:$_ntenv_mysql_port (pid $_ntenv_mysql_pid, $NUMBERD_TEST_MARIADBD)"
	_ntenv_log "scratch directory $_ntenv_tmp (removed on exit)"
	_ntenv_log "started in $((($(_ntenv_now_us) - t0) / 1000)) ms"
}

# _ntenv_traps makes every way out of the calling shell clean up. On a signal
# the shell then dies of that same signal, so its parent sees the interrupt.
# An interactive shell only cleans up when it exits.
_ntenv_traps() {
	trap 'numberd_testenv_cleanup' EXIT
	if [[ $- != *i* ]]; then
		trap 'numberd_testenv_cleanup; trap - INT; kill -INT $$' INT
		trap 'numberd_testenv_cleanup; trap - TERM; kill -TERM $$' TERM
		trap 'numberd_testenv_cleanup; trap - HUP; kill -HUP $$' HUP
	fi
}

if [[ ${BASH_SOURCE[0]} != "$0" ]]; then
	# Sourced.
	_ntenv_traps
	if ! numberd_testenv_start; then
		numberd_testenv_cleanup
		return 1
	fi
else
	set -euo pipefail
	_ntenv_traps
	if ! numberd_testenv_start; then
		exit 1
	fi
	if (($# > 0)); then
		rc=0
		"$@" || rc=$?
		exit "$rc"
	fi
	for _ntenv_v in NUMBERD_TEST_REDIS_ADDR NUMBERD_TEST_MYSQL_DSN NUMBERD_TEST_REDIS_SERVER \
		NUMBERD_TEST_MARIADBD NUMBERD_TEST_MARIADB_INSTALL_DB; do
		printf 'export %s=%q\n' "$_ntenv_v" "${!_ntenv_v}"
	done
	_ntenv_log "servers are up; press Ctrl-C to stop them"
	wait "${_ntenv_pids[@]}" || true
	_ntenv_log "a server exited by itself"
	exit 1
fi
