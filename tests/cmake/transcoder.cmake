# `vpd transcoder` (labels transcoder, lm) on the tiny language model of lm.cmake (fixture
# lm_tiny: 2 blocks, d_model 32):
#   transcoder.ranks_*      the same run on 1 and 2 ranks gives the same transcoder.h5 (float
#                           summation order aside): CLT BatchTopK (global threshold, AuxK) on the
#                           local MSE, PLT JumpReLU on the end-to-end KL
#   transcoder.resume       6 steps straight == 3 steps, --stop-after checkpoint, --resume: exact;
#                           metrics.jsonl records past the checkpoint (a logged step 4, a torn
#                           line) are dropped on --resume, so every step is logged once
#   transcoder.run_dir      a used run directory is refused without --force
#   transcoder.reference_*  one step against tools/reference/reference_transcoder.py (PyTorch):
#                           selections, loss terms, every gradient and the update, for each
#                           activation (AuxK active: dead_tokens is one batch); *_kl: the
#                           end-to-end objective, the gradient through the spliced model
# The finite-difference checks are grad.test_transcoder_grad (also labelled transcoder).
set(TC_DIR ${VPD_FIXTURES}/transcoder)
set(TC_LM ${VPD_FIXTURES}/lm)
file(MAKE_DIRECTORY ${TC_DIR})
set(TC_SETS --set target.model_path=${TC_LM}/model --set data.train=${TC_LM}/train.bin --set data.eval=${TC_LM}/val.bin
            --set n_latent=64 --set batch_size=4 --set data.max_seq_len=16 --set steps=6 --set eval_batches=2
            --set eval_batch_size=4 --set aux_k=8 --set dead_tokens=128 --set train_log_freq=1 --set checkpoint_every=0 --quiet)
string(REPLACE ";" " " TC_SETS_STR "${TC_SETS}")
set(TC_CFG ${CMAKE_SOURCE_DIR}/configs/transcoder_4L_128_plt.yaml)
file(WRITE ${TC_DIR}/compare.py "import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1] + '/transcoder.h5', 'r'), h5py.File(sys.argv[2] + '/transcoder.h5', 'r')
exact = '--exact' in sys.argv
names = []
a.visit(lambda n: names.append(n) if isinstance(a[n], h5py.Dataset) else None)
assert names and sorted(names) == sorted(n for n in names if n in b), 'datasets differ'
worst = 0
for n in names:
    x, y = a[n][...], b[n][...]
    assert x.shape == y.shape, n
    if exact:
        assert np.array_equal(x, y), (n, np.abs(x - y).max())
    else:
        d = np.abs(x - y) / (1e-4 + 1e-3 * np.abs(y))
        worst = max(worst, d.max())
        assert d.max() <= 1, (n, np.abs(x - y).max())
for k in ('kind', 'activation', 'n_latent', 'k', 'steps'):
    assert a.attrs[k] == b.attrs[k], k
print('same transcoder', 'exactly' if exact else f'(worst |a-b| / (1e-4 + 1e-3|b|) = {worst:.3f})')
")

foreach(case clt_batchtopk_mse plt_jumprelu_kl)
  if(case STREQUAL clt_batchtopk_mse)
    set(extra --set kind=clt --set activation=batchtopk --set k=4 --set objective=mse)
  else()
    set(extra --set activation=jumprelu --set k=null --set sparsity_coeff=0.01 --set jumprelu_bandwidth=0.05
              --set jumprelu_init_threshold=0.05 --set objective=kl)
  endif()
  add_test(NAME transcoder.ranks_${case}_np1 COMMAND ${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS} ${extra} --force
           --out ${TC_DIR}/${case}_np1 WORKING_DIRECTORY ${TC_DIR})
  add_test(NAME transcoder.ranks_${case}_np2 COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${VPD_CLI} transcoder
           ${TC_CFG} ${TC_SETS} ${extra} --force --out ${TC_DIR}/${case}_np2 WORKING_DIRECTORY ${TC_DIR})
  set_tests_properties(transcoder.ranks_${case}_np1 transcoder.ranks_${case}_np2 PROPERTIES FIXTURES_REQUIRED lm_tiny
                       FIXTURES_SETUP tc_${case} LABELS "transcoder;lm;mpi" ENVIRONMENT "${VPD_TEST_ENV}" TIMEOUT 120
                       PROCESSORS 2)
  add_test(NAME transcoder.ranks_${case} COMMAND ${VPD_PYTHON} ${TC_DIR}/compare.py ${TC_DIR}/${case}_np1 ${TC_DIR}/${case}_np2)
  set_tests_properties(transcoder.ranks_${case} PROPERTIES FIXTURES_REQUIRED tc_${case} LABELS "transcoder;lm;python" TIMEOUT 60)
endforeach()

add_test(NAME transcoder.resume COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set kind=clt --set k=4 --force --out straight && \
${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set kind=clt --set k=4 --force --out resumed --stop-after 3 && \
test -f resumed/checkpoint.h5 && ! test -f resumed/transcoder.h5 && \
tail -n 1 resumed/metrics.jsonl | sed 's/\"step\": 2,/\"step\": 4,/' >> resumed/metrics.jsonl && \
printf '{\"step\": 5, \"train/lo' >> resumed/metrics.jsonl && \
${VPD_CLI} transcoder --resume resumed --quiet && ${VPD_PYTHON} compare.py straight resumed --exact && \
${VPD_PYTHON} -c \"import json; st = lambda d: [json.loads(l)['step'] for l in open(d + '/metrics.jsonl')]; \
a, b = st('straight'), st('resumed'); assert a == b == list(range(6)), (a, b); print('metrics steps', b)\""
         WORKING_DIRECTORY ${TC_DIR})
set_tests_properties(transcoder.resume PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "transcoder;lm;python" TIMEOUT 120)

add_test(NAME transcoder.run_dir COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "rm -rf used && ${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set k=4 --set steps=1 --out used && \
! ${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set k=4 --set steps=1 --out used 2> err.txt && \
grep -q 'already holds a run' err.txt && grep -q -- '--force' err.txt"
         WORKING_DIRECTORY ${TC_DIR})
set_tests_properties(transcoder.run_dir PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "transcoder;lm" TIMEOUT 60)

foreach(case plt_batchtopk clt_topk plt_relu clt_jumprelu plt_batchtopk_kl clt_jumprelu_kl clt_relu_kl)
  string(REPLACE "_" ";" parts ${case})
  list(GET parts 0 kind)
  list(GET parts 1 act)
  list(LENGTH parts nparts)
  set(objective mse)
  if(nparts GREATER 2)
    list(GET parts 2 objective)
  endif()
  if(act STREQUAL batchtopk OR act STREQUAL topk)
    set(extra --set k=4)
  elseif(act STREQUAL relu)
    set(extra --set k=null --set sparsity_coeff=0.001)
  else()
    set(extra --set k=null --set sparsity_coeff=0.01 --set jumprelu_bandwidth=0.05 --set jumprelu_init_threshold=0.05)
  endif()
  string(REPLACE ";" " " extra_str "${extra}")
  add_test(NAME transcoder.reference_${case} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set kind=${kind} --set activation=${act} ${extra_str} \
--set objective=${objective} --set steps=4 --set dead_tokens=64 --set debug_dump_step=3 --set debug_dump_path=ref_${case}.h5 --force --out ref_${case} && \
${VPD_PYTHON} ${VPD_TOOLS}/reference/reference_transcoder.py ref_${case}.h5"
           WORKING_DIRECTORY ${TC_DIR})
  set_tests_properties(transcoder.reference_${case} PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "transcoder;lm;python"
                       TIMEOUT 120)
endforeach()

set_tests_properties(grad.test_transcoder_grad PROPERTIES LABELS "grad;transcoder")

# jobscripts/vpd_run.sh (the body of vpd sweep's job array) runs `vpd transcoder` for a
# transcoder config (kind: plt|clt), and with VPD_RESUME=1 resumes it from RUN_DIR/checkpoint.h5:
# a run made by the script, and one stopped after 2 steps and resumed by it, equal the direct run
add_test(NAME transcoder.jobscript COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} VPD_LAUNCH=${VPD_CLI} sh -c
         "rm -rf job_direct job_script job_resumed && \
${VPD_CLI} transcoder ${TC_CFG} ${TC_SETS_STR} --set k=4 --set steps=4 --out job_direct && \
bash ${CMAKE_SOURCE_DIR}/jobscripts/vpd_run.sh job_script job_direct/config.yaml --quiet > job_script.log 2>&1 && \
grep -q 'vpd_run.*transcoder job_direct/config.yaml --out job_script' job_script.log && \
bash ${CMAKE_SOURCE_DIR}/jobscripts/vpd_run.sh job_resumed job_direct/config.yaml --quiet --stop-after 2 > job_resumed.log 2>&1 && \
test -f job_resumed/checkpoint.h5 && ! test -f job_resumed/transcoder.h5 && \
VPD_RESUME=1 bash ${CMAKE_SOURCE_DIR}/jobscripts/vpd_run.sh job_resumed job_direct/config.yaml --quiet >> job_resumed.log 2>&1 && \
grep -q 'vpd_run.*transcoder --resume job_resumed' job_resumed.log && \
${VPD_PYTHON} compare.py job_direct job_script --exact && ${VPD_PYTHON} compare.py job_direct job_resumed --exact"
         WORKING_DIRECTORY ${TC_DIR})
set_tests_properties(transcoder.jobscript PROPERTIES FIXTURES_REQUIRED lm_tiny LABELS "transcoder;lm;hpc;python" TIMEOUT 120)
