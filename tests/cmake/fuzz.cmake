# Fuzz harnesses (tests/fuzz/harness_<parser>.c, each an LLVMFuzzerTestOneInput) for every
# parser of untrusted input, with a seed corpus per parser in tests/fuzz/<parser>/ (it also
# holds every crashing input found so far).
#   always:        fuzz_<parser> = harness + tests/fuzz/fuzz_main.c; CTest fuzz.replay.<parser>
#                  (label unit) replays the corpus, so `make test` replays it under ASan+UBSan
#   -DVPD_FUZZ=ON with clang (CC=clang): fuzz_<parser>_libfuzzer, linked with -fsanitize=fuzzer
#   target `fuzz`: runs each harness for VPD_FUZZ_SECONDS (libFuzzer when built, else the
#                  mutation mode of fuzz_main.c), new inputs under <build>/fuzz-corpus/<parser>
set(VPD_FUZZ_PARSERS safetensors yaml_config model_config tokenizer tokens h5_model checkpoint hf_config hf_index split)
set(VPD_FUZZ_SECONDS 60 CACHE STRING "seconds per harness for the fuzz target")
set(VPD_FUZZ_DIR ${CMAKE_SOURCE_DIR}/tests/fuzz)
set(fuzz_cmds "")
foreach(p ${VPD_FUZZ_PARSERS})
  add_executable(fuzz_${p} ${VPD_FUZZ_DIR}/harness_${p}.c ${VPD_FUZZ_DIR}/fuzz_main.c)
  target_include_directories(fuzz_${p} PRIVATE ${VPD_FUZZ_DIR} ${CMAKE_SOURCE_DIR}/src)
  target_link_libraries(fuzz_${p} PRIVATE vpd)
  add_test(NAME fuzz.replay.${p} COMMAND fuzz_${p} replay ${VPD_FUZZ_DIR}/${p})
  set_tests_properties(fuzz.replay.${p} PROPERTIES LABELS unit TIMEOUT 300 ENVIRONMENT "${VPD_TEST_ENV}")
  if((p STREQUAL "h5_model" OR p STREQUAL "checkpoint") AND VPD_SANITIZE)
    # libhdf5 itself mallocs sizes read from a corrupt file (H5C_protect: 7e18 bytes); under
    # ASan that aborts, in production malloc returns NULL and HDF5 reports an error, which
    # is what vpd must then handle: let ASan return NULL too
    set_tests_properties(fuzz.replay.${p} PROPERTIES ENVIRONMENT
                         "${VPD_TEST_ENV};ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1")
  endif()
  file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz-corpus/${p})
  if(VPD_FUZZ AND CMAKE_C_COMPILER_ID MATCHES "Clang")
    add_executable(fuzz_${p}_libfuzzer ${VPD_FUZZ_DIR}/harness_${p}.c)
    target_include_directories(fuzz_${p}_libfuzzer PRIVATE ${VPD_FUZZ_DIR} ${CMAKE_SOURCE_DIR}/src)
    target_compile_options(fuzz_${p}_libfuzzer PRIVATE -fsanitize=fuzzer)
    target_link_options(fuzz_${p}_libfuzzer PRIVATE -fsanitize=fuzzer)
    target_link_libraries(fuzz_${p}_libfuzzer PRIVATE vpd)
    # one BLAS thread (a busy machine starves OpenBLAS's threads into libFuzzer timeouts); the
    # HDF5 harnesses let ASan return NULL for libhdf5's huge mallocs (see the replay above)
    set(fuzz_env OPENBLAS_NUM_THREADS=1)
    if(p STREQUAL "h5_model" OR p STREQUAL "checkpoint")
      list(APPEND fuzz_env ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1)
    endif()
    list(APPEND fuzz_cmds COMMAND ${CMAKE_COMMAND} -E env ${fuzz_env} $<TARGET_FILE:fuzz_${p}_libfuzzer> -max_total_time=${VPD_FUZZ_SECONDS}
         -timeout=10 -rss_limit_mb=4096 -artifact_prefix=${CMAKE_BINARY_DIR}/fuzz-corpus/crash-${p}-
         ${CMAKE_BINARY_DIR}/fuzz-corpus/${p} ${VPD_FUZZ_DIR}/${p})
  else()
    list(APPEND fuzz_cmds COMMAND $<TARGET_FILE:fuzz_${p}> mutate ${VPD_FUZZ_SECONDS} 1 ${VPD_FUZZ_DIR}/${p})
  endif()
endforeach()
if(VPD_FUZZ AND NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
  message(WARNING "VPD_FUZZ: libFuzzer needs clang (configure with CC=clang); the fuzz target uses the "
                  "mutation driver of tests/fuzz/fuzz_main.c instead")
endif()
add_custom_target(fuzz ${fuzz_cmds} WORKING_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz-corpus USES_TERMINAL
                  COMMENT "fuzzing each parser for ${VPD_FUZZ_SECONDS} s")
