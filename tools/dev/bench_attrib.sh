#!/bin/sh
# Benchmark of `vpd attrib` (seconds and peak RSS) on prompts of N tokens taken from a token
# file, on 1 and 2 ranks. Usage:
#   tools/dev/bench_attrib.sh RUN_DIR TOKENS.bin "16 32 64 128" [RANKS...]
# e.g. tools/dev/bench_attrib.sh /work/main/runs/lm_4L_128_400 /work/main/data/corpus/val.bin "16 32 64 128" 1 2
# Prompts are the first N tokens of the file (uint16 .bin); the position is the last one, the
# target token the model's top prediction. A length beyond the model's n_ctx is reported as
# the command's one-line refusal, not measured. Output files go to a temporary directory.
set -e
VPD=${VPD:-$(dirname "$0")/../../build/bin/vpd}
RUN=$1; TOK=$2; LENS=$3; shift 3
RANKS=${*:-1}
OUT=$(mktemp -d /tmp/bench_attrib.XXXXXX)
printf "%6s %5s %8s %8s %10s %10s %12s\n" tokens ranks nodes links chunks seconds "peakRSS_MiB"
for n in $LENS; do
  ids=$(/usr/bin/python3 -c "import numpy as np,sys; print(','.join(map(str, np.fromfile(sys.argv[1], '<u2', count=int(sys.argv[2])))))" "$TOK" "$n")
  for r in $RANKS; do
    if [ "$r" = 1 ]; then run="$VPD"; else run="mpiexec --allow-run-as-root --oversubscribe -n $r $VPD"; fi
    if ! OPENBLAS_NUM_THREADS=1 $run attrib "$RUN" --token-ids "$ids" --out "$OUT/g_${n}_$r.json" --force > "$OUT/log_${n}_$r.txt" 2>&1; then
      printf "%6s %5s  refused: %s\n" "$n" "$r" "$(grep 'vpd attrib' "$OUT/log_${n}_$r.txt" | head -1)"
      continue
    fi
    /usr/bin/python3 - "$OUT/g_${n}_$r.json" "$OUT/log_${n}_$r.txt" "$n" "$r" <<'PY'
import json, re, sys
i = json.load(open(sys.argv[1]))['metadata']['info']
log = open(sys.argv[2]).read()
rss = re.search(r'peak RSS ([0-9.]+) MiB', log).group(1)
print("%6s %5s %8d %8d %10d %10.2f %12s" % (sys.argv[3], sys.argv[4], i['n_nodes_full'], i['n_links_full'],
                                             i['backward_chunks'], i['seconds'], rss))
PY
  done
done
rm -rf "$OUT"
