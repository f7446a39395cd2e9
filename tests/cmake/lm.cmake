# Language-model decomposition end to end (label: lm): a tiny LlamaSimpleMLP pretrained on
# byte tokens of a fixed Markov chain (tests/data/make_lm_tokens.py; ~1 s), decomposed with configs/lm_tiny.yaml (the
# paper's losses, the global_shared_transformer CI function, wte + all 12 matrices) on 1 and
# 2 ranks (compared), then `vpd eval` and its /eval group checked with h5py.
set(LM_DIR ${VPD_FIXTURES}/lm)
file(MAKE_DIRECTORY ${LM_DIR})
file(WRITE ${LM_DIR}/check_eval.py "import h5py, math, sys
f = h5py.File(sys.argv[1] + '/run.h5', 'r')
e = f['eval']
assert e.attrs['positions'] > 0
layers = list(e['layers'])
assert 'wte' in layers and 'h.1.mlp.down_proj' in layers, layers
ce = {k: e['masks'][k].attrs['ce'] for k in e['masks']}
print(ce)
assert all(math.isfinite(v) for v in ce.values())
assert e['masks']['target'].attrs['output_loss'] == 0
assert all(e['masks'][k].attrs['output_loss'] > 0 for k in e['masks'] if k != 'target')
assert 0 <= e.attrs['pretraining_compute_recovered'] <= 1
assert 'pgd_2' in e['adversarial']
print('eval ok')
")
add_test(NAME lm.setup COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tests/data/make_lm_tokens.py ${LM_DIR} 300000 && ${VPD_CLI} pretrain ${CMAKE_SOURCE_DIR}/configs/lm_tiny-target.yaml --out ${LM_DIR}/model --set steps=60 --set train_tokens=${LM_DIR}/train.bin --set val_tokens=${LM_DIR}/val.bin"
         WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.setup PROPERTIES FIXTURES_SETUP lm_tiny LABELS "lm;fixture" TIMEOUT 120)
# p stays at 1 here: annealed below 1 within a dozen steps, (g + eps)^(p-1) jumps by orders of
# magnitude when a z at the clamp moves by one rounding step between exactly 0 and just above,
# so rank layouts (float summation order) would differ by that jump, not by rounding
set(LM_SETS --set target.path=${LM_DIR}/model --set data.train=${LM_DIR}/train.bin --set data.eval=${LM_DIR}/val.bin
            --set steps=12 --set faithfulness_warmup_steps=5 --set train_log_freq=1 --quiet
            --set "loss_metric_configs[ImportanceMinimalityLoss].p_anneal_final_p=1.0")
add_test(NAME lm.decompose_1rank COMMAND ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_SETS} --force --out ${LM_DIR}/run_np1
         WORKING_DIRECTORY ${LM_DIR})
add_test(NAME lm.decompose_2ranks COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${VPD_CLI} decompose
         ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_SETS} --force --out ${LM_DIR}/run_np2 WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.decompose_1rank lm.decompose_2ranks PROPERTIES FIXTURES_REQUIRED lm_tiny FIXTURES_SETUP lm_runs
                     LABELS "lm;mpi" ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
add_test(NAME lm.rank_equivalence COMMAND ${VPD_PYTHON} ${VPD_TOOLS}/reference/compare_runs.py ${LM_DIR}/run_np1 ${LM_DIR}/run_np2
         --rtol 1e-4 --atol 1e-5 --metrics-rtol 5e-4 --l0-atol 0.5)
add_test(NAME lm.eval COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} eval ${LM_DIR}/run_np1 --batches 1 --pgd-steps 2 && ${VPD_PYTHON} ${LM_DIR}/check_eval.py ${LM_DIR}/run_np1"
         WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.rank_equivalence lm.eval PROPERTIES FIXTURES_REQUIRED lm_runs LABELS "lm;python" TIMEOUT 300
                     RESOURCE_LOCK lm_run_np1)
set_tests_properties(lm.decompose_1rank PROPERTIES RESOURCE_LOCK lm_run_np1)
# the paper-scale configs parse completely (the first error is the missing target, not a key)
foreach(c pile_llama_simple_mlp-4L pile_llama_simple_mlp-4L-spd-main pile_llama_simple_mlp-4L-spd-dev lm_4L_128)
  add_test(NAME lm.config_${c} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "out=$(${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/${c}.yaml --force --out ${LM_DIR}/none 2>&1); echo \"$out\"; echo \"$out\" | grep -q 'cannot open.*config.json'"
           WORKING_DIRECTORY ${LM_DIR})
  set_tests_properties(lm.config_${c} PROPERTIES LABELS "lm;cli" TIMEOUT 60)
endforeach()
# (--atol 1e-5: CI-function biases start at 0 and entries whose gradient is near zero take
#  Adam steps of either sign, so after a dozen steps they differ by ~1e-6 absolutely between
#  layouts while everything else agrees to ~1e-7 relative)
# component parallelism on the language model (attention, KL, transformer CI, per-position
# PPGD): wte is not decomposed here (an embedding's CI input would be sharded activations)
set(LM_SETS_STR --set target.path=model --set data.train=train.bin --set data.eval=val.bin --set faithfulness_warmup_steps=2 --quiet)
string(JOIN " " LM_SETS_STR ${LM_SETS_STR})
set(LM_CP_SETS ${LM_SETS} --set module_info.0.module_pattern=h.1.mlp.c_fc)
add_test(NAME lm.cp_1rank COMMAND ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_CP_SETS} --force --out ${LM_DIR}/cp_np1
         WORKING_DIRECTORY ${LM_DIR})
add_test(NAME lm.dp2_cp2 COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 4 ${VPD_CLI} decompose
         ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_CP_SETS} --set parallel.component_parallel=2 --force --out ${LM_DIR}/cp_dp2cp2
         WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.cp_1rank lm.dp2_cp2 PROPERTIES FIXTURES_REQUIRED lm_tiny FIXTURES_SETUP lm_cp_runs
                     LABELS "lm;mpi" ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 300 PROCESSORS 2)
add_test(NAME lm.cp_equivalence COMMAND ${VPD_PYTHON} ${VPD_TOOLS}/reference/compare_runs.py ${LM_DIR}/cp_np1 ${LM_DIR}/cp_dp2cp2
         --rtol 1e-4 --atol 1e-5 --metrics-rtol 5e-4 --l0-atol 0.5)
set_tests_properties(lm.cp_equivalence PROPERTIES FIXTURES_REQUIRED lm_cp_runs LABELS "lm;mpi;python" TIMEOUT 60)
# an HDF5 dataset as token input (int64, 2-D) gives exactly the run of the flat .bin file
file(WRITE ${LM_DIR}/to_h5.py "import h5py, numpy as np, sys
for name in ('train', 'val'):
    t = np.fromfile(sys.argv[1] + '/' + name + '.bin', dtype='<u2').astype(np.int64)
    with h5py.File(sys.argv[1] + '/' + name + '.h5', 'w') as f:  # 2-D rows of 100 when they fit exactly
        f.create_dataset('data/ids', data=t.reshape(-1, 100) if len(t) % 100 == 0 else t)
")
add_test(NAME lm.h5_tokens COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_PYTHON} to_h5.py . && ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_SETS_STR} --set steps=3 --force --out h5tok_bin && ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml ${LM_SETS_STR} --set steps=3 --set data.train=train.h5:/data/ids --set data.eval=val.h5:/data/ids --force --out h5tok_h5 && ${VPD_PYTHON} ${VPD_TOOLS}/reference/compare_runs.py h5tok_bin h5tok_h5 --exact"
         WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.h5_tokens PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "lm;python" TIMEOUT 120)
# param-decomp configs name no output loss: a language-model target gets kl (as param-decomp)
add_test(NAME lm.pd_schema_output_loss COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_4L_128.yaml --set target.model_path=model --set data.train=train.bin --set data.eval=val.bin --set data.max_seq_len=16 --set pd.steps=1 --set pd.faithfulness_warmup_steps=0 --set pd.batch_size=2 --set logging.n_eval_steps=1 --force --out pd_schema 2>&1 | tee pd_schema.log && grep -q 'output loss kl (from the target kind)' pd_schema.log"
         WORKING_DIRECTORY ${LM_DIR})
set_tests_properties(lm.pd_schema_output_loss PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "lm;cli" TIMEOUT 120)
