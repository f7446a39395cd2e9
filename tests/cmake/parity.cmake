# vpd parity against the PyTorch reference (tools/reference/reference_vpd.py), label: parity.
# For each target kind the reference writes a parity problem with every loss term and its
# own values and gradients (fixture), `vpd parity --grad` evaluates it, and the reference
# compares: values |x - ref| <= 1e-5 + 2e-4 |ref|, gradients max|diff|/max|ref| <= 1e-4.
# Then bad inputs (missing dataset, wrong shape, NaN) must fail with the dataset named.
set(VPD_PAR_DIR ${VPD_FIXTURES}/parity)
file(MAKE_DIRECTORY ${VPD_PAR_DIR})
set(VPD_PAR_REF ${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_vpd.py)        # COMMAND form
set(VPD_PAR_REF_SH "${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_vpd.py") # inside sh -c

# kind / CI input (z: pre-sigmoid, direct: ci_lower and ci_upper)
foreach(case tms:z resid_mlp:z llama:direct tms:direct)
  string(REPLACE ":" ";" parts ${case})
  list(GET parts 0 kind)
  list(GET parts 1 ci)
  set(name ${kind}_${ci})
  add_test(NAME parity.make_${name}
           COMMAND ${VPD_PAR_REF} make --kind ${kind} --ci ${ci} --out ${name}.h5
           WORKING_DIRECTORY ${VPD_PAR_DIR})
  set_tests_properties(parity.make_${name} PROPERTIES FIXTURES_SETUP parity_${name} LABELS "parity;python;fixture"
                       TIMEOUT 120)
  add_test(NAME parity.${name}
           COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV}
                   sh -c "${VPD_CLI} parity ${name}.h5 --out ${name}.out.h5 --grad && ${VPD_PAR_REF_SH} compare ${name}.h5 ${name}.out.h5 --grad"
           WORKING_DIRECTORY ${VPD_PAR_DIR})
  set_tests_properties(parity.${name} PROPERTIES FIXTURES_REQUIRED parity_${name} LABELS "parity;python" TIMEOUT 120)
endforeach()

# bad input: non-zero exit and one message naming the dataset
function(vpd_parity_bad name mode dataset regex)
  add_test(NAME parity.bad_${name}
           COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV}
                   sh -c "${VPD_PAR_REF_SH} corrupt resid_mlp_z.h5 bad_${name}.h5 --mode ${mode} --dataset '${dataset}' && out=$(${VPD_CLI} parity bad_${name}.h5 2>&1); rc=$?; echo \"$out\"; [ $rc -ne 0 ] && echo \"$out\" | grep -Eq '${regex}'"
           WORKING_DIRECTORY ${VPD_PAR_DIR})
  set_tests_properties(parity.bad_${name} PROPERTIES FIXTURES_REQUIRED parity_resid_mlp_z LABELS "parity;cli" TIMEOUT 60)
endfunction()
vpd_parity_bad(missing_source missing losses/stoch/stochastic/1/layers.1.mlp_in/src
               "dataset .losses/stoch/stochastic/1/layers.1.mlp_in/src. not found")
vpd_parity_bad(missing_routing missing losses/stoch_subset/routing/1/layers.0.mlp_out
               "dataset .losses/stoch_subset/routing/1/layers.0.mlp_out. not found")
vpd_parity_bad(missing_ppgd missing losses/ppgd_subset_rep/ppgd_sources/layers.0.mlp_in
               "dataset .losses/ppgd_subset_rep/ppgd_sources/layers.0.mlp_in. not found")
vpd_parity_bad(missing_U missing layers/layers.0.mlp_out/U "dataset .layers/layers.0.mlp_out/U. not found")
vpd_parity_bad(shape_V shape layers/layers.1.mlp_in/V "dataset .layers/layers.1.mlp_in/V..*expected shape")
vpd_parity_bad(shape_z shape layers/layers.0.mlp_in/z "dataset .layers/layers.0.mlp_in/z..*expected shape")
vpd_parity_bad(shape_pgd shape losses/pgd_shared/pgd_init/layers.1.mlp_out
               "dataset .losses/pgd_shared/pgd_init/layers.1.mlp_out..*expected shape")
vpd_parity_bad(nan_z nan layers/layers.1.mlp_out/z "dataset .layers/layers.1.mlp_out/z..*non-finite")
vpd_parity_bad(nan_delta nan losses/stoch_lw/stochastic/0/layers.0.mlp_in/delta
               "dataset .losses/stoch_lw/stochastic/0/layers.0.mlp_in/delta..*non-finite")
vpd_parity_bad(nan_input nan input/x "dataset .input/x..*non-finite")
vpd_parity_bad(missing_input missing input/x "dataset .input/x. not found")
