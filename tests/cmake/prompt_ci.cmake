# vpd prompt-ci (labels: attrib, lm): the post-hoc CI optimisation on one prompt, on the lm_tiny
# decomposition of lm.cmake (its run.h5 copied into a directory of our own). The same prompt on
# 1 and 2 ranks must give the same JSON (every rank computes the whole optimisation from
# counter-based draws); tools/reference/check_prompt_ci.py recomputes in float64 PyTorch the
# target's P(target), the unpruned alive set (the CI function) and P(target) under CI masks of
# the unpruned and the pruned graph. Bad input: one-line errors, an existing --out kept.
set(PCI_DIR ${VPD_FIXTURES}/prompt_ci)
file(MAKE_DIRECTORY ${PCI_DIR})
set(PCI_MPIEXEC ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
string(JOIN " " PCI_MPIEXEC_STR ${PCI_MPIEXEC})
set(PCI_CHECK ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/check_prompt_ci.py)
string(JOIN " " PCI_CHECK_STR ${PCI_CHECK})

add_test(NAME prompt_ci.setup COMMAND sh -c
         "rm -rf ${PCI_DIR}/lm && mkdir -p ${PCI_DIR}/lm && cp ${VPD_FIXTURES}/lm/run_np1/run.h5 ${PCI_DIR}/lm/")
set_tests_properties(prompt_ci.setup PROPERTIES FIXTURES_REQUIRED lm_runs FIXTURES_SETUP pci_lm
                     LABELS "attrib;lm;fixture" RESOURCE_LOCK lm_run_np1)
# 20 byte tokens, the prediction at position 15; 150 steps
set(PCI_ARGS --tokens 72,101,108,108,111,32,119,111,114,108,100,46,32,84,104,101,32,99,97,116 --position 15
             --steps 150 --log-every 50)
string(JOIN " " PCI_ARGS_STR ${PCI_ARGS})
add_test(NAME prompt_ci.lm_1rank_2ranks COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${PCI_DIR}/lm; rm -f np1.json np2.json
          ${VPD_CLI} prompt-ci . ${PCI_ARGS_STR} --out np1.json > out1.txt 2>&1; cat out1.txt
          grep -q '^unpruned ' out1.txt; grep -q '^pruned ' out1.txt; grep -q 'wrote np1.json' out1.txt
          ${PCI_MPIEXEC_STR} 2 ${VPD_CLI} prompt-ci . ${PCI_ARGS_STR} --out np2.json > out2.txt 2>&1; cat out2.txt
          grep -q 'on 2 ranks' out2.txt
          ${PCI_CHECK_STR} np1.json --compare np2.json")
set_tests_properties(prompt_ci.lm_1rank_2ranks PROPERTIES FIXTURES_REQUIRED pci_lm FIXTURES_SETUP pci_lm_done
                     LABELS "attrib;lm;mpi" TIMEOUT 300 PROCESSORS 2)
add_test(NAME prompt_ci.lm_check COMMAND ${PCI_CHECK} ${PCI_DIR}/lm/np1.json --run ${PCI_DIR}/lm)
set_tests_properties(prompt_ci.lm_check PROPERTIES FIXTURES_REQUIRED pci_lm_done LABELS "attrib;lm;python" TIMEOUT 300)

# ---- bad input: one line; an existing output is not overwritten ----
function(pci_expect_fail name pattern cmd)
  add_test(NAME prompt_ci.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "cd ${PCI_DIR}; if ${cmd} > ${name}.out 2> ${name}.err; then echo 'unexpected success'; exit 1; fi; cat ${name}.err; test $(wc -l < ${name}.err) -le 2; grep -q \"${pattern}\" ${name}.err")
  set_tests_properties(prompt_ci.${name} PROPERTIES LABELS "attrib;lm;cli" TIMEOUT 60 FIXTURES_REQUIRED pci_lm ${ARGN})
endfunction()
pci_expect_fail(too_long "the prompt has 70 tokens, longer than the model's context n_ctx = 64 (rotary models: pass --max-context 70"
                "${VPD_CLI} prompt-ci lm --tokens 1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10")
pci_expect_fail(past_max_context "the prompt has 70 tokens, longer than --max-context 66"
                "${VPD_CLI} prompt-ci lm --max-context 66 --tokens 1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10")
# longer than the run's max_seq_len (32): up to n_ctx (64) as is; past it with --max-context
# (the rotary positions extrapolated, warned), the same JSON on 2 ranks
add_test(NAME prompt_ci.max_context COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${PCI_DIR}; rm -f long1.json long2.json
          ${VPD_CLI} prompt-ci lm --tokens 1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10 --steps 5 > mid.txt 2>&1; cat mid.txt
          grep -q '^prompt: 40 tokens; position 39' mid.txt
          if grep -q warning mid.txt; then exit 1; fi
          T=1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10,1,2,3,4,5,6,7,8,9,10
          ${VPD_CLI} prompt-ci lm --tokens $T --max-context 70 --steps 20 --out long1.json > long1.txt 2>&1; cat long1.txt
          grep -q 'warning: the prompt has 70 tokens but the model was trained on n_ctx = 64' long1.txt
          grep -q '^prompt: 70 tokens; position 69' long1.txt
          ${PCI_MPIEXEC_STR} 2 ${VPD_CLI} prompt-ci lm --tokens $T --max-context 70 --steps 20 --out long2.json > long2.txt 2>&1
          ${PCI_CHECK_STR} long1.json --compare long2.json")
set_tests_properties(prompt_ci.max_context PROPERTIES LABELS "attrib;lm;mpi" TIMEOUT 300 PROCESSORS 2 FIXTURES_REQUIRED pci_lm)
pci_expect_fail(bad_token "token id 300 (position 1) is not in the model's vocabulary of 256"
                "${VPD_CLI} prompt-ci lm --tokens 1,300,2")
pci_expect_fail(bad_target "target-token 256 is not in the model's vocabulary of 256"
                "${VPD_CLI} prompt-ci lm --tokens 1,2,3 --target-token 256")
pci_expect_fail(bad_position "position outside the prompt's 3 tokens" "${VPD_CLI} prompt-ci lm --tokens 1,2,3 --position 3")
pci_expect_fail(no_tokenizer "no tokenizer for --prompt" "${VPD_CLI} prompt-ci lm --prompt hello")
pci_expect_fail(both_prompts "exactly one of --prompt TEXT or --tokens IDS" "${VPD_CLI} prompt-ci lm --prompt hi --tokens 1,2")
pci_expect_fail(no_run "nope/run.h5: no such file" "${VPD_CLI} prompt-ci nope --tokens 1,2")
add_test(NAME prompt_ci.exists_no_force COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${PCI_DIR}; echo keep > kept.json
          if ${VPD_CLI} prompt-ci lm --tokens 1,2,3 --steps 1 --out kept.json 2> exists.err; then echo 'unexpected success'; exit 1; fi
          cat exists.err; grep -q 'kept.json exists: pass --force' exists.err && grep -qx keep kept.json")
set_tests_properties(prompt_ci.exists_no_force PROPERTIES LABELS "attrib;lm;cli" TIMEOUT 60 FIXTURES_REQUIRED pci_lm)
