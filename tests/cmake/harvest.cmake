# vpd harvest (labels: lm / decompose, mpi, python): the lm_tiny decomposition of lm.cmake
# (its run.h5 copied into a directory of our own, so the lm tests' run stays untouched) and
# a short TMS 5-2 decomposition are harvested on 1 and 2 ranks; the two files must hold
# identical datasets; tools/reference/check_harvest.py recomputes with numpy a_c of the embedding,
# the logit lens, head shares, the q/k interaction under RoPE, contexts against the token
# file, the toy CI of every recorded example, and with PyTorch (--recompute: the project's
# reference target and CI transformer in float64) the densities, mean g and top examples of
# the LM harvest; the rest is checked for consistency. Bad input: one-line errors.
set(HV_DIR ${VPD_FIXTURES}/harvest)
file(MAKE_DIRECTORY ${HV_DIR})
set(HV_MPIEXEC ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
string(JOIN " " HV_MPIEXEC_STR ${HV_MPIEXEC})
set(HV_CHECK ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/check_harvest.py)
string(JOIN " " HV_CHECK_STR ${HV_CHECK})

# ---- language model ----
add_test(NAME harvest.lm_setup COMMAND sh -c
         "rm -rf ${HV_DIR}/lm && mkdir -p ${HV_DIR}/lm && cp ${VPD_FIXTURES}/lm/run_np1/run.h5 ${HV_DIR}/lm/")
set_tests_properties(harvest.lm_setup PROPERTIES FIXTURES_REQUIRED lm_runs FIXTURES_SETUP hv_lm LABELS "lm;fixture"
                     RESOURCE_LOCK lm_run_np1)
# 8000 tokens = 250 windows of 32 in 63 batches of 4 (the last one partial)
set(HV_LM_ARGS --n-tokens 8000 --batch 4 --quiet)
string(JOIN " " HV_LM_ARGS_STR ${HV_LM_ARGS})
add_test(NAME harvest.lm_1rank_2ranks COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${HV_DIR}/lm; rm -f harvest.h5 np1.h5
          ${VPD_CLI} harvest . ${HV_LM_ARGS_STR} > out1.txt 2>&1; cat out1.txt; mv harvest.h5 np1.h5
          grep -q 'tokens/s on 1 rank; peak RSS' out1.txt
          ${HV_MPIEXEC_STR} 2 ${VPD_CLI} harvest . ${HV_LM_ARGS_STR} > out2.txt 2>&1; cat out2.txt
          grep -q 'tokens/s on 2 ranks; peak RSS' out2.txt
          ${HV_CHECK_STR} . --compare np1.h5")
set_tests_properties(harvest.lm_1rank_2ranks PROPERTIES FIXTURES_REQUIRED hv_lm FIXTURES_SETUP hv_lm_done
                     LABELS "lm;mpi;python" TIMEOUT 300 PROCESSORS 2)
add_test(NAME harvest.lm_check COMMAND sh -c "${HV_CHECK_STR} ${HV_DIR}/lm && ${HV_CHECK_STR} ${HV_DIR}/lm --recompute")
set_tests_properties(harvest.lm_check PROPERTIES FIXTURES_REQUIRED hv_lm_done LABELS "lm;python" TIMEOUT 300)

# ---- toy model (TMS 5-2): per-feature tables from the data generator ----
add_test(NAME harvest.toy_setup COMMAND ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/tms_5-2.yaml --set steps=300
         --set target.path=models/tms_5-2 --force --out ${HV_DIR}/tms --quiet WORKING_DIRECTORY ${VPD_FIXTURES})
set_tests_properties(harvest.toy_setup PROPERTIES FIXTURES_REQUIRED tms52 FIXTURES_SETUP hv_tms LABELS "decompose;fixture"
                     ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 300)
add_test(NAME harvest.toy_1rank_2ranks COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${HV_DIR}/tms; rm -f harvest.h5 np1.h5
          ${VPD_CLI} harvest . --n-tokens 30000 --batch 1000 --quiet; mv harvest.h5 np1.h5
          ${HV_MPIEXEC_STR} 2 ${VPD_CLI} harvest . --n-tokens 30000 --batch 1000 --quiet
          ${HV_CHECK_STR} . --compare np1.h5 && ${HV_CHECK_STR} .
          ${VPD_PYTHON} -c \"import h5py; f = h5py.File('harvest.h5'); L = f['layers/linear1']; assert f['feature_count'][()].sum() > 0; assert L['features/recall'].shape == (L.attrs['C'], 5); assert L['count_fire'][()].sum() > 0; print('toy harvest ok')\"")
set_tests_properties(harvest.toy_1rank_2ranks PROPERTIES FIXTURES_REQUIRED hv_tms LABELS "decompose;mpi;python"
                     TIMEOUT 300 PROCESSORS 2)

# ---- bad input: one line naming the file; nothing overwritten ----
file(WRITE ${HV_DIR}/bad_tokens.py "import numpy as np, sys
np.full(4000, 300, '<u2').tofile(sys.argv[1])
")
function(hv_expect_fail name pattern cmd)
  add_test(NAME harvest.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "cd ${HV_DIR}; if ${cmd} > ${name}.out 2> ${name}.err; then echo 'unexpected success'; exit 1; fi; cat ${name}.err; grep -q \"${pattern}\" ${name}.err")
  set_tests_properties(harvest.${name} PROPERTIES LABELS "lm;cli" TIMEOUT 120 ${ARGN})
endfunction()
hv_expect_fail(no_run_h5 "empty/run.h5: no such file" "mkdir -p empty && ${VPD_CLI} harvest empty")
add_test(NAME harvest.exists_no_force COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${HV_DIR}; sha256sum lm/harvest.h5 > sum.txt
          if ${VPD_CLI} harvest lm --n-tokens 64 --quiet 2> exists.err; then echo 'unexpected success'; exit 1; fi
          cat exists.err; grep -q 'lm/harvest.h5 exists: pass --force' exists.err && sha256sum -c sum.txt")
set_tests_properties(harvest.exists_no_force PROPERTIES LABELS "lm;cli" TIMEOUT 120 FIXTURES_REQUIRED hv_lm_done)
hv_expect_fail(bad_vocab "bad.bin.*300"
               "${VPD_PYTHON} bad_tokens.py bad.bin && ${VPD_CLI} harvest lm --tokens bad.bin --force --n-tokens 256 --quiet"
               FIXTURES_REQUIRED hv_lm_done)
hv_expect_fail(toy_tokens "toy.bin: a tms target has no token contexts"
               "${VPD_PYTHON} bad_tokens.py toy.bin && ${VPD_CLI} harvest tms --tokens toy.bin --force --quiet"
               FIXTURES_REQUIRED hv_tms)
