#!/usr/bin/env bash
# Benchmark of `vpd attrib` on long prompts (issue 14): seconds and peak RSS for prompts of
# 128, 512 and 2048 tokens taken from the start of data/corpus/val.txt (tokenized with the
# target's tokenizer), on 1 and 2 ranks, split into CI + pruning time and edge time.
#
#   tools/bench_attrib.sh [RUN_DIR]          (default runs/lm_4L_128)
# Environment:
#   SIZES="128 512 2048"   prompt lengths        RANKS="1 2"     rank counts
#   PRUNE_STEPS=2000       pruning steps (PRUNE_STEPS_<S>, e.g. PRUNE_STEPS_2048=20, per size)
#   LIMIT=0                wall-clock limit per run in seconds (LIMIT_<S> per size; 0 = none).
#                          A run stopped by the limit is reported as such: its prune time (when
#                          pruning finished), the backward chunks done and the peak RSS so far
#                          (positions run from the last down, so the most keys — the largest
#                          per-chunk buffers — come first). Nothing is extrapolated.
#   MEMLIMIT=0             stop a run whose process passes this peak RSS in MiB (0 = none), reported
#                          as such like LIMIT (the graph of a long prompt can outgrow the machine:
#                          its k/v -> o links grow as S^2)
#   MAX_IN_LINKS=512       vpd attrib --max-in-links (every node keeps its K in-links of largest
#                          |weight|; 0 = all): the column "dropped" gives the links it dropped and
#                          their share of the total |weight|
#   VPD=build/bin/vpd  TEXT=data/corpus/val.txt  OUT=/tmp/vpd_bench_attrib.XXXX  PRIORITY=1
# Every run: vpd attrib --max-context <largest S> --mem-budget 2048 (MiB) --attention auto,
# OPENBLAS_NUM_THREADS=1 (the ranks are the parallelism). With PRIORITY=1 each run gets the
# machine's priority (autogroup nice -19, as MACHINE.md says for benchmarks). Outputs go to OUT
# (the run directory is only read). Peak RSS: the largest VmHWM of the run's vpd processes
# (sampled every 0.5 s; for 2 ranks one rank's peak) or /usr/bin/time -v's, whichever is larger.
set -u
cd "$(dirname "$0")/.." || exit 1
RUN=${1:-runs/lm_4L_128}
VPD=${VPD:-build/bin/vpd}
TEXT=${TEXT:-data/corpus/val.txt}
SIZES=${SIZES:-"128 512 2048"}
RANKS=${RANKS:-"1 2"}
PRIORITY=${PRIORITY:-1}
MEMLIMIT=${MEMLIMIT:-0}
MAX_IN_LINKS=${MAX_IN_LINKS:-512}
VNAME=$(basename "$VPD" | cut -c1-15) # the processes' comm (15 characters at most)
OUT=${OUT:-$(mktemp -d /tmp/vpd_bench_attrib.XXXX)}
mkdir -p "$OUT"
[ -x "$VPD" ] || { echo "bench_attrib: $VPD not built (cmake --build build)"; exit 1; }
[ -f "$RUN/run.h5" ] || { echo "bench_attrib: $RUN/run.h5 not found: give a finished run directory"; exit 1; }
[ -f "$TEXT" ] || { echo "bench_attrib: $TEXT not found (TEXT=...)"; exit 1; }
[ -x /usr/bin/time ] || { echo "bench_attrib: /usr/bin/time (GNU time) is needed for the peak RSS"; exit 1; }
TARGET=$(h5dump -a /config/yaml "$RUN/run.h5" 2>/dev/null | sed -n 's/.*path: *\([^ ]*\).*/\1/p' | head -1)
TOK=${TOKENIZER:-}
for cand in "$TOK" "$RUN/../../models/$(basename "$RUN")/tokenizer.json" "models/$(basename "$RUN")/tokenizer.json" \
            "$TARGET/tokenizer.json"; do
    [ -n "$cand" ] && [ -f "$cand" ] && { TOK=$cand; break; }
done
[ -f "$TOK" ] || { echo "bench_attrib: no tokenizer.json found: set TOKENIZER=..."; exit 1; }

echo "== vpd attrib benchmark: $RUN"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(nproc) cores"
echo "ISA: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(sse4_2|avx|avx2|fma|avx512f|avx512bw|avx512_bf16|amx_tile)$' | tr '\n' ' ')"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(git rev-parse --short HEAD 2>/dev/null) $(date -u +%FT%TZ)"
"$VPD" tokenize --tokenizer "$TOK" "$TEXT" --out "$OUT/text.bin" --dtype uint32 >/dev/null 2>&1 ||
    { echo "bench_attrib: tokenizing $TEXT failed"; exit 1; }
MAXS=0
for S in $SIZES; do [ "$S" -gt "$MAXS" ] && MAXS=$S; done
MPI=(mpiexec --allow-run-as-root --oversubscribe -n)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

descendants() { # every process below $1 (setsid may fork, mpiexec starts the ranks)
    local k
    for k in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        echo "$k"
        descendants "$k"
    done
}

rows=()
for S in $SIZES; do
    ids=$(od -An -tu4 -v -N $((4 * S)) "$OUT/text.bin" | tr -s ' \n' ',' | sed 's/^,//;s/,$//')
    n=$(echo "$ids" | tr ',' '\n' | grep -c .)
    [ "$n" -eq "$S" ] || { echo "bench_attrib: $TEXT has only $n tokens (< $S)"; exit 1; }
    pv=PRUNE_STEPS_$S; P=${!pv:-${PRUNE_STEPS:-2000}}
    lv=LIMIT_$S; LIM=${!lv:-${LIMIT:-0}}
    for R in $RANKS; do
        tag="s${S}_r${R}"
        launch=()
        [ "$R" -gt 1 ] && launch=("${MPI[@]}" "$R")
        lim=()
        [ "$LIM" -gt 0 ] && lim=(timeout --signal=TERM "$LIM")
        cmd=(/usr/bin/time -v "${lim[@]}" "${launch[@]}" "$VPD" attrib "$RUN" --token-ids "$ids" --max-context "$MAXS"
             --prune-steps "$P" --mem-budget 2048 --max-in-links "$MAX_IN_LINKS" --out "$OUT/$tag.json" --force)
        echo "-- S=$S ranks=$R prune steps=$P in-link cap=$MAX_IN_LINKS limit=${LIM}s"
        t0=$(date +%s.%N)
        # the run in its own session; its processes' VmHWM (peak RSS) sampled every 0.5 s, so
        # a run stopped by the limit still has its peak so far
        if [ "$PRIORITY" = 1 ]; then
            # the priority inside the new session: setsid starts a new autogroup (nice 0)
            setsid -w bash -c 'echo -19 > /proc/self/autogroup 2>/dev/null; exec "$@"' _ "${cmd[@]}" >"$OUT/$tag.out" 2>&1 &
        else
            setsid -w "${cmd[@]}" >"$OUT/$tag.out" 2>&1 &
        fi
        pid=$!
        hwm=0
        memstop=0
        while kill -0 "$pid" 2>/dev/null; do
            for p in $(descendants "$pid"); do
                [ "$(cat /proc/$p/comm 2>/dev/null)" = "$VNAME" ] || continue
                k=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$p/status 2>/dev/null)
                [ -n "$k" ] && [ "$k" -gt "$hwm" ] && hwm=$k
            done
            if [ "$MEMLIMIT" -gt 0 ] && [ "$hwm" -gt $((MEMLIMIT * 1024)) ] && [ $memstop = 0 ]; then
                memstop=1 # the run's own session (setsid): its process group, nothing else
                kill -TERM -- -"$pid" 2>/dev/null
            fi
            sleep 0.5
        done
        wait "$pid"
        rc=$?
        wall=$(echo "$(date +%s.%N) - $t0" | bc)
        grep -E '^(pruned|pruning|graph|attrib|batch|in-link cap [0-9]*):|\[vpd\] (attrib|prompt-ci):' "$OUT/$tag.out" | tail -6 | sed 's/^/   /'
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): *//p' "$OUT/$tag.out")
        [ -n "$rss" ] && [ "$rss" -gt "$hwm" ] && hwm=$rss
        rss_mib=$(echo "scale=0; $hwm / 1024" | bc)
        line=$(grep '^attrib: ' "$OUT/$tag.out" | tail -1)
        alive=$(sed -n 's/^pruned: \([0-9]*\) of \([0-9]*\) nodes.*/\2/p' "$OUT/$tag.out")
        kept=$(sed -n 's/^pruned: \([0-9]*\) of.*/\1/p' "$OUT/$tag.out")
        tprune=$(sed -n 's/^pruned: .*(\([0-9.]*\) s since.*/\1/p' "$OUT/$tag.out")
        if [ -n "$line" ] && [ $rc -eq 0 ]; then
            tp=$(echo "$line" | sed -n 's/.*CI + pruning \([0-9.]*\) s.*/\1/p')
            te=$(echo "$line" | sed -n 's/.*edges \([0-9.]*\) s.*/\1/p')
            links=$(sed -n 's/^graph: .* nodes (.*), \([0-9]*\) links.*/\1/p' "$OUT/$tag.out")
            dropped=$(sed -n 's/^in-link cap [0-9]*: \([0-9]*\) links dropped (\([0-9.e+-]*\) %.*/\1 (\2 % of the weight)/p' "$OUT/$tag.out")
            status="done"
        else
            tp=${tprune:--}
            te="-"
            links="-"
            dropped="-"
            prog=$(grep '\[vpd\] attrib: ' "$OUT/$tag.out" | tail -1 | sed -n 's/.*attrib: \([0-9]*\) of ~\([0-9]*\) backward chunks.*/\1\/\2 chunks/p')
            if [ $memstop = 1 ]; then
                status="stopped at the ${MEMLIMIT} MiB memory limit${prog:+ ($prog on rank 0)}"
            elif [ "$rc" -eq 124 ] || grep -q 'Command exited with non-zero status 124' "$OUT/$tag.out"; then
                status="stopped at ${LIM}s limit${prog:+ ($prog on rank 0)}"
            else
                status="failed rc=$rc (see $OUT/$tag.out)"
            fi
        fi
        rows+=("$(printf '| %5s | %5s | %5s | %6s | %6s | %9s | %s | %8s | %8s | %8s | %9s | %s |' "$S" "$R" "$P" "${alive:--}" \
                  "${kept:--}" "$links" "${dropped:-0}" "$tp" "$te" "$(printf '%.0f' "$wall")" "$rss_mib" "$status")")
    done
done
echo
echo "| S     | ranks | prune steps | alive | pruned nodes | links | dropped | CI+prune s | edges s | wall s | peak RSS MiB | status |"
echo "|-------|-------|-------|--------|--------|-----------|------|----------|----------|----------|-----------|--------|"
for r in "${rows[@]}"; do echo "$r"; done
echo "(outputs in $OUT)"
