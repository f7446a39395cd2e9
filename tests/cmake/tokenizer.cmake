# Tokenizer tests against Hugging Face `tokenizers` (test-only, installed from PyPI into a
# venv under the work directory by the setup step) on the Debian-package corpus that tools/make_corpus.sh builds
# (packages from tools/install-deps.sh). tests/tokenizer/check_vs_hf.py documents each check.
set(VPD_TOK_WORK ${VPD_FIXTURES}/tokenizer)
set(VPD_TOK_CORPUS ${VPD_FIXTURES}/corpus)

add_test(NAME tokenizer.corpus COMMAND ${VPD_TOOLS}/make_corpus.sh ${VPD_TOK_CORPUS})
set_tests_properties(tokenizer.corpus PROPERTIES FIXTURES_SETUP tok_corpus LABELS tokenizer TIMEOUT 300)

add_test(NAME tokenizer.setup COMMAND ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/tokenizer/check_vs_hf.py
         ${VPD_CLI} ${VPD_TOK_CORPUS} ${VPD_TOK_WORK} setup)
set_tests_properties(tokenizer.setup PROPERTIES FIXTURES_SETUP tok_setup FIXTURES_REQUIRED tok_corpus
                     LABELS tokenizer TIMEOUT 600 ENVIRONMENT "${VPD_TEST_ENV}")

foreach(check train hf-loads-vpd vpd-loads-hf added-flags multilingual big roundtrip split)
  add_test(NAME tokenizer.${check} COMMAND ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/tokenizer/check_vs_hf.py
           ${VPD_CLI} ${VPD_TOK_CORPUS} ${VPD_TOK_WORK} ${check})
  set_tests_properties(tokenizer.${check} PROPERTIES FIXTURES_REQUIRED "tok_corpus;tok_setup" LABELS tokenizer
                       TIMEOUT 600 ENVIRONMENT "${VPD_TEST_ENV}")
endforeach()

# user errors are reported, named, and fail the command
add_test(NAME tokenizer.cli_missing_file COMMAND ${VPD_CLI} tokenize --tokenizer ${VPD_TOK_WORK}/no_such.json --print x)
set_tests_properties(tokenizer.cli_missing_file PROPERTIES LABELS tokenizer ENVIRONMENT "${VPD_TEST_ENV}"
                     PASS_REGULAR_EXPRESSION "cannot open .*no_such.json")
add_test(NAME tokenizer.cli_bad_option COMMAND ${VPD_CLI} tokenize --vocabb 3)
set_tests_properties(tokenizer.cli_bad_option PROPERTIES LABELS tokenizer ENVIRONMENT "${VPD_TEST_ENV}"
                     PASS_REGULAR_EXPRESSION "unknown option '--vocabb'")
