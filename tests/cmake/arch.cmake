# Architecture rules (docs/architecture.md): checks over the source tree, no build needed.
#   arch.no_mpi_outside_dist   only src/dist/ calls MPI functions (include/vpd/comm.h)
add_test(NAME arch.no_mpi_outside_dist
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/arch/no_mpi_outside_dist.sh ${CMAKE_SOURCE_DIR})
set_tests_properties(arch.no_mpi_outside_dist PROPERTIES LABELS unit TIMEOUT 60)
