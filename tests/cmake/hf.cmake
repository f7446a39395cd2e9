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
