#!/bin/sh
# The architecture rule of include/vpd/comm.h: src/dist/ is the only place that calls MPI.
# Fails, naming every offending line, when a file under src/ or include/ outside src/dist/
# calls an MPI function (MPI_Comm, MPI_COMM_WORLD etc. as handle types and constants are fine).
# usage: no_mpi_outside_dist.sh SOURCE_DIR
set -u
root=${1:?usage: no_mpi_outside_dist.sh SOURCE_DIR}
cd "$root" || exit 2
# No exceptions: io/ writes and reads tables of named tensors through comm.h and HDF5's MPI-IO.
allow=''
hits=$(grep -rnE 'MPI_[A-Z][a-z_]*[[:space:]]*\(' src include --include='*.c' --include='*.h' | grep -v '^src/dist/')
bad=$(printf '%s\n' "$hits" | while IFS= read -r line; do
    [ -n "$line" ] || continue
    file=${line%%:*}
    if ! printf '%s\n' "$allow" | grep -qxF "$file"; then printf '%s\n' "$line"; fi
done)
n_files=$(find src include -name '*.c' -o -name '*.h' | grep -vc '^src/dist/')
if [ -n "$bad" ]; then
    echo "MPI called outside src/dist/ (use include/vpd/comm.h: vpd_dp_mean, vpd_sum_*, vpd_all_agree, vpd_bcast, ...):" >&2
    printf '%s\n' "$bad" >&2
    exit 1
fi
echo "no MPI calls outside src/dist/ in $n_files files"
