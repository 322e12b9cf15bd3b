#!/usr/bin/env bash
# loadtest.sh is `make loadtest`: the k6 scenarios of test/load/k6 against a
# throwaway numberd, then the duplicate check.
#
#	make loadtest                                   # every scenario, short, embedded mode
#	MODE=distributed make loadtest                  # throwaway Redis + MariaDB (scripts/testenv.sh)
#	SCENARIO=mixed DURATION=1m make loadtest        # one scenario (single, batch, pools, mixed), longer
#	SCENARIO='single pools' RATE=3000 make loadtest # RATE, VUS, P99_MS, POOLS, RATE_100, … go to k6 as -e
#
# What it does: builds numberd, dupcheck and the pinned k6 (go install
# go.k6.io/k6@$LL_K6_VERSION into ./bin, from source), starts numberd on a free
# port with a fresh data directory (embedded) or a fresh Redis and MariaDB
# (distributed), runs each scenario (k6 creates its pools and loads their
# segments in setup()), prints k6's summary, then runs test/load/dupcheck over
# every number k6 received: no number twice, none outside its pool's segments or
# inside a retired gap, and as many received as numberd counts issued. Finally it
# stops numberd with SIGTERM and expects exit status 0.
#
# Any failure — a k6 threshold, a check, the duplicate checker, numberd dying or
# not stopping cleanly — fails the run (exit 1) and says which. Artefacts (k6
# summaries as JSON, the record files, numberd's log) stay in .tmp/loadtest.
#
# Environment: MODE (embedded), SCENARIO (all), DURATION (15s), LEASE_MAX
# (numberd's default), K6_FLAGS (extra k6 run flags), and any k6 -e variable
# the scenarios read (see test/load/k6/lib.js).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/loadlib.sh
. scripts/loadlib.sh
ll_init loadtest

MODE=${MODE:-embedded}
SCENARIO=${SCENARIO:-all}
DURATION=${DURATION:-15s}
[[ $SCENARIO == all ]] && SCENARIO='single batch pools mixed'
read -r -a scenarios <<<"$SCENARIO"
for s in "${scenarios[@]}"; do
	[[ -f test/load/k6/$s.js ]] || ll_die "no scenario '$s' (test/load/k6/$s.js); choose among: single batch pools mixed"
done
case $MODE in embedded | distributed) ;; *) ll_die "MODE must be embedded or distributed, not '$MODE'" ;; esac

ll_build
ll_k6
[[ $MODE == distributed ]] && ll_services

numberd_flags=()
[[ -n ${LEASE_MAX:-} ]] && numberd_flags+=(--lease-max "$LEASE_MAX")
ll_log "numberd ($MODE mode)"
ll_numberd numberd "$MODE" "${numberd_flags[@]}"
base=http://127.0.0.1:$LL_PORT
numberd_pid=$LL_PID
ll_log "numberd listens on $base (pid $numberd_pid)"

# The k6 -e variables: the scenarios' knobs, passed on when set.
k6env=(-e "BASE_URL=$base" -e "RUN=lt$$" -e "DURATION=$DURATION")
[[ -n ${NUMBERD_TOKEN:-} ]] && k6env+=(-e "TOKEN=$NUMBERD_TOKEN")
for v in RATE VUS MAX_VUS P99_MS POOLS RATE_100 RATE_1000 P99_MS_100 P99_MS_1000; do
	[[ -n ${!v:-} ]] && k6env+=(-e "$v=${!v}")
done
read -r -a k6flags <<<"${K6_FLAGS:-}"

declare -A verdict
failed=0
records=()
for s in "${scenarios[@]}"; do
	ll_log "k6 run test/load/k6/$s.js ($DURATION, $MODE)"
	rc=0
	bin/k6 run --no-color --quiet "${k6env[@]}" \
		--log-output="file=$LL_OUT/$s.records" --log-format=raw \
		--summary-export="$LL_OUT/$s.summary.json" "${k6flags[@]}" \
		"test/load/k6/$s.js" || rc=$?
	records+=("$LL_OUT/$s.records")
	# k6's own warnings and errors land in the same file as the records.
	if grep -v $'^N\t' "$LL_OUT/$s.records" | grep -q .; then
		echo "--- k6 log of $s (besides the records) ---"
		grep -v $'^N\t' "$LL_OUT/$s.records" | head -n 40
		echo "---"
	fi
	case $rc in
	0) verdict[$s]=ok ;;
	99) verdict[$s]="FAIL: thresholds crossed (k6 exit 99)" failed=1 ;;
	*) verdict[$s]="FAIL: k6 exit $rc" failed=1 ;;
	esac
	ll_alive "$numberd_pid" || {
		tail -n 40 "$LL_OUT/numberd.log" >&2
		ll_die "numberd died during scenario $s (log: $LL_OUT/numberd.log)"
	}
done

ll_log "duplicate check: test/load/dupcheck"
dup_rc=0
bin/dupcheck -url "$base" -global "${records[@]}" || dup_rc=$?

ll_log "stopping numberd (SIGTERM)"
ll_stop "$numberd_pid"
stop_rc=$LL_RC

echo
echo "loadtest ($MODE mode, $DURATION a scenario):"
for s in "${scenarios[@]}"; do
	printf '  %-8s %s\n' "$s" "${verdict[$s]}"
done
if ((dup_rc == 0)); then
	printf '  %-8s %s\n' dupcheck ok
else
	printf '  %-8s %s\n' dupcheck "FAIL (exit $dup_rc)"
	failed=1
fi
if [[ $stop_rc == 0 ]]; then
	printf '  %-8s %s\n' shutdown "ok (exit 0 on SIGTERM)"
else
	printf '  %-8s %s\n' shutdown "FAIL: numberd exited $stop_rc on SIGTERM"
	failed=1
fi
echo "artefacts: $LL_OUT"
if ((failed)); then
	echo "loadtest: FAIL"
	exit 1
fi
echo "loadtest: ok"
