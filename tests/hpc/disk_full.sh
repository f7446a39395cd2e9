#!/usr/bin/env bash
# A disk filling up during a checkpoint write (issue 17, item 3): the write fails with a message
# naming the file, and the job ends with a plain non-zero status. Before: the message, then a
# segfault (status 139) inside MPI_Finalize, where libhdf5's clean-up closes the file its failed
# H5Fclose left half-open (H5F__close_cb). The full disk is a 64 KiB tmpfs (a checkpoint of this
# config is 130 KiB): needs root (mount); otherwise the test is skipped (status 77).
# usage: disk_full.sh VPD PY TOOLS CFG
source "$(dirname "$0")/common.sh"
M=$(mktemp -d /tmp/vpd-diskfull-XXXXXX)
mount -t tmpfs -o size=64k tmpfs "$M" 2>/dev/null || { rmdir "$M"; echo "SKIP: cannot mount a tmpfs (needs root)"; exit 77; }
trap 'umount "$M"; rmdir "$M"' EXIT
for launch in "$VPD" "$MPIEXEC -n 2 $VPD"; do
  name=$( [ "$launch" = "$VPD" ] && echo np1 || echo np2 )
  B=runs/hpc_full_$name; rm -rf $B "$M/ck"
  run full_$name $launch decompose "$CFG" --out $B --quiet --set steps=30 --set checkpoint.dir=$M/ck --set checkpoint.every_steps=10
  rc=$?
  echo "$name: exit status $rc"
  grep -q "closing HDF5 file .*ckpt-00000010.h5.tmp' failed\|No space left" hpc_full_$name.log || fail "$name: no message naming the failed write"
  grep -qi "segmentation fault\|Signal: Segmentation" hpc_full_$name.log && fail "$name: a segfault after the failed write"
  [ $rc -ne 0 ] && [ $rc -lt 128 ] || fail "$name: exit status $rc (expected a plain failure, not 0 and not a signal)"
  ls "$M/ck"/ckpt-*.h5 > /dev/null 2>&1 && fail "$name: an incomplete checkpoint was renamed into place"
done
echo "PASS: disk_full"
