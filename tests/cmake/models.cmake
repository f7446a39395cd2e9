# Target models against PyTorch. At test time tools/reference/reference_models.py writes four model
# directories (random weights + reference.h5) under ${VPD_FIXTURES}/models: TMS, ResidMLP,
# LlamaSimpleMLP with grouped-query attention (4 heads, 2 kv heads) and without (4/4).
# unit.test_models_vs_torch (tests/unit, run in ${VPD_FIXTURES}) reads them from its
# default paths models/{tms,resid_mlp,llama_gqa,llama_mha}; the CLI tests run
# `vpd forward` on the fixtures' raw inputs and compare the written logits.
set(_vpd_models_dir ${VPD_FIXTURES}/models)
set(_vpd_models_gen ${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_models.py)

foreach(_fx tms resid_mlp llama_gqa llama_mha)
  if(_fx STREQUAL "llama_gqa")
    set(_args --kind llama --n-kv-heads 2 --seed 3)
  elseif(_fx STREQUAL "llama_mha")
    set(_args --kind llama --n-kv-heads 4 --seed 4)
  else()
    set(_args --kind ${_fx} --seed 1)
  endif()
  add_test(NAME models.fixture.${_fx} COMMAND ${_vpd_models_gen} ${_args} --out ${_vpd_models_dir}/${_fx})
  set_tests_properties(models.fixture.${_fx} PROPERTIES FIXTURES_SETUP vpd_models_ref LABELS "models;fixture" TIMEOUT 300)
endforeach()

set_tests_properties(unit.test_models_vs_torch PROPERTIES FIXTURES_REQUIRED vpd_models_ref LABELS "unit;models")

# vpd forward on the LM (uint16 token file, windows of 7) and on a toy model (float32 features)
add_test(NAME models.cli_forward_llama
         COMMAND sh -c "\"$1\" forward \"$2/llama_gqa\" --tokens \"$2/llama_gqa/tokens.u16\" --dtype uint16 --n-ctx 7 --chunk 2 --out \"$2/llama_gqa_forward.h5\" && $3 $4 --check-forward \"$2/llama_gqa_forward.h5\" --ref \"$2/llama_gqa\" --tol 1e-5"
                 sh ${VPD_CLI} ${_vpd_models_dir} ${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_models.py)
add_test(NAME models.cli_forward_resid_mlp
         COMMAND sh -c "\"$1\" forward \"$2/resid_mlp\" --features \"$2/resid_mlp/x.f32\" --batch 8 --chunk 3 --out \"$2/resid_mlp_forward.h5\" && $3 $4 --check-forward \"$2/resid_mlp_forward.h5\" --ref \"$2/resid_mlp\" --tol 1e-5"
                 sh ${VPD_CLI} ${_vpd_models_dir} ${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_models.py)
# a token outside the vocabulary is an error with a message, not a crash
add_test(NAME models.cli_forward_bad_token
         COMMAND sh -c "printf '\\377\\377\\001\\000' > \"$2/bad_tokens.u16\"; \"$1\" forward \"$2/llama_gqa\" --tokens \"$2/bad_tokens.u16\" --n-ctx 2 --out \"$2/bad.h5\" 2>&1 | grep -q 'outside the vocabulary'"
                 sh ${VPD_CLI} ${_vpd_models_dir})
set_tests_properties(models.cli_forward_llama models.cli_forward_resid_mlp models.cli_forward_bad_token PROPERTIES
                     FIXTURES_REQUIRED vpd_models_ref LABELS "models;cli" TIMEOUT 300 ENVIRONMENT "${VPD_TEST_ENV}")
