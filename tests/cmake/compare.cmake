# vpd compare (labels: compare, lm): the lm_tiny target of lm.cmake decomposed with its MLPs only
# (configs/lm_tiny.yaml without wte and attention, a few steps), then
#   compare.eval_parity  compare's all-MLP error-propagating CE / KL = `vpd eval`'s for the
#                        same masks and windows (CI masks, rounded g > 0, 0.1, 0.5)
#   compare.one_mlp      one MLP selected: error_propagating = clean_input = single_layer
#   compare.protocols    every MLP: the protocols differ as defined; zero ablation; L0 columns;
#                        and the same numbers on 2 ranks as on 1
#   compare.bad_inputs   one-line errors naming what to change
#   compare.frontier     tools/frontier_plot.py and `vpd collect --compare` on the output
#   compare.transcoders  (with src/transcoder/) hand-made transcoder.h5 files: zero decoders =
#                        zero ablation with L0 = n_latent; a known feature-splitting pair
set(CMP_DIR ${VPD_FIXTURES}/compare)
file(MAKE_DIRECTORY ${CMP_DIR})
file(READ ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml CMP_CFG_TEXT)
string(REGEX REPLACE "  - {module_pattern: \"wte\"[^\n]*\n" "" CMP_CFG_TEXT "${CMP_CFG_TEXT}")
string(REGEX REPLACE "  - {module_pattern: \"h\\.\\*\\.attn\\.\\*\"[^\n]*\n" "" CMP_CFG_TEXT "${CMP_CFG_TEXT}")
file(WRITE ${CMP_DIR}/lm_tiny_mlp.yaml "${CMP_CFG_TEXT}")
set(LM_DIR ${VPD_FIXTURES}/lm)
set(CMP_CHECK "${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/compare/check_compare.py")
set(CMP_RUN ${CMP_DIR}/run)
add_test(NAME compare.decompose COMMAND ${VPD_CLI} decompose ${CMP_DIR}/lm_tiny_mlp.yaml --set target.path=${LM_DIR}/model
         --set data.train=${LM_DIR}/train.bin --set data.eval=${LM_DIR}/val.bin --set steps=8 --set faithfulness_warmup_steps=2
         --quiet --force --out ${CMP_RUN} WORKING_DIRECTORY ${CMP_DIR})
set_tests_properties(compare.decompose PROPERTIES FIXTURES_REQUIRED lm_tiny FIXTURES_SETUP compare_run
                     LABELS "compare;lm;fixture" ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 120)
add_test(NAME compare.eval_parity COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} eval ${CMP_RUN} --batches 2 --no-pgd >/dev/null && ${VPD_CLI} compare --vpd ${CMP_RUN} --random-windows --n-tokens 512 --quiet --force --out ${CMP_DIR}/parity && ${CMP_CHECK} parity ${CMP_RUN} ${CMP_DIR}/parity")
set_tests_properties(compare.eval_parity PROPERTIES RESOURCE_LOCK compare_run_h5)
add_test(NAME compare.one_mlp COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} compare --vpd ${CMP_RUN} --mlps 1 --n-tokens 2048 --quiet --force --out ${CMP_DIR}/one && ${CMP_CHECK} one_mlp ${CMP_DIR}/one")
add_test(NAME compare.protocols COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} compare --vpd ${CMP_RUN} --n-tokens 4096 --quiet --force --out ${CMP_DIR}/all && ${CMP_CHECK} protocols ${CMP_DIR}/all && ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${VPD_CLI} compare --vpd ${CMP_RUN} --n-tokens 4096 --quiet --force --out ${CMP_DIR}/all_np2 && ${CMP_CHECK} same ${CMP_DIR}/all ${CMP_DIR}/all_np2")
set_tests_properties(compare.protocols PROPERTIES PROCESSORS 2 FIXTURES_SETUP compare_out)
add_test(NAME compare.bad_inputs COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} ${VPD_PYTHON}
         ${CMAKE_SOURCE_DIR}/tests/compare/bad_inputs.py ${VPD_CLI} ${CMP_RUN} ${CMP_DIR}/all ${LM_DIR}/val.bin)
set_tests_properties(compare.bad_inputs PROPERTIES FIXTURES_REQUIRED compare_out)
add_test(NAME compare.frontier COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "rm -f ${CMP_DIR}/frontier.png ${CMP_DIR}/collected.csv && ${VPD_PYTHON} ${VPD_TOOLS}/frontier_plot.py ${CMP_DIR}/all/compare.csv --out ${CMP_DIR}/frontier.png && test -s ${CMP_DIR}/frontier.png && ${VPD_CLI} collect --compare ${CMP_DIR}/all ${CMP_DIR}/one --out ${CMP_DIR}/collected.csv && ${VPD_PYTHON} -c \"import csv; r = list(csv.DictReader(open('${CMP_DIR}/collected.csv'))); assert len(r) > 20 and 'delta_ce' in r[0] and 'compare_dir' in r[0], r[:1]; print(len(r), 'rows')\" && F='${VPD_PYTHON} ${VPD_TOOLS}/frontier_plot.py' && \$F ${CMP_DIR}/all/compare.csv --vpd-settings 'g>0' --out ${CMP_DIR}/f1.png > ${CMP_DIR}/f1.txt && \$F ${CMP_DIR}/all/compare.csv ${CMP_DIR}/all_np2/compare.csv --vpd-settings 'g>0' --out ${CMP_DIR}/f2.png > ${CMP_DIR}/f2.txt && cat ${CMP_DIR}/f1.txt ${CMP_DIR}/f2.txt && grep -q ' 3 curves, 3 points' ${CMP_DIR}/f1.txt && grep -q ' 3 curves, 3 points' ${CMP_DIR}/f2.txt")
set_tests_properties(compare.frontier PROPERTIES FIXTURES_REQUIRED compare_out)
set_tests_properties(compare.eval_parity compare.one_mlp compare.protocols compare.bad_inputs compare.frontier PROPERTIES
                     FIXTURES_REQUIRED "compare_run;lm_tiny" LABELS "compare;lm" TIMEOUT 120)
set_tests_properties(compare.bad_inputs compare.frontier PROPERTIES FIXTURES_REQUIRED "compare_run;lm_tiny;compare_out")
if(EXISTS ${CMAKE_SOURCE_DIR}/src/transcoder/transcoder.c)
  set(CMP_MK "${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/compare/make_transcoder.py")
  add_test(NAME compare.transcoders COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "${CMP_MK} zero ${CMP_DIR}/tc_zero_plt plt 2 32 16 ${LM_DIR}/model && ${CMP_MK} zero ${CMP_DIR}/tc_zero_clt clt 2 32 16 ${LM_DIR}/model && ${VPD_CLI} compare --tc ${CMP_DIR}/tc_zero_plt --tc ${CMP_DIR}/tc_zero_clt --tokens ${LM_DIR}/val.bin --n-tokens 2048 --quiet --force --out ${CMP_DIR}/tc_zero && ${CMP_CHECK} zero_tc ${CMP_DIR}/tc_zero 16 32 && ${CMP_MK} split ${CMP_DIR}/tc_small ${CMP_DIR}/tc_large 2 32 ${LM_DIR}/model && ${VPD_CLI} compare --tc ${CMP_DIR}/tc_small --tc ${CMP_DIR}/tc_large --tokens ${LM_DIR}/val.bin --n-tokens 2048 --quiet --force --out ${CMP_DIR}/tc_split && ${CMP_CHECK} split ${CMP_DIR}/tc_split 0.5 0.75")
  set_tests_properties(compare.transcoders PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "compare;lm" TIMEOUT 120)
endif()
