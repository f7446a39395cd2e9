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
set(VPD_HF_GPT_CASES gpt2 gpt2_inner neox neox_seq)
add_test(NAME hf.gpt_reference COMMAND ${VPD_HF_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/hf_reference.py
         ${VPD_HF_WORK} ${VPD_HF_GPT_CASES})
set_tests_properties(hf.gpt_reference PROPERTIES FIXTURES_SETUP hf_gpt_ref FIXTURES_REQUIRED hf_venv
                     LABELS "hf;python" TIMEOUT 300 ENVIRONMENT "${VPD_TEST_ENV}")
foreach(case ${VPD_HF_GPT_CASES})
  add_test(NAME hf.compare.${case} COMMAND hf_gpt_compare ${VPD_HF_WORK}/${case}/model ${VPD_HF_WORK}/${case}/ref.safetensors)
  set_tests_properties(hf.compare.${case} PROPERTIES FIXTURES_REQUIRED hf_gpt_ref LABELS "hf;models" TIMEOUT 120
                       ENVIRONMENT "${VPD_TEST_ENV}")
endforeach()
