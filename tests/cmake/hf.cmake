# Hugging Face reference tests (issue 18). transformers==4.45.2 is a test-only dependency:
# fixture `hf_venv` installs it from PyPI into a venv under the build's fixtures dir, with
# --system-site-packages so Debian's torch 1.13 is used (no CUDA wheels). Tests that need it:
# FIXTURES_REQUIRED hf_venv, COMMAND ${VPD_HF_PYTHON} ... (tests/cmake/hf_*.cmake).
set(VPD_HF_VENV ${VPD_FIXTURES}/hf-venv)
set(VPD_HF_PYTHON ${VPD_HF_VENV}/bin/python)
set(VPD_HF_WORK ${VPD_FIXTURES}/hf)
add_test(NAME hf.venv COMMAND sh ${CMAKE_SOURCE_DIR}/tests/hf/setup_venv.sh ${VPD_PYTHON} ${VPD_HF_VENV})
set_tests_properties(hf.venv PROPERTIES FIXTURES_SETUP hf_venv LABELS "hf;python" TIMEOUT 900
                     ENVIRONMENT "${VPD_TEST_ENV}")

# ---- llama / qwen2 / qwen3 (s2h5): vpd vs transformers 4.45.2 on small random models ----
if(NOT DEFINED VPD_MPIEXEC)
  set(VPD_MPIEXEC ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
endif()
add_executable(hf_compare ${CMAKE_SOURCE_DIR}/tests/hf/hf_compare.c)
target_include_directories(hf_compare PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(hf_compare PRIVATE vpd)
set(VPD_HF_LLAMA_CASES llama llama_tied llama_fp16 llama_bf16 qwen2 qwen2_untied qwen3)
add_test(NAME hf.llama_reference COMMAND ${VPD_HF_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/hf_reference.py
         ${VPD_HF_WORK} ${VPD_HF_LLAMA_CASES})
set_tests_properties(hf.llama_reference PROPERTIES FIXTURES_SETUP hf_llama_ref FIXTURES_REQUIRED hf_venv
                     LABELS "hf;python" TIMEOUT 300 ENVIRONMENT "${VPD_TEST_ENV}")
foreach(case ${VPD_HF_LLAMA_CASES})
  add_test(NAME hf.compare.${case} COMMAND hf_compare ${VPD_HF_WORK}/${case}/model ${VPD_HF_WORK}/${case}/ref.safetensors)
  set_tests_properties(hf.compare.${case} PROPERTIES FIXTURES_REQUIRED hf_llama_ref LABELS "hf;models" TIMEOUT 120
                       ENVIRONMENT "${VPD_TEST_ENV}")
endforeach()
# bad model directories: one-line errors naming the file, key, shard or tensor
add_test(NAME hf.bad_inputs COMMAND ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/hf/bad_inputs.py ${VPD_CLI} ${VPD_HF_WORK})
set_tests_properties(hf.bad_inputs PROPERTIES FIXTURES_REQUIRED hf_llama_ref LABELS "hf;cli" TIMEOUT 120
                     ENVIRONMENT "${VPD_TEST_ENV}")
# a few decomposition steps on 1 and 2 ranks (equal up to float order): qwen3 (tied head,
# q/k norms) and the sharded llama with its untied lm_head decomposed
foreach(cfg qwen3:hf_llama_tiny llama:hf_llama_tiny_lmhead)
  string(REPLACE ":" ";" parts ${cfg})
  list(GET parts 0 case)
  list(GET parts 1 yaml)
  add_test(NAME hf.decompose.${case}_1rank
           COMMAND ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/tests/configs/${yaml}.yaml --force --out runs/hf_${case}_np1 --quiet
           WORKING_DIRECTORY ${VPD_FIXTURES})
  add_test(NAME hf.decompose.${case}_2ranks
           COMMAND ${VPD_MPIEXEC} 2 ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/tests/configs/${yaml}.yaml --force
                   --out runs/hf_${case}_np2 --quiet
           WORKING_DIRECTORY ${VPD_FIXTURES})
  set_tests_properties(hf.decompose.${case}_1rank hf.decompose.${case}_2ranks PROPERTIES
                       FIXTURES_REQUIRED hf_llama_ref FIXTURES_SETUP hf_runs_${case} LABELS "hf;decompose;mpi"
                       ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 120 PROCESSORS 2)
  add_test(NAME hf.decompose.${case}_ranks_equal
           COMMAND ${VPD_PYTHON} ${VPD_TOOLS}/reference/compare_runs.py runs/hf_${case}_np1 runs/hf_${case}_np2
                   --rtol 1e-4 --atol 1e-6 --metrics-rtol 1e-4 --l0-atol 0.01
           WORKING_DIRECTORY ${VPD_FIXTURES})
  set_tests_properties(hf.decompose.${case}_ranks_equal PROPERTIES FIXTURES_REQUIRED hf_runs_${case}
                       LABELS "hf;decompose;mpi;python" ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 60)
endforeach()
add_test(NAME hf.decompose.pattern_matches_nothing COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV}
         sh -c "out=$(${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/tests/configs/hf_llama_tiny.yaml --set 'module_info.0.module_pattern=lm_head' --force --out runs/hf_bad 2>&1); rc=$?; echo \"$out\"; [ $rc -ne 0 ] && echo \"$out\" | grep -Eq 'module_info pattern .lm_head. matches no layer'"
         WORKING_DIRECTORY ${VPD_FIXTURES})
set_tests_properties(hf.decompose.pattern_matches_nothing PROPERTIES FIXTURES_REQUIRED hf_llama_ref LABELS "hf;cli"
                     TIMEOUT 60)
