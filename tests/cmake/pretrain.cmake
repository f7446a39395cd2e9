# Tests of `vpd pretrain` (src/cli/cmd_pretrain.c). This file is included by
# tests/CMakeLists.txt to register the tests, and runs itself as a `cmake -P` script
# (PT_MODE set) to execute one and check its outputs:
#   pretrain.tms_5-2    2000 steps of configs/tms_5-2-target.yaml; the final eval loss must be
#                       below 2.5e-3 (measured 1.74e-3; the pentagon optimum is ~1.8e-3, the
#                       nearest local minimum with one feature dead ~3.6e-3), and PyTorch
#                       (numpy reading model.safetensors) must get the same loss on fresh data
#   pretrain.tms_5-2_np2  the same on 2 ranks (each draws its half of every global batch)
#   pretrain.lm_tiny    30 steps of configs/lm_tiny-target.yaml on byte tokens of the
#                       project's sources; the validation loss must fall below ln 256
#   pretrain.errors     unknown key (with its line), out-of-vocabulary token (file + byte offset)
if(DEFINED PT_MODE)
  function(pt_run out_var)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    set(${out_var} "${out}${err}" PARENT_SCOPE)
    set(${out_var}_rc "${rc}" PARENT_SCOPE)
  endfunction()
  # last value of "key": number in a jsonl file
  function(pt_last_value file key out_var)
    file(STRINGS ${file} lines REGEX "\"${key}\"")
    list(GET lines -1 last)
    string(REGEX MATCH "\"${key}\": ([-+0-9.eE]+)" _ "${last}")
    set(${out_var} "${CMAKE_MATCH_1}" PARENT_SCOPE)
  endfunction()

  if(PT_MODE STREQUAL "tms")
    set(dir ${PT_FIXTURES}/pretrain_tms_5-2${PT_SUFFIX})
    file(REMOVE_RECURSE ${dir})
    pt_run(log ${PT_LAUNCH} ${PT_CLI} pretrain ${PT_SRC}/configs/tms_5-2-target.yaml --out ${dir} --set steps=2000)
    message("${log}")
    if(NOT log_rc EQUAL 0)
      message(FATAL_ERROR "vpd pretrain exited with ${log_rc}")
    endif()
    foreach(f config.json model.safetensors training.jsonl pretrain_config.yaml)
      if(NOT EXISTS ${dir}/${f})
        message(FATAL_ERROR "missing ${dir}/${f}")
      endif()
    endforeach()
    pt_last_value(${dir}/training.jsonl eval_loss loss)
    message("final eval loss ${loss}")
    if(NOT loss LESS 2.5e-3)
      message(FATAL_ERROR "TMS 5-2 final eval loss ${loss} is not below 2.5e-3")
    endif()
    # independent check of the saved file and the loss: numpy reads model.safetensors
    # and evaluates spd's TMS on fresh U(0,1) features with p = 0.05
    if(PT_PYTHON)
      file(WRITE ${dir}/check.py "
import json, struct, sys, numpy as np
b = open(sys.argv[1] + '/model.safetensors', 'rb').read()
n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n])
def t(k):
    s, e = h[k]['data_offsets']; return np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(h[k]['shape'])
W1, W2, bias = t('linear1.weight'), t('linear2.weight'), t('linear2.bias')
assert np.array_equal(W2, W1.T), 'linear2.weight is not linear1.weight^T'
rng = np.random.default_rng(0)
x = rng.random((200000, 5)) * (rng.random((200000, 5)) < 0.05)
y = np.maximum((x @ W1.T) @ W2.T + bias, 0)
loss = float(((x - y) ** 2).mean()); vpd = float(sys.argv[2])
print('numpy loss on fresh data %.6g, vpd eval loss %.6g' % (loss, vpd))
sys.exit(0 if abs(loss - vpd) < 0.1 * vpd else 1)
")
      pt_run(chk ${PT_PYTHON} ${dir}/check.py ${dir} ${loss})
      message("${chk}")
      if(NOT chk_rc EQUAL 0)
        message(FATAL_ERROR "the saved model's loss (numpy) disagrees with vpd's")
      endif()
    endif()

  elseif(PT_MODE STREQUAL "lm")
    set(dir ${PT_FIXTURES}/pretrain_lm_tiny)
    file(REMOVE_RECURSE ${dir})
    file(MAKE_DIRECTORY ${dir})
    # byte tokens (uint16 little-endian) of a fixed Markov chain: 90 % train, 10 % val
    pt_run(mk ${PT_PYTHON} ${PT_SRC}/tests/data/make_lm_tokens.py ${dir} 200000)
    if(NOT mk_rc EQUAL 0)
      message(FATAL_ERROR "writing token files with ${PT_PYTHON}: ${mk}")
    endif()
    pt_run(log ${PT_CLI} pretrain ${PT_SRC}/configs/lm_tiny-target.yaml --out ${dir}/model --set steps=30
           --set train_log_freq=10 --set eval_freq=10 --set train_tokens=${dir}/train.bin --set val_tokens=${dir}/val.bin)
    message("${log}")
    if(NOT log_rc EQUAL 0)
      message(FATAL_ERROR "vpd pretrain exited with ${log_rc}")
    endif()
    file(STRINGS ${dir}/model/training.jsonl vals REGEX "val_loss")
    list(LENGTH vals nv)
    if(nv LESS 4)
      message(FATAL_ERROR "training.jsonl has ${nv} val_loss lines, expected 4 (steps 0, 10, 20, 30)")
    endif()
    pt_last_value(${dir}/model/training.jsonl val_loss loss)
    if(NOT loss LESS 5.0)
      message(FATAL_ERROR "lm_tiny val loss ${loss} after 30 steps is not below 5.0 (ln 256 = 5.55)")
    endif()

  elseif(PT_MODE STREQUAL "errors")
    set(dir ${PT_FIXTURES}/pretrain_errors)
    file(REMOVE_RECURSE ${dir})
    file(MAKE_DIRECTORY ${dir})
    file(READ ${PT_SRC}/configs/tms_5-2-target.yaml cfg)
    string(REPLACE "train_log_freq:" "train_log_frq:" bad "${cfg}")
    file(WRITE ${dir}/typo.yaml "${bad}")
    pt_run(log ${PT_CLI} pretrain ${dir}/typo.yaml --out ${dir}/out)
    message("${log}")
    if(log_rc EQUAL 0 OR NOT log MATCHES "typo.yaml:[0-9]+:.*train_log_frq")
      message(FATAL_ERROR "a misspelt key was not reported with file and line")
    endif()
    # out-of-vocabulary id: token 100 of the file is 300 >= vocab 256
    pt_run(mk ${PT_PYTHON} -c "import sys
ids=[i%200 for i in range(1000)]
ids[100]=300
open(sys.argv[1],'wb').write(b''.join(i.to_bytes(2,'little') for i in ids))" ${dir}/oov.bin)
    pt_run(log ${PT_CLI} pretrain ${PT_SRC}/configs/lm_tiny-target.yaml --out ${dir}/lm --set steps=2000
           --set train_tokens=${dir}/oov.bin --set val_tokens=null --set seq_len=64)
    message("${log}")
    if(log_rc EQUAL 0 OR NOT log MATCHES "oov.bin: token id 300 at byte offset 200 ")
      message(FATAL_ERROR "an out-of-vocabulary token was not reported with file and byte offset")
    endif()
  endif()
  return()
endif()

set(_pt_args -DPT_CLI=$<TARGET_FILE:vpd-cli> -DPT_SRC=${CMAKE_SOURCE_DIR} -DPT_FIXTURES=${VPD_FIXTURES}
             -DPT_PYTHON=${VPD_PYTHON})
add_test(NAME pretrain.tms_5-2 COMMAND ${CMAKE_COMMAND} ${_pt_args} -DPT_MODE=tms -P ${CMAKE_CURRENT_LIST_FILE})
add_test(NAME pretrain.lm_tiny COMMAND ${CMAKE_COMMAND} ${_pt_args} -DPT_MODE=lm -P ${CMAKE_CURRENT_LIST_FILE})
add_test(NAME pretrain.errors COMMAND ${CMAKE_COMMAND} ${_pt_args} -DPT_MODE=errors -P ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(pretrain.tms_5-2 pretrain.lm_tiny pretrain.errors PROPERTIES LABELS "pretrain" TIMEOUT 120
                     ENVIRONMENT "${VPD_TEST_ENV}" WORKING_DIRECTORY ${VPD_FIXTURES})
if(MPIEXEC_EXECUTABLE)
  # the data is layout-independent, so 2 ranks train the 1-rank model up to the summation
  # order of the gradient average (measured: the same losses to 6 digits)
  add_test(NAME pretrain.tms_5-2_np2 COMMAND ${CMAKE_COMMAND} ${_pt_args} -DPT_MODE=tms -DPT_SUFFIX=_np2
           "-DPT_LAUNCH=${MPIEXEC_EXECUTABLE};${MPIEXEC_NUMPROC_FLAG};2" -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(pretrain.tms_5-2_np2 PROPERTIES LABELS "pretrain;mpi" TIMEOUT 120 PROCESSORS 2
                       ENVIRONMENT "${VPD_TEST_ENV}" WORKING_DIRECTORY ${VPD_FIXTURES})
endif()
