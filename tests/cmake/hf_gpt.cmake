# GPT-2 and GPT-NeoX (Pythia) against transformers 4.45.2 (s2h4, issue 18): small random models from
# tools/reference/hf_reference.py (fixture hf_venv from hf.cmake), compared by hf_gpt_compare
# (logits, input-embedding gradient, every parameter gradient), then decomposed a few steps
# on 1 and 2 ranks (equal).
if(NOT DEFINED VPD_HF_PYTHON) # tests/CMakeLists.txt includes hf.cmake first (sorted glob)
  message(FATAL_ERROR "hf_gpt.cmake needs VPD_HF_PYTHON / fixture hf_venv from tests/cmake/hf.cmake")
endif()
add_executable(hf_gpt_compare ${CMAKE_SOURCE_DIR}/tests/hf/hf_gpt_compare.c)
target_include_directories(hf_gpt_compare PRIVATE ${CMAKE_SOURCE_DIR}/src)
target_link_libraries(hf_gpt_compare PRIVATE vpd)
set(VPD_HF_GPT_CASES gpt2 gpt2_inner gpt2_bare neox neox_seq)
add_test(NAME hf.gpt_reference COMMAND ${VPD_HF_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/hf_reference.py
         ${VPD_HF_WORK} ${VPD_HF_GPT_CASES})
set_tests_properties(hf.gpt_reference PROPERTIES FIXTURES_SETUP hf_gpt_ref FIXTURES_REQUIRED hf_venv
                     LABELS "hf;python" TIMEOUT 900 ENVIRONMENT "${VPD_TEST_ENV}")
foreach(case ${VPD_HF_GPT_CASES})
  add_test(NAME hf.compare.${case} COMMAND hf_gpt_compare ${VPD_HF_WORK}/${case}/model ${VPD_HF_WORK}/${case}/ref.safetensors)
  set_tests_properties(hf.compare.${case} PROPERTIES FIXTURES_REQUIRED hf_gpt_ref LABELS "hf;models" TIMEOUT 120
                       ENVIRONMENT "${VPD_TEST_ENV}")
endforeach()
# Markov-chain tokens over the reference models' 96 ids for the decompositions below
add_test(NAME hf.gpt_tokens COMMAND ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/hf/markov_tokens.py ${VPD_HF_WORK} 96 30000)
set_tests_properties(hf.gpt_tokens PROPERTIES FIXTURES_SETUP hf_gpt_tokens FIXTURES_REQUIRED hf_gpt_ref
                     LABELS "hf;python" TIMEOUT 60)
# a few decomposition steps of every matrix (fused ones, embedding, unembedding) on 1 and 2 ranks
set(VPD_HF_GPT_SETS --set steps=5 --set data.train=${VPD_HF_WORK}/train.bin --set data.eval=${VPD_HF_WORK}/val.bin --quiet --force)
set(VPD_HF_NEOX_PATTERNS --set module_info.0.module_pattern=gpt_neox.embed_in
    --set "module_info.1.module_pattern=gpt_neox.layers.*.attention.query_key_value"
    --set "module_info.2.module_pattern=gpt_neox.layers.*.attention.dense"
    --set "module_info.3.module_pattern=gpt_neox.layers.*.mlp.*" --set module_info.4.module_pattern=embed_out)
foreach(case gpt2 neox) # neox_seq: covered by hf.compare.neox_seq and the grad test
  set(extra "")
  if(case MATCHES "^neox")
    set(extra ${VPD_HF_NEOX_PATTERNS})
  endif()
  set(cfg ${CMAKE_SOURCE_DIR}/tests/configs/hf_gpt_tiny.yaml --set target.path=${VPD_HF_WORK}/${case}/model)
  add_test(NAME hf.decompose.${case}_1rank COMMAND ${VPD_CLI} decompose ${cfg} ${VPD_HF_GPT_SETS} ${extra}
           --out ${VPD_HF_WORK}/run_${case}_np1 WORKING_DIRECTORY ${VPD_HF_WORK})
  add_test(NAME hf.decompose.${case}_2ranks COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${VPD_CLI} decompose
           ${cfg} ${VPD_HF_GPT_SETS} ${extra} --out ${VPD_HF_WORK}/run_${case}_np2 WORKING_DIRECTORY ${VPD_HF_WORK})
  set_tests_properties(hf.decompose.${case}_1rank hf.decompose.${case}_2ranks PROPERTIES
                       FIXTURES_REQUIRED "hf_gpt_ref;hf_gpt_tokens" FIXTURES_SETUP hf_${case}_runs LABELS "hf;mpi"
                       ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
  add_test(NAME hf.rank_equivalence.${case} COMMAND ${VPD_PYTHON} ${VPD_TOOLS}/reference/compare_runs.py
           ${VPD_HF_WORK}/run_${case}_np1 ${VPD_HF_WORK}/run_${case}_np2 --rtol 1e-4 --atol 1e-5 --metrics-rtol 5e-4 --l0-atol 0.5)
  set_tests_properties(hf.rank_equivalence.${case} PROPERTIES FIXTURES_REQUIRED hf_${case}_runs LABELS "hf;python"
                       TIMEOUT 60)
endforeach()

# --max-context: refused in one line for GPT-2's learned position embeddings; a rotary model
# (GPT-NeoX) runs windows past its n_ctx with a warning
add_test(NAME hf.max_context COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${VPD_HF_WORK}; rm -f mc_gpt2.h5 mc_neox.h5
          N=$(${VPD_PYTHON} -c \"import json; print(json.load(open('gpt2/model/config.json'))['n_positions'])\")
          if ${VPD_CLI} forward gpt2/model --tokens train.bin --n-ctx $((N + 8)) --max-context $((N + 8)) --out mc_gpt2.h5 2> mc_gpt2.err; then echo 'unexpected success'; exit 1; fi
          cat mc_gpt2.err; test $(wc -l < mc_gpt2.err) -eq 1 && grep -q 'learned position embeddings' mc_gpt2.err && test ! -e mc_gpt2.h5 || exit 1
          M=$(${VPD_PYTHON} -c \"import json; print(json.load(open('neox/model/config.json'))['max_position_embeddings'])\")
          ${VPD_CLI} forward neox/model --tokens train.bin --n-ctx $((M + 8)) --max-context $((M + 8)) --out mc_neox.h5 2> mc_neox.err || exit 1
          cat mc_neox.err; grep -q 'extrapolate' mc_neox.err && test -s mc_neox.h5")
set_tests_properties(hf.max_context PROPERTIES FIXTURES_REQUIRED "hf_gpt_ref;hf_gpt_tokens" LABELS "hf;cli" TIMEOUT 120)
