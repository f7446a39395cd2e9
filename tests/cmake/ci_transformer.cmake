# global_shared_transformer CI function against PyTorch: make_ref.py (a torch
# re-implementation of spd's GlobalSharedTransformerCiFn) writes random float32 weights,
# inputs and float64 outputs to ${VPD_FIXTURES}/ci_transformer/ref.h5; the unit test
# test_ci_transformer_vs_torch (run in ${VPD_FIXTURES}) loads them by spd name and
# compares its forward (max relative error <= 1e-5 in float).
add_test(NAME ci_transformer.fixture
         COMMAND ${VPD_PYTHON} ${CMAKE_CURRENT_SOURCE_DIR}/ci_transformer/make_ref.py --out ${VPD_FIXTURES}/ci_transformer)
set_tests_properties(ci_transformer.fixture PROPERTIES FIXTURES_SETUP vpd_ci_transformer_ref LABELS "unit;fixture" TIMEOUT 300)
set_tests_properties(unit.test_ci_transformer_vs_torch PROPERTIES FIXTURES_REQUIRED vpd_ci_transformer_ref)
