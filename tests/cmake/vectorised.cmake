# unit.vectorised: every hot element-wise loop marked `/* vectorised: NAME */` in src/ is
# vectorised by gcc for x86-64-v3 (AVX2, e.g. Zen 3) and x86-64-v4 (AVX-512, e.g. Zen 4) with
# the project's flags (VPD_VEC_FLAGS). gcc on x86-64 only.
if(CMAKE_C_COMPILER_ID STREQUAL "GNU" AND CMAKE_C_COMPILER_VERSION VERSION_GREATER_EQUAL 11
   AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  add_test(NAME unit.vectorised
           COMMAND ${CMAKE_COMMAND} -DCC=${CMAKE_C_COMPILER} -DSRC=${CMAKE_SOURCE_DIR} "-DFLAGS=${VPD_VEC_FLAGS}"
                   "-DINCS=${MPI_C_INCLUDE_DIRS}" -P ${CMAKE_SOURCE_DIR}/tests/vectorised/check.cmake)
  set_tests_properties(unit.vectorised PROPERTIES LABELS unit TIMEOUT 300)
endif()
