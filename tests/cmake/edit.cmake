# vpd edit / vpd generate (labels: edit, lm, python; ~1 min on an idle 2-core machine, the timeouts
# allow for a machine shared with long runs): on the lm_tiny decomposition of lm.cmake
# (its run.h5 copied into a directory of our own) —
#  - run-time edits: --where-active above every g is the target exactly (KL 0, same CE); at 0
#    the edit acts; --no-delta with every mask 1 reproduces vpd eval's "unmasked (m = 1)" row
#    (CE and KL) on the same batches;
#  - a baked ablation measures exactly as the same run-time ablation;
#  - the paper's overwrite, baked into a new model dir: its weights against numpy (float64, from
#    run.h5 and the target), its `vpd forward` logits against the PyTorch reference model on
#    those weights; `vpd decompose` starts from it;
#  - vpd generate: greedy equals the PyTorch reference's greedy continuation (through the
#    sliding context), sampling is reproducible by seed;
#  - bad input: one-line errors; an existing output directory is never touched.
set(ED_DIR ${VPD_FIXTURES}/edit)
file(MAKE_DIRECTORY ${ED_DIR})
set(ED_CHECK ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/check_edit.py)
string(JOIN " " ED_CHECK_STR ${ED_CHECK})
set(ED_TARGET ${VPD_FIXTURES}/lm/model)
# a byte-level tokenizer.json whose ids are the byte values (the lm_tiny tokens are bytes)
file(WRITE ${ED_DIR}/byte_tokenizer.py "import json, sys
sys.path.insert(0, sys.argv[2])
from byte_level import bytes_to_unicode
b2u = bytes_to_unicode()
bl = {'type': 'ByteLevel', 'add_prefix_space': False, 'trim_offsets': True, 'use_regex': True}
tok = {'version': '1.0', 'truncation': None, 'padding': None, 'added_tokens': [], 'normalizer': None,
       'pre_tokenizer': bl, 'post_processor': None, 'decoder': bl,
       'model': {'type': 'BPE', 'dropout': None, 'unk_token': None, 'continuing_subword_prefix': None,
                 'end_of_word_suffix': None, 'fuse_unk': False, 'byte_fallback': False, 'ignore_merges': False,
                 'vocab': {b2u[b]: b for b in range(256)}, 'merges': []}}
json.dump(tok, open(sys.argv[1], 'w'))
")
add_test(NAME edit.setup COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; rm -rf run evalrun runs short.bin ow_run toy m_* *.json *.h5 *.txt *.err *.out *.sum
          mkdir run && cp ${VPD_FIXTURES}/lm/run_np1/run.h5 run/ && cp -r run evalrun
          ${VPD_PYTHON} byte_tokenizer.py bytes.json ${CMAKE_SOURCE_DIR}/tools
          head -c 2048 ${VPD_FIXTURES}/lm/val.bin > short.bin"
         WORKING_DIRECTORY ${ED_DIR})
set_tests_properties(edit.setup PROPERTIES FIXTURES_REQUIRED lm_runs FIXTURES_SETUP ed_run LABELS "edit;lm;fixture"
                     RESOURCE_LOCK lm_run_np1 TIMEOUT 300)

function(ed_test name cmd)
  add_test(NAME edit.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c "set -e; ${cmd}" WORKING_DIRECTORY ${ED_DIR})
  set_tests_properties(edit.${name} PROPERTIES FIXTURES_REQUIRED ed_run LABELS "edit;lm;python" TIMEOUT 900 ${ARGN})
endfunction()

# run time: the CI gate (g <= 1 always: nothing is edited; g > 0: the ablation acts)
ed_test(where_active
  "${VPD_CLI} edit run --ablate h.1.mlp.down_proj:5,7 --ablate h.0.attn.v_proj:2 --where-active 1 --measure --n-tokens 1024 --json wa1.json
   ${VPD_PYTHON} -c \"import json; m = json.load(open('wa1.json')); k = m['kl_target_edited']; assert all(v in (0, None) for v in k.values()), k; assert m['before']['ce_all'] == m['after']['ce_all'], m; print('where-active 1: target exactly', k)\"
   ${VPD_CLI} edit run --ablate h.1.mlp.down_proj:5,7 --ablate h.0.attn.v_proj:2 --where-active 0 --measure --n-tokens 1024 --json wa0.json
   ${VPD_CLI} edit run --ablate h.1.mlp.down_proj:5,7 --ablate h.0.attn.v_proj:2 --measure --n-tokens 1024 --json all.json
   ${ED_CHECK_STR} expect wa0.json positions eq 1024 kl_target_edited.firing gt 1e-9
   ${ED_CHECK_STR} expect all.json kl_target_edited.firing gt 1e-9")
# --no-delta with m = 1 everywhere is the masked model without Δ: vpd eval's unmasked row
ed_test(no_delta_vs_eval
  "${VPD_CLI} eval evalrun --batches 2 --no-pgd > eval.txt
   n=$(${VPD_PYTHON} -c \"import h5py; print(int(h5py.File('evalrun/run.h5')['eval'].attrs['positions']))\")
   ${VPD_CLI} edit run --no-delta --scale h.0.mlp.c_fc:0=1 --measure --n-tokens $n --fire-threshold 2 --json nd.json
   ${VPD_PYTHON} -c \"import h5py, json, math
m = json.load(open('nd.json')); e = h5py.File('evalrun/run.h5')['eval']['masks']
u, t = e['unmasked (m = 1)'].attrs, e['target'].attrs
print('edit --no-delta:', m['after']['ce_all'], m['kl_target_edited']['off_target'], ' eval unmasked:', u['ce'], u['output_loss'])
assert m['firing'] == 0 and m['off_target'] == m['positions']
assert math.isclose(m['before']['ce_all'], t['ce'], rel_tol=1e-5)
assert math.isclose(m['after']['ce_all'], u['ce'], rel_tol=1e-5)
assert math.isclose(m['kl_target_edited']['off_target'], u['output_loss'], rel_tol=1e-4)
assert u['output_loss'] > 1e-3\"")
# a baked ablation is the run-time ablation (everywhere)
ed_test(bake_equals_runtime
  "${VPD_CLI} edit run --ablate h.1.mlp.down_proj:5,7 --scale h.0.mlp.c_fc:3=2.5 --measure --n-tokens 1024 --fire-threshold 0.9 --json rt.json
   ${VPD_CLI} edit run --bake-ablate h.1.mlp.down_proj:5,7 --scale h.0.mlp.c_fc:3=2.5 --out m_bake --measure --n-tokens 1024 --fire-threshold 0.9 --json bk.json
   ${ED_CHECK_STR} same rt.json bk.json --rtol 1e-4 --atol 1e-9
   ${ED_CHECK_STR} expect bk.json kl_target_edited.firing gt 1e-9
   ${ED_CHECK_STR} weights run ${ED_TARGET} m_bake")
# the paper's overwrite: weights vs numpy, logits vs PyTorch, decompose loads it
ed_test(overwrite_pytorch
  "${VPD_CLI} edit run --overwrite h.1.mlp.down_proj:5=e --alpha 3 --tokenizer bytes.json --out m_ow --measure --n-tokens 1024 --fire-threshold 0.9 > ow.txt
   cat ow.txt; grep -q \"P('e' (#101)) at firing positions\" ow.txt; test -f m_ow/edit_measure.json; cmp bytes.json m_ow/tokenizer.json
   ${VPD_CLI} forward m_ow --tokens short.bin --out ow_fw.h5
   ${ED_CHECK_STR} weights run ${ED_TARGET} m_ow --forward ow_fw.h5
   ${VPD_CLI} edit run --overwrite h.0.attn.o_proj:1=#40 --overwrite h.1.mlp.down_proj:9=#41 --alpha -2 --out m_ow2
   ${VPD_CLI} forward m_ow2 --tokens short.bin --out ow2_fw.h5
   ${ED_CHECK_STR} weights run ${ED_TARGET} m_ow2 --forward ow2_fw.h5
   ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/lm_tiny.yaml --set target.path=m_ow --set data.train=${VPD_FIXTURES}/lm/train.bin --set data.eval=${VPD_FIXTURES}/lm/val.bin --set steps=2 --set faithfulness_warmup_steps=1 --quiet --force --out ow_run
   test -f ow_run/run.h5")
# generate: greedy = the PyTorch reference's greedy (prompt + new tokens > n_ctx 64: the context slides)
ed_test(generate
  "prompt=$(${VPD_PYTHON} -c \"import numpy as np; print(bytes(np.fromfile('${VPD_FIXTURES}/lm/val.bin', '<u2')[:40].astype(np.uint8)).decode().replace(chr(10), ' '))\")
   ${VPD_CLI} generate ${ED_TARGET} --tokenizer bytes.json --prompt \"$prompt\" --max-new 60 --ids > gen.txt; cat gen.txt
   ${ED_CHECK_STR} greedy ${ED_TARGET} --prompt-ids \"$(grep '^prompt ids:' gen.txt | cut -d: -f2)\" --generated-ids \"$(grep '^generated ids:' gen.txt | cut -d: -f2)\"
   ${VPD_CLI} edit run --bake-ablate h.1.mlp.down_proj:0,1,2,3,4,5,6,7 --tokenizer bytes.json --out m_gen
   ${VPD_CLI} generate m_gen --prompt \"$prompt\" --max-new 60 --ids > gen2.txt
   ${ED_CHECK_STR} greedy m_gen --prompt-ids \"$(grep '^prompt ids:' gen2.txt | cut -d: -f2)\" --generated-ids \"$(grep '^generated ids:' gen2.txt | cut -d: -f2)\"
   ${VPD_CLI} generate m_gen --prompt \"$prompt\" --max-new 40 --temperature 1 --seed 5 --ids > s1.txt
   ${VPD_CLI} generate m_gen --prompt \"$prompt\" --max-new 40 --temperature 1 --seed 5 --ids > s2.txt
   ${VPD_CLI} generate m_gen --prompt \"$prompt\" --max-new 40 --temperature 1 --seed 6 --ids > s3.txt
   cmp s1.txt s2.txt; if cmp -s s1.txt s3.txt; then echo 'seeds 5 and 6 sampled the same 40 tokens'; exit 1; fi ")

# generate on a RUN_DIR: no edit = the target's generation; run-time --ablate = the baked
# ablation's generation (m_gen of edit.generate), greedy, through the sliding context
ed_test(generate_runtime
  "prompt=$(${VPD_PYTHON} -c \"import numpy as np; print(bytes(np.fromfile('${VPD_FIXTURES}/lm/val.bin', '<u2')[:40].astype(np.uint8)).decode().replace(chr(10), ' '))\")
   ${VPD_CLI} generate run --tokenizer bytes.json --prompt \"$prompt\" --max-new 60 --ids > rg0.txt
   grep '^generated ids:' gen.txt > want0.txt; grep '^generated ids:' rg0.txt > got0.txt; cmp want0.txt got0.txt
   ${VPD_CLI} generate run --tokenizer bytes.json --ablate h.1.mlp.down_proj:0,1,2,3 --ablate h.1.mlp.down_proj:4,5,6,7 --prompt \"$prompt\" --max-new 60 --ids > rg1.txt; cat rg1.txt
   grep '^generated ids:' gen2.txt > want1.txt; grep '^generated ids:' rg1.txt > got1.txt; cmp want1.txt got1.txt
   if cmp -s got0.txt got1.txt; then echo 'the ablation did not change the generation'; exit 1; fi
   ${VPD_CLI} generate run --tokenizer bytes.json --scale h.1.mlp.down_proj:3=4 --prompt \"$prompt\" --max-new 20 > rg2.txt
   if ${VPD_CLI} generate ${ED_TARGET} --ablate h.1.mlp.down_proj:3 --prompt hi 2> rg3.err; then echo 'unexpected success'; exit 1; fi
   cat rg3.err; grep -q 'need a decomposition' rg3.err
   if ${VPD_CLI} generate run --tokenizer bytes.json --ablate nope:3 --prompt hi 2> rg4.err; then echo 'unexpected success'; exit 1; fi
   cat rg4.err; test $(wc -l < rg4.err) -eq 1"
  DEPENDS edit.generate)

# under mpiexec rank 0 generates alone: the run-time edits on 2 ranks give rank 0's generation
# of 1 rank and end (the target's load was a collective of the world that rank 1 never joined)
ed_test(generate_runtime_2ranks
  "prompt=$(${VPD_PYTHON} -c \"import numpy as np; print(bytes(np.fromfile('${VPD_FIXTURES}/lm/val.bin', '<u2')[:40].astype(np.uint8)).decode().replace(chr(10), ' '))\")
   timeout 120 ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 ${VPD_CLI} generate run --tokenizer bytes.json --ablate h.1.mlp.down_proj:0,1,2,3 --ablate h.1.mlp.down_proj:4,5,6,7 --prompt \"$prompt\" --max-new 60 --ids > rg1_2.txt
   grep '^generated ids:' rg1_2.txt > got1_2.txt; cmp got1.txt got1_2.txt"
  DEPENDS edit.generate_runtime LABELS "edit;lm;mpi")

# ---- bad input: one line naming what is wrong; an existing directory is never touched ----
function(ed_fail name pattern cmd)
  add_test(NAME edit.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "if ${cmd} > ${name}.out 2> ${name}.err; then echo 'unexpected success'; exit 1; fi; cat ${name}.err; test $(wc -l < ${name}.err) -eq 1; grep -q \"${pattern}\" ${name}.err"
           WORKING_DIRECTORY ${ED_DIR})
  set_tests_properties(edit.${name} PROPERTIES FIXTURES_REQUIRED ed_run LABELS "edit;lm;cli" TIMEOUT 300)
endfunction()
ed_fail(bad_layer "unknown layer 'h.9.mlp.c_fc': the run decomposes" "${VPD_CLI} edit run --ablate h.9.mlp.c_fc:1 --measure")
ed_fail(bad_c "subcomponent 64 out of range: layer h.1.mlp.down_proj has C = 64" "${VPD_CLI} edit run --ablate h.1.mlp.down_proj:3,64 --measure")
ed_fail(bad_token "token 'xyz' is not in the vocabulary" "${VPD_CLI} edit run --overwrite h.1.mlp.down_proj:1=xyz --tokenizer bytes.json --out m_none")
ed_fail(bad_token_id "token #256 is not in the vocabulary \\[0, 256)" "${VPD_CLI} edit run --overwrite h.1.mlp.down_proj:1=#256 --out m_none")
ed_fail(overwrite_not_residual "must write into the residual stream" "${VPD_CLI} edit run --overwrite h.1.mlp.c_fc:1=#3 --out m_none")
ed_fail(bake_tied_wte "tied to the unembedding" "${VPD_CLI} edit run --bake-ablate wte:1 --out m_none")
ed_fail(bake_where_active "cannot be baked" "${VPD_CLI} edit run --ablate h.1.mlp.c_fc:1 --where-active 0.1 --out m_none")
ed_fail(long_prompt "the prompt is 100 tokens, longer than the model's context (n_ctx 64)"
        "${VPD_CLI} generate ${ED_TARGET} --tokenizer bytes.json --prompt $(printf 'a%.0s' $(seq 100))")
ed_fail(no_tokenizer "has no tokenizer.json: pass --tokenizer FILE" "${VPD_CLI} generate ${ED_TARGET} --prompt hello")
ed_fail(toy_prompt "is a tms model: --prompt needs a language model"
        "${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/reference_models.py --kind tms --out toy >/dev/null && ${VPD_CLI} generate toy --prompt hello")
add_test(NAME edit.out_exists COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; rm -rf m_exists; mkdir m_exists; echo keep > m_exists/config.json; sha256sum m_exists/config.json > exists.sum
          if ${VPD_CLI} edit run --bake-ablate h.1.mlp.down_proj:1 --out m_exists 2> exists.err; then echo 'unexpected success'; exit 1; fi
          cat exists.err; grep -q 'm_exists exists: the edited model goes to a NEW directory' exists.err
          sha256sum -c exists.sum; test $(ls m_exists | wc -l) -eq 1; ! ls -d m_exists.tmp-* 2>/dev/null"
         WORKING_DIRECTORY ${ED_DIR})
set_tests_properties(edit.out_exists PROPERTIES FIXTURES_REQUIRED ed_run LABELS "edit;lm;cli" TIMEOUT 300)
