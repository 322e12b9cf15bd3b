#!/usr/bin/env bash
# bench.sh is `make bench`: numberd measured side by side with what answering the
# same HTTP request costs at all, in one run on this machine, reported as medians
# and ratios (docs/PERFORMANCE.md explains the method and holds the figures).
#
#	make bench                         # everything but the soak (about 12 minutes)
#	SOAK=5m make bench                 # and a soak at half the peak rate
#	ROUNDS=3 DURATION=5 SCALING=0 make bench   # a quick look
#
# Targets, each started once on a free port and kept running:
#   constant      test/load/baseline: chi, a constant JSON body
#   incr          test/load/baseline --redis: chi, one Redis INCR per request
#   embedded      numberd, SQLite in a fresh directory, --lease-max $LEASE_MAX
#   distributed   numberd on a throwaway Redis + MariaDB (scripts/testenv.sh), --lease-max $LEASE_MAX
# (the INCR baseline and distributed numberd share the one throwaway Redis).
#
# Sections:
#   1. throughput: wrk -t$THREADS -c$CONNS -d${DURATION}s, POST with {"count":1}
#      (test/load/wrk/post.lua), every target once a round, the order rotating,
#      $ROUNDS rounds; medians of req/s and p99, ratios numberd/constant and
#      numberd/incr, the server's and wrk's CPU time per request (from /proc and
#      `times`), and the machine's idle and stolen CPU time (/proc/stat).
#   2. latency at a constant arrival rate of half numberd's median peak (each
#      mode its own), open loop (test/load/openloop), numberd and the constant
#      baseline alternately at the same rate, $LAT_ROUNDS × ${LAT_DURATION}s:
#      p50, p99 and the ratio of p99s.
#   3. batches of 1000: wrk with {"count":1000}; numbers/s = req/s × 1000.
#   4. scaling (SCALING=1): 1 pool vs $POOLS pools; count 1/100/1000; in
#      distributed mode 1 node vs 2 nodes on the same Redis and MariaDB.
#   5. soak (SOAK=5m, optional): open loop at half the peak of $SOAK_MODE for
#      the duration, sampling goroutines and RSS every 10 s, then the duplicate
#      check of every number received.
#
# Every request must succeed: a single error or non-2xx answer (an exhausted
# pool answers fast) fails the run, since it would make the figure a lie.
# Output: the tables on stdout and in .tmp/bench/summary.txt; every raw
# measurement in .tmp/bench/raw.tsv; the servers' logs beside them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/loadlib.sh
. scripts/loadlib.sh
ll_init bench

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-3}
MODES=${MODES:-embedded distributed}
LAT_ROUNDS=${LAT_ROUNDS:-3}
LAT_DURATION=${LAT_DURATION:-10}
BATCH_ROUNDS=${BATCH_ROUNDS:-3}
SCALING=${SCALING:-1}
SCALE_ROUNDS=${SCALE_ROUNDS:-3}
POOLS=${POOLS:-50}
SOAK=${SOAK:-}
SOAK_MODE=${SOAK_MODE:-distributed}
LEASE_MAX=${LEASE_MAX:-1000000}
read -r -a modes <<<"$MODES"
for m in "${modes[@]}"; do
	case $m in embedded | distributed) ;; *) ll_die "MODES: '$m' is neither embedded nor distributed" ;; esac
done
# Section 4's batch-size table takes its count-1000 column from section 3.
if [[ $SCALING == 1 ]] && ((BATCH_ROUNDS < 1)); then
	ll_die "SCALING=1 needs BATCH_ROUNDS ≥ 1 (section 4 uses section 3's batches of 1000)"
fi

summary=$LL_OUT/summary.txt
raw=$LL_OUT/raw.tsv
say() { printf '%s\n' "$*" | tee -a "$summary"; }
printf 'section\ttarget\tround\tkey=value…\n' >"$raw"

ll_need_wrk
ll_build
ll_services

declare -A url pid
ll_log "starting the targets"
ll_start constant / bin/baseline
url[constant]=http://127.0.0.1:$LL_PORT pid[constant]=$LL_PID
ll_start incr / bin/baseline --redis "$LL_REDIS_ADDR"
url[incr]=http://127.0.0.1:$LL_PORT pid[incr]=$LL_PID
redis_pid=$_ntenv_redis_pid

# setup_pools BASE creates the pools the sections use, each with one segment of
# 10^15 numbers (pools-NNN: 10^15 - 1) in a range of its own.
setup_pools() {
	local base=$1 k
	ll_pool "$base" bench 24000000000000000001 24001000000000000000
	ll_pool "$base" batch 25000000000000000001 25001000000000000000
	ll_pool "$base" soak 27000000000000000001 27001000000000000000
	for ((k = 0; k < POOLS; k++)); do
		ll_pool "$base" "$(printf 'pools-%03d' "$k")" "$(printf '26%03d%015d' "$k" 1)" "$(printf '26%03d%015d' "$k" 999999999999999)"
	done
}

for m in "${modes[@]}"; do
	ll_numberd "$m" "$m" --lease-max "$LEASE_MAX"
	url[$m]=http://127.0.0.1:$LL_PORT pid[$m]=$LL_PID
	setup_pools "${url[$m]}"
done

{
	echo "# numberd bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
	ll_machine
	echo "settings: wrk -t$THREADS -c$CONNS -d${DURATION}s × $ROUNDS rounds; numberd --lease-max $LEASE_MAX"
} | tee -a "$summary"

# cpu_ticks PID… prints the user + system clock ticks the processes have used.
cpu_ticks() {
	local p sum=0 stat
	for p in "$@"; do
		stat=$(<"/proc/$p/stat")
		stat=${stat##*) }
		read -r -a f <<<"$stat"
		# After the command: state is f[0]; utime and stime are fields 14 and 15.
		sum=$((sum + f[11] + f[12]))
	done
	printf '%s\n' "$sum"
}
TCK=$(getconf CLK_TCK)

# machine_ticks prints the machine's total, idle (with iowait) and stolen clock
# ticks from /proc/stat (guest time is inside user time already).
machine_ticks() {
	local f
	read -r -a f </proc/stat
	printf '%s %s %s\n' "$((f[1] + f[2] + f[3] + f[4] + f[5] + f[6] + f[7] + f[8]))" "$((f[4] + f[5]))" "${f[8]}"
}

# children_cpu sets CHILDREN_S to the CPU seconds (user + system) of this
# script's finished child processes so far: the difference around a wrk run is
# wrk's own. `times` must run in this shell, not in a command substitution.
children_cpu() {
	local line u s
	times >"$LL_TMP/times"
	line=$(tail -n 1 "$LL_TMP/times")
	read -r u s <<<"$line"
	CHILDREN_S=$(awk -v u="$u" -v s="$s" 'function sec(t, m) { m = t; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", t); sub(/s$/, "", t); return m * 60 + t } BEGIN { printf "%.3f", sec(u) + sec(s) }')
}

# The processes that serve a target: the server, and Redis where it uses it.
serving() {
	case $1 in
	incr | distributed*) printf '%s %s\n' "${pid[${2:-$1}]}" "$redis_pid" ;;
	*) printf '%s\n' "${pid[${2:-$1}]}" ;;
	esac
}

# wrk_run SECTION TARGET ROUND PATH [VAR=value…] runs wrk against the target,
# checks that no request failed, appends the result to raw.tsv and sets R (the
# RESULT line) and CPU_US (server CPU µs per request, Redis included).
wrk_run() {
	local section=$1 target=$2 round=$3 path=$4 out line t0 t1 reqs errs non2xx procs m0 m1 c0
	shift 4
	read -r -a procs <<<"$(serving "$target")"
	t0=$(cpu_ticks "${procs[@]}")
	read -r -a m0 <<<"$(machine_ticks)"
	children_cpu
	c0=$CHILDREN_S
	out=$(env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 5s -s test/load/wrk/post.lua "${url[$target]}$path" 2>&1) ||
		ll_die "wrk against $target failed: $out"
	t1=$(cpu_ticks "${procs[@]}")
	read -r -a m1 <<<"$(machine_ticks)"
	children_cpu
	line=$(grep '^RESULT ' <<<"$out") || ll_die "wrk printed no RESULT line: $out"
	reqs=$(ll_kv "$line" requests) errs=$(ll_kv "$line" errors) non2xx=$(ll_kv "$line" non2xx)
	if [[ $errs != 0 || $non2xx != 0 ]]; then
		printf '%s\n' "$out" >&2
		ll_die "$section/$target round $round: $errs socket errors, $non2xx answers with status ≥ 400 (see ${LL_OUT}/$target.log)"
	fi
	CPU_US=$(ll_calc "($t1 - $t0) * 1000000 / $TCK / $reqs" 1)
	R="${line#RESULT } cpu_us_per_req=$CPU_US wrk_us_per_req=$(ll_calc "($CHILDREN_S - $c0) * 1000000 / $reqs" 1)"
	R+=" idle_pct=$(ll_calc "100 * (${m1[1]} - ${m0[1]}) / (${m1[0]} - ${m0[0]})" 1) steal_pct=$(ll_calc "100 * (${m1[2]} - ${m0[2]}) / (${m1[0]} - ${m0[0]})" 1)"
	printf '%s\t%s\t%s\t%s\n' "$section" "$target" "$round" "$R" >>"$raw"
}

# warm TARGET PATH [VAR=value…]: a short unrecorded run.
warm() {
	local target=$1 path=$2
	shift 2
	env "$@" wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s test/load/wrk/post.lua "${url[$target]}$path" >/dev/null 2>&1 || true
}

# med SECTION TARGET KEY prints the median of KEY over raw.tsv's rows.
med() {
	local vals
	vals=$(awk -F'\t' -v s="$1" -v t="$2" -v k="$3" '$1 == s && $2 == t {
		n = split($4, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == k) print kv[2] } }' "$raw")
	# shellcheck disable=SC2086 # one value a word
	ll_median $vals
}

# ---------------------------------------------------------------- 1. throughput
targets=(constant incr "${modes[@]}")
n=${#targets[@]}
ll_log "1. throughput: ${targets[*]}, $ROUNDS rounds of ${DURATION}s"
for t in "${targets[@]}"; do warm "$t" /v1/pools/bench/numbers; done
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		t=${targets[(i + r - 1) % n]}
		wrk_run throughput "$t" "$r" /v1/pools/bench/numbers
		printf '  round %d %-12s %s\n' "$r" "$t" "$R" >&2
	done
done

declare -A rps p99
say ""
say "## 1. Throughput: single-number allocation, wrk -t$THREADS -c$CONNS, medians of $ROUNDS × ${DURATION}s"
say ""
say "| target | req/s | p50 ms | p99 ms | server CPU µs/req | wrk CPU µs/req | machine idle % | ÷ constant | ÷ INCR |"
say "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for t in "${targets[@]}"; do
	rps[$t]=$(med throughput "$t" rps)
	p99[$t]=$(med throughput "$t" p99_us)
done
for t in "${targets[@]}"; do
	p50=$(med throughput "$t" p50_us)
	cpu=$(med throughput "$t" cpu_us_per_req)
	rc=$(ll_calc "${rps[$t]} / ${rps[constant]}")
	ri=$(ll_calc "${rps[$t]} / ${rps[incr]}")
	say "| $t | $(ll_calc "${rps[$t]}" 0) | $(ll_calc "$p50 / 1000") | $(ll_calc "${p99[$t]} / 1000") | $cpu | $(med throughput "$t" wrk_us_per_req) | $(med throughput "$t" idle_pct) | $rc | $ri |"
done
for m in "${modes[@]}"; do
	if [[ $m == distributed ]]; then
		say "target 1 (distributed): ≥ 0.8 × constant and ≥ 1.5 × INCR: measured $(ll_calc "${rps[$m]} / ${rps[constant]}") × and $(ll_calc "${rps[$m]} / ${rps[incr]}") ×"
	else
		say "target 1 (embedded): ≥ 0.8 × constant: measured $(ll_calc "${rps[$m]} / ${rps[constant]}") ×"
	fi
done
say "(server CPU counts the server process, and Redis for incr and distributed; the machine's CPU time"
say "stolen by the hypervisor during the section's runs: median $(ll_median $(awk -F'\t' '$1 == "throughput" { n = split($4, f, " "); for (i = 1; i <= n; i++) if (f[i] ~ /^steal_pct=/) { sub(/^steal_pct=/, "", f[i]); print f[i] } }' "$raw")) %, per run in raw.tsv)"

# ------------------------------------------------------------------ 2. latency
ll_log "2. latency at half of numberd's peak, open loop, $LAT_ROUNDS × ${LAT_DURATION}s"
say ""
say "## 2. Latency at a constant arrival rate of half numberd's peak (openloop, $CONNS connections), medians of $LAT_ROUNDS × ${LAT_DURATION}s"
say ""
say "| mode | rate/s | numberd p50 ms | numberd p99 ms | constant p50 ms | constant p99 ms | p99 ratio |"
say "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for m in "${modes[@]}"; do
	rate=$(ll_calc "${rps[$m]} / 2" 0)
	sec=latency-$m
	for ((r = 1; r <= LAT_ROUNDS; r++)); do
		order=("$m" constant)
		((r % 2 == 0)) && order=(constant "$m")
		for t in "${order[@]}"; do
			out=$(bin/openloop -url "${url[$t]}/v1/pools/bench/numbers" -rate "$rate" -duration "${LAT_DURATION}s" -conns "$CONNS" 2>&1) ||
				{
					printf '%s\n' "$out" >&2
					ll_die "openloop against $t at $rate/s: a request failed"
				}
			line=$(grep '^RESULT ' <<<"$out")
			printf '%s\t%s\t%s\t%s\n' "$sec" "$t" "$r" "${line#RESULT }" >>"$raw"
			printf '  round %d %-12s %s\n' "$r" "$t" "${line#RESULT }" >&2
		done
	done
	np50=$(med "$sec" "$m" p50_us) np99=$(med "$sec" "$m" p99_us)
	cp50=$(med "$sec" constant p50_us) cp99=$(med "$sec" constant p99_us)
	say "| $m | $rate | $(ll_calc "$np50 / 1000" 3) | $(ll_calc "$np99 / 1000" 3) | $(ll_calc "$cp50 / 1000" 3) | $(ll_calc "$cp99 / 1000" 3) | $(ll_calc "$np99 / $cp99") |"
done
say "target 2: numberd p99 ≤ 1.5 × the constant baseline's p99 at the same rate"
say "(achieved rate and the pacer's lag per run are in raw.tsv: achieved=, lag_p99_us=)"

# ------------------------------------------------------------------ 3. batches
# BATCH_ROUNDS=0 leaves the section out (a quick look at sections 1 and 2).
if ((BATCH_ROUNDS > 0)); then
	ll_log "3. batches of 1000, $BATCH_ROUNDS rounds"
	for m in "${modes[@]}"; do warm "$m" /v1/pools/batch/numbers WRK_BODY='{"count":1000}'; done
	for ((r = 1; r <= BATCH_ROUNDS; r++)); do
		for m in "${modes[@]}"; do
			wrk_run batch1000 "$m" "$r" /v1/pools/batch/numbers WRK_BODY='{"count":1000}'
			printf '  round %d %-12s %s\n' "$r" "$m" "$R" >&2
		done
	done
	say ""
	say "## 3. Batches of 1000: wrk -t$THREADS -c$CONNS, medians of $BATCH_ROUNDS × ${DURATION}s"
	say ""
	say "| mode | req/s | numbers/s | p99 ms | server CPU µs/req |"
	say "| --- | ---: | ---: | ---: | ---: |"
	for m in "${modes[@]}"; do
		b=$(med batch1000 "$m" rps)
		say "| $m | $(ll_calc "$b" 0) | $(ll_calc "$b * 1000" 0) | $(ll_calc "$(med batch1000 "$m" p99_us) / 1000") | $(med batch1000 "$m" cpu_us_per_req) |"
	done
	say "target 3: ≥ 5 000 000 numbers/s from one node"
fi

# ------------------------------------------------------------------ 4. scaling
if [[ $SCALING == 1 ]]; then
	ll_log "4. scaling: pools, batch size, nodes; $SCALE_ROUNDS rounds"
	many=$(for ((k = 0; k < POOLS; k++)); do printf 'pools-%03d,' "$k"; done)
	many=${many%,}
	for ((r = 1; r <= SCALE_ROUNDS; r++)); do
		for m in "${modes[@]}"; do
			wrk_run pools1 "$m" "$r" /v1/pools/bench/numbers WRK_POOLS=bench
			printf '  round %d %-12s 1 pool    %s\n' "$r" "$m" "$R" >&2
			wrk_run "pools$POOLS" "$m" "$r" /v1/pools/bench/numbers WRK_POOLS="$many"
			printf '  round %d %-12s %d pools %s\n' "$r" "$m" "$POOLS" "$R" >&2
			wrk_run batch100 "$m" "$r" /v1/pools/batch/numbers WRK_BODY='{"count":100}'
			printf '  round %d %-12s count 100 %s\n' "$r" "$m" "$R" >&2
		done
	done
	say ""
	say "## 4. Scaling, medians of $SCALE_ROUNDS × ${DURATION}s (wrk -t$THREADS -c$CONNS)"
	say ""
	say "Pools (requests spread round-robin over the pools by the wrk script; 1 pool through the same script):"
	say ""
	say "| mode | 1 pool req/s | $POOLS pools req/s | ratio | CPU µs/req 1 → $POOLS |"
	say "| --- | ---: | ---: | ---: | ---: |"
	for m in "${modes[@]}"; do
		a=$(med pools1 "$m" rps) b=$(med "pools$POOLS" "$m" rps)
		say "| $m | $(ll_calc "$a" 0) | $(ll_calc "$b" 0) | $(ll_calc "$b / $a") | $(med pools1 "$m" cpu_us_per_req) → $(med "pools$POOLS" "$m" cpu_us_per_req) |"
	done
	say ""
	say "Batch size (count 1 from section 1, 1000 from section 3):"
	say ""
	say "| mode | count 1 numbers/s | count 100 numbers/s | count 1000 numbers/s | p99 ms 1 / 100 / 1000 |"
	say "| --- | ---: | ---: | ---: | ---: |"
	for m in "${modes[@]}"; do
		c100=$(med batch100 "$m" rps) c1000=$(med batch1000 "$m" rps)
		say "| $m | $(ll_calc "${rps[$m]}" 0) | $(ll_calc "$c100 * 100" 0) | $(ll_calc "$c1000 * 1000" 0) | $(ll_calc "${p99[$m]} / 1000") / $(ll_calc "$(med batch100 "$m" p99_us) / 1000") / $(ll_calc "$(med batch1000 "$m" p99_us) / 1000") |"
	done

	if [[ " ${modes[*]} " == *" distributed "* ]]; then
		ll_numberd distributed2 distributed --lease-max "$LEASE_MAX"
		url[distributed2]=http://127.0.0.1:$LL_PORT pid[distributed2]=$LL_PID
		# Two wrk processes of one thread and half the connections each:
		# both at node 1, or one at each node.
		half=$((CONNS / 2))
		nodes_run() {
			local label=$1 a=$2 b=$3 r=$4 o1 o2 l1 l2 t0 t1 procs s
			read -r -a procs <<<"${pid[distributed]} ${pid[distributed2]} $redis_pid"
			t0=$(cpu_ticks "${procs[@]}")
			wrk -t1 -c"$half" -d"${DURATION}s" --timeout 5s -s test/load/wrk/post.lua "${url[$a]}/v1/pools/bench/numbers" >"$LL_TMP/w1" 2>&1 &
			o1=$!
			wrk -t1 -c"$half" -d"${DURATION}s" --timeout 5s -s test/load/wrk/post.lua "${url[$b]}/v1/pools/bench/numbers" >"$LL_TMP/w2" 2>&1 &
			o2=$!
			wait "$o1" || ll_die "wrk failed: $(cat "$LL_TMP/w1")"
			wait "$o2" || ll_die "wrk failed: $(cat "$LL_TMP/w2")"
			t1=$(cpu_ticks "${procs[@]}")
			l1=$(grep '^RESULT ' "$LL_TMP/w1") l2=$(grep '^RESULT ' "$LL_TMP/w2")
			for s in "$l1" "$l2"; do
				[[ $(ll_kv "$s" errors) == 0 && $(ll_kv "$s" non2xx) == 0 ]] || ll_die "nodes/$label: requests failed: $s"
			done
			s=$(ll_calc "$(ll_kv "$l1" rps) + $(ll_kv "$l2" rps)" 1)
			R="rps=$s p99_us=$(ll_calc "($(ll_kv "$l1" p99_us) > $(ll_kv "$l2" p99_us)) ? $(ll_kv "$l1" p99_us) : $(ll_kv "$l2" p99_us)" 1) cpu_us_per_req=$(ll_calc "($t1 - $t0) * 1000000 / $TCK / ($(ll_kv "$l1" requests) + $(ll_kv "$l2" requests))" 1)"
			printf '%s\t%s\t%s\t%s\n' nodes "$label" "$r" "$R" >>"$raw"
			printf '  round %d %-12s %s\n' "$r" "$label" "$R" >&2
		}
		warm distributed2 /v1/pools/bench/numbers
		for ((r = 1; r <= SCALE_ROUNDS; r++)); do
			nodes_run 1node distributed distributed "$r"
			nodes_run 2nodes distributed distributed2 "$r"
		done
		say ""
		say "Nodes (distributed; two wrk -t1 -c$half, both at node 1 or one at each; all on the same 2 cores):"
		say ""
		say "| nodes | req/s (sum) | p99 ms (worse wrk) | CPU µs/req (numberd nodes + Redis) |"
		say "| --- | ---: | ---: | ---: |"
		for l in 1node 2nodes; do
			say "| ${l%node*} | $(ll_calc "$(med nodes "$l" rps)" 0) | $(ll_calc "$(med nodes "$l" p99_us) / 1000") | $(med nodes "$l" cpu_us_per_req) |"
		done
	fi
fi

# Group commit's yield over the whole run, from the distributed node's metrics.
if [[ -n ${url[distributed]:-} ]]; then
	metrics=$(curl -s "${url[distributed]}/metrics")
	allocs=$(awk '/^numberd_allocations_total/ { s += $NF } END { printf "%.0f", s }' <<<"$metrics")
	calls=$(awk '/^numberd_redis_calls_total/ && /allocate/ { s += $NF } END { printf "%.0f", s }' <<<"$metrics")
	if [[ ${calls:-0} != 0 ]]; then
		say ""
		say "distributed node 1 over the whole run: $allocs allocations in $calls Redis allocate calls: $(ll_calc "$allocs / $calls" 1) allocations per call"
		trip=$(awk '/^numberd_redis_round_trip_seconds_sum/ { s = $NF } /^numberd_redis_round_trip_seconds_count/ { n = $NF } END { if (n > 0) printf "%.1f", s / n * 1e6; else print "nan" }' <<<"$metrics")
		inside=nan
		if command -v redis-cli >/dev/null 2>&1; then
			inside=$(redis-cli -h "${LL_REDIS_ADDR%:*}" -p "${LL_REDIS_ADDR##*:}" info commandstats 2>/dev/null |
				sed -n 's/^cmdstat_evalsha:.*usec_per_call=\([0-9.]*\).*/\1/p')
		fi
		say "a round trip took $trip µs on average, sent to answered; Redis's own time for a script call (evalsha, all nodes and scripts): ${inside:-nan} µs"
	fi
fi

# --------------------------------------------------------------------- 5. soak
if [[ -n $SOAK ]]; then
	[[ -n ${url[$SOAK_MODE]:-} ]] || ll_die "SOAK_MODE=$SOAK_MODE was not measured (MODES=$MODES)"
	rate=$(ll_calc "${rps[$SOAK_MODE]} / 2" 0)
	ll_log "5. soak: $SOAK at $rate/s against $SOAK_MODE numberd, sampling every 10 s"
	soak_rc=0
	bin/openloop -url "${url[$SOAK_MODE]}/v1/pools/soak/numbers" -rate "$rate" -duration "$SOAK" -conns "$CONNS" \
		-record "$LL_OUT/soak.records" -metrics "${url[$SOAK_MODE]}/metrics" -pid "${pid[$SOAK_MODE]}" \
		-sample-every 10s | tee "$LL_OUT/soak.txt" || soak_rc=$?
	line=$(grep '^RESULT ' "$LL_OUT/soak.txt") || ll_die "the soak printed no result"
	dup_rc=0
	bin/dupcheck -url "${url[$SOAK_MODE]}" "$LL_OUT/soak.records" | tee "$LL_OUT/soak-dupcheck.txt" || dup_rc=$?
	say ""
	say "## 5. Soak: $SOAK at $rate/s (half the $SOAK_MODE peak), open loop, $CONNS connections"
	say ""
	say "| requests | errors | p50 ms | p99 ms | p99 ms of a 10-s window, median / worst | goroutines min–max | max RSS MB | duplicates | dupcheck |"
	say "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
	dups=$(sed -n 's/^dupcheck: \([0-9]*\) numbers received more than once.*/\1/p' "$LL_OUT/soak-dupcheck.txt")
	say "| $(ll_kv "$line" sent) | $(ll_kv "$line" errors) | $(ll_calc "$(ll_kv "$line" p50_us) / 1000" 3) | $(ll_calc "$(ll_kv "$line" p99_us) / 1000" 3) | $(ll_calc "$(ll_kv "$line" window_p99_median_us) / 1000" 3) / $(ll_calc "$(ll_kv "$line" window_p99_max_us) / 1000" 3) | $(ll_kv "$line" goroutines_min)–$(ll_kv "$line" goroutines_max) | $(ll_kv "$line" rss_max_mb) | ${dups:-?} | $([[ $dup_rc == 0 ]] && echo ok || echo FAIL) |"
	say "target 5: zero duplicates, flat goroutines, RSS < 150 MB (samples in $LL_OUT/soak.txt)"
	say "(the worst window: $(ll_kv "$line" worst_window_steal_pct) % of the machine's CPU time stolen by the hypervisor, $(ll_kv "$line" worst_window_idle_pct) % idle; every window's figures are in soak.txt)"
	((soak_rc == 0)) || ll_die "the soak had failed requests (see $LL_OUT/soak.txt)"
	((dup_rc == 0)) || ll_die "the soak's duplicate check failed (see $LL_OUT/soak-dupcheck.txt)"
fi

say ""
say "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "summary: $summary; raw measurements: $raw" >&2
