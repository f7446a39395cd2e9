# Distributed linear algebra (src/dist/scalapack.c; label: mpi): Δ = W − (VU)ᵀ, Gram matrices and
# the SVD initialisation from contiguous component shards, against the serial result on every
# dp × cp grid of 1, 2 and 4 ranks (4 oversubscribed through VPD_TEST_ENV). The test program is
# built in float (libvpd, PSGEMM/PSGESVD, tolerance 1e-5) and double (libvpd64, 1e-10).
# Also builds tools/dev/bench_dist.c (communication volume per step of the data-parallel trainer).
foreach(flavour vpd vpd64)
  if(flavour STREQUAL "vpd")
    set(tname test_dist)
  else()
    set(tname test_dist64)
  endif()
  add_executable(${tname} ${CMAKE_SOURCE_DIR}/tests/dist/test_dist.c)
  target_include_directories(${tname} PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(${tname} PRIVATE ${flavour})
  foreach(np 1 2 4)
    add_test(NAME dist.${tname}_np${np}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:${tname}>)
    set_tests_properties(dist.${tname}_np${np} PROPERTIES LABELS "mpi;dist" TIMEOUT 60 PROCESSORS ${np}
                         ENVIRONMENT "${VPD_TEST_ENV}")
  endforeach()
endforeach()

if(EXISTS ${CMAKE_SOURCE_DIR}/tools/dev/bench_dist.c)
  add_executable(bench_dist ${CMAKE_SOURCE_DIR}/tools/dev/bench_dist.c)
  target_include_directories(bench_dist PRIVATE ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(bench_dist PRIVATE vpd)
  # the meter: vpd_trainer_step (called from run.c) goes through bench_dist's wrapper
  target_link_options(bench_dist PRIVATE -Wl,--wrap=vpd_trainer_step)
  set_target_properties(bench_dist PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
endif()

# The meter itself: 2 ranks on the all-losses TMS config must report every allreduce kind
# the trainer sends (component, CI, PPGD and PGD shared sources, IM sums, metrics).
if(TARGET bench_dist)
  add_test(NAME dist.bench_smoke
           COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV}
                   sh -c "out=$(${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 $<TARGET_FILE:bench_dist> ${CMAKE_SOURCE_DIR}/tests/configs/tms_all_losses.yaml --set steps=5 --force --out runs/bench_smoke --quiet 2>&1); rc=$?; echo \"$out\" | tail -12; [ $rc -eq 0 ] && for k in 'component gradients' 'CI-function gradients' 'PPGD shared-source' 'PGD shared sources' 'importance-minimality' 'metrics'; do echo \"$out\" | grep -q \"$k\" || exit 1; done"
           WORKING_DIRECTORY ${VPD_FIXTURES})
  set_tests_properties(dist.bench_smoke PROPERTIES LABELS "mpi;dist" TIMEOUT 120 PROCESSORS 2
                       FIXTURES_REQUIRED tms52)
endif()

# vpd_gather_bytes in rounds (src/dist/comm.c): many small rounds (a test-only round size), partial
# last rounds and every root, on 1, 2 and 3 ranks, byte for byte.
add_executable(test_comm_gather ${CMAKE_SOURCE_DIR}/tests/dist/test_comm_gather.c)
target_include_directories(test_comm_gather PRIVATE ${CMAKE_SOURCE_DIR}/tests ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(test_comm_gather PRIVATE vpd)
foreach(np 1 2 3)
  add_test(NAME dist.test_comm_gather_np${np}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${np} ${MPIEXEC_PREFLAGS} $<TARGET_FILE:test_comm_gather>)
  set_tests_properties(dist.test_comm_gather_np${np} PROPERTIES LABELS "mpi;dist;unit" TIMEOUT 60 PROCESSORS ${np}
                       ENVIRONMENT "${VPD_TEST_ENV}")
endforeach()
