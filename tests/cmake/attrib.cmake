# vpd attrib (labels: attrib, lm): the attribution graph of a byte prompt on the lm_tiny
# decomposition of lm.cmake (read only; the files go to fixtures/attrib), on 1 and 2 ranks:
# the two graphs must be the same (everything but the timing), and the JSON is checked for
# circuit-tracer's layout (metadata, nodes, links naming existing nodes, the logit node).
# The edges themselves are checked against finite differences in tests/grad/test_attrib_grad.c.
# Bad input: one-line errors, an existing output is never overwritten.
set(AT_DIR ${VPD_FIXTURES}/attrib)
file(MAKE_DIRECTORY ${AT_DIR})
set(AT_RUN ${VPD_FIXTURES}/lm/run_np1)
set(AT_MPIEXEC ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG})
string(JOIN " " AT_MPIEXEC_STR ${AT_MPIEXEC})
file(WRITE ${AT_DIR}/check_attrib.py "import json, sys
def load(p):
    g = json.load(open(p))
    return g
a = load(sys.argv[1])
m = a['metadata']
assert m['scan'] == 'vpd' and len(m['prompt_tokens']) == 7, m['prompt_tokens']
ids = {n['node_id'] for n in a['nodes']}
assert len(ids) == len(a['nodes']) == m['info']['n_nodes'], (len(ids), len(a['nodes']))
for k in ('node_id', 'feature', 'layer', 'ctx_idx', 'feature_type', 'activation', 'influence', 'clerp'):
    assert all(k in n for n in a['nodes']), k
logit = [n for n in a['nodes'] if n['feature_type'] == 'logit']
assert len(logit) == 1 and logit[0]['is_target_logit'] and logit[0]['ctx_idx'] == m['info']['target_position']
subs = [n for n in a['nodes'] if n['feature_type'] == 'vpd subcomponent']
assert len(subs) > 50, len(subs)
assert all(0 < n['g'] <= 1 for n in subs)
assert len(a['links']) == m['info']['n_links'] > 100
assert all(l['source'] in ids and l['target'] in ids for l in a['links'])
assert any(l['target'] == logit[0]['node_id'] for l in a['links'])
pos = {n['node_id']: n['ctx_idx'] for n in a['nodes']}
lay = {n['node_id']: n['layer_name'] for n in a['nodes']}
cross = [l for l in a['links'] if pos[l['source']] != pos[l['target']]]
assert cross and all(lay[l['source']].endswith(('k_proj', 'v_proj')) and lay[l['target']].endswith('o_proj')
                     and pos[l['source']] < pos[l['target']] for l in cross)
if len(sys.argv) > 2:
    b = load(sys.argv[2])
    for g in (a, b):
        del g['metadata']['info']['seconds'], g['metadata']['info']['ranks']
    assert a == b, 'the graphs of 1 and 2 ranks differ'
    print('1 and 2 ranks: the same graph')
print('attrib json ok:', len(a['nodes']), 'nodes', len(a['links']), 'links', len(cross), 'cross-position')
")
set(AT_ARGS --token-ids 104,101,108,108,111,32,119 --node-threshold 1 --edge-threshold 1 --batch 7 --prune-steps 0)
string(JOIN " " AT_ARGS_STR ${AT_ARGS})
add_test(NAME attrib.lm_1rank_2ranks COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${AT_DIR}; rm -f a1.* a2.* pruned.* c0.* c1.* c2.*
          ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --out a1.json | tee out1.txt
          grep -q 'on 1 rank; peak RSS' out1.txt && test -s a1.svg && test -s a1.dot
          ${AT_MPIEXEC_STR} 2 ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --out a2.json | tee out2.txt
          grep -q 'on 2 ranks; peak RSS' out2.txt
          ${VPD_PYTHON} check_attrib.py a1.json a2.json
          ${VPD_CLI} attrib ${AT_RUN} --prompt 'hello world ' --position 10 --target-token l --prune-steps 0 --out pruned.json
          ${VPD_PYTHON} -c \"import json; g = json.load(open('pruned.json')); i = g['metadata']['info']; assert i['n_nodes'] < i['n_nodes_full'] and i['target_str'] == 'l' and i['target_position'] == 10, i; print('influence-pruned:', i['n_nodes'], 'of', i['n_nodes_full'], 'nodes')\"
          ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --max-in-links 0 --out c0.json
          ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --max-in-links 3 --out c1.json | tee outc1.txt
          grep -q 'in-link cap 3: [1-9][0-9]* links dropped' outc1.txt
          ${AT_MPIEXEC_STR} 2 ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --max-in-links 3 --out c2.json
          ${VPD_PYTHON} check_attrib.py c1.json c2.json
          ${VPD_PYTHON} check_cap.py c0.json c1.json 3")
file(WRITE ${AT_DIR}/check_cap.py "import json, sys, collections
full, cap, K = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
f, c = full['metadata']['info'], cap['metadata']['info']
assert f['max_in_links'] == 0 and f['n_links_dropped_by_cap'] == 0 and c['max_in_links'] == K, (f, c)
assert c['n_links_full'] + c['n_links_dropped_by_cap'] == f['n_links_full'], (c, f)
indeg = collections.Counter(l['target'] for l in cap['links'])
assert max(indeg.values()) <= K, max(indeg.values())
# every kept link is one of the full graph's K largest |w| into its target (ties: the smaller source)
byt = collections.defaultdict(list)
for l in full['links']: byt[l['target']].append((-abs(l['weight']), l['source']))
top = {t: {s for _, s in sorted(v)[:K]} for t, v in byt.items()}
assert all(l['source'] in top[l['target']] for l in cap['links'])
print('in-link cap', K, ':', c['n_links_full'], 'of', f['n_links_full'], 'links kept; max in-degree', max(indeg.values()))
")
set_tests_properties(attrib.lm_1rank_2ranks PROPERTIES FIXTURES_REQUIRED lm_runs LABELS "attrib;lm;mpi;python"
                     TIMEOUT 600 PROCESSORS 2 RESOURCE_LOCK lm_run_np1)

# ---- bad input: one line each; nothing overwritten ----
function(at_expect_fail name pattern cmd)
  add_test(NAME attrib.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "cd ${AT_DIR}; if ${cmd} > ${name}.out 2> ${name}.err; then echo 'unexpected success'; exit 1; fi; cat ${name}.err; test $(grep -c '^vpd attrib' ${name}.err) -eq 1 && grep -q -e \"${pattern}\" ${name}.err")
  set_tests_properties(attrib.${name} PROPERTIES LABELS "attrib;lm" TIMEOUT 120 ${ARGN})
endfunction()
at_expect_fail(too_long "the prompt has 70 tokens, longer than the model's context n_ctx = 64"
               "${VPD_CLI} attrib ${AT_RUN} --prompt 0123456789012345678901234567890123456789012345678901234567890123456789 --out long.json"
               FIXTURES_REQUIRED lm_runs)
at_expect_fail(bad_target "--target-token #300: not a token id of the vocabulary \\\\[0, 256)"
               "${VPD_CLI} attrib ${AT_RUN} --prompt hello --target-token '#300' --out bad.json" FIXTURES_REQUIRED lm_runs)
at_expect_fail(bad_position "--position 9 is outside the prompt's 5 tokens"
               "${VPD_CLI} attrib ${AT_RUN} --prompt hello --position 9 --out bad.json" FIXTURES_REQUIRED lm_runs)
at_expect_fail(bad_id "token id 999 at position 1 is outside the vocabulary"
               "${VPD_CLI} attrib ${AT_RUN} --token-ids 1,999 --out bad.json" FIXTURES_REQUIRED lm_runs)
at_expect_fail(no_run "nowhere/run.h5: no such file" "${VPD_CLI} attrib nowhere --prompt hi")
add_test(NAME attrib.exists_no_force COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${AT_DIR}; sha256sum a1.json > sum.txt
          if ${VPD_CLI} attrib ${AT_RUN} --prompt hi --out a1.json 2> exists.err; then echo 'unexpected success'; exit 1; fi
          cat exists.err; grep -q 'a1.json exists: pass --force' exists.err && sha256sum -c sum.txt")
set_tests_properties(attrib.exists_no_force PROPERTIES LABELS "attrib;lm" TIMEOUT 120 FIXTURES_REQUIRED lm_runs
                     DEPENDS attrib.lm_1rank_2ranks)
# a toy target given a prompt: a 2-step TMS 5-2 decomposition of our own
add_test(NAME attrib.toy_target COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${VPD_FIXTURES}; ${VPD_CLI} decompose ${CMAKE_SOURCE_DIR}/configs/tms_5-2.yaml --set steps=2 --set target.path=models/tms_5-2 --force --out ${AT_DIR}/tms --quiet > /dev/null 2>&1 || exit 1
          if ${VPD_CLI} attrib ${AT_DIR}/tms --prompt hi --out ${AT_DIR}/toy.json 2> ${AT_DIR}/toy.err; then echo 'unexpected success'; exit 1; fi
          cat ${AT_DIR}/toy.err; grep -q 'the target is a tms model; attribution graphs need a language model' ${AT_DIR}/toy.err")
set_tests_properties(attrib.toy_target PROPERTIES LABELS "attrib;lm" TIMEOUT 120 FIXTURES_REQUIRED tms52)

# ---- prompts longer than the trained context (--max-context, rotary lm_tiny, n_ctx 64) and
# row-block attention: a 72-token prompt runs with a warning on 1 and 2 ranks (same graph);
# the 7-token graph with --attention rows equals the full-attention one (a1.json) to float
# rounding; and the batch shrinks to fit a small --mem-budget with the same graph.
file(WRITE ${AT_DIR}/check_same.py "import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
tol = float(sys.argv[3])
assert [n['node_id'] for n in a['nodes']] == [n['node_id'] for n in b['nodes']], 'different nodes'
la = {(l['source'], l['target']): l['weight'] for l in a['links']}
lb = {(l['source'], l['target']): l['weight'] for l in b['links']}
big = max(abs(w) for w in la.values())
# an edge may vanish (exactly 0 in one run) only when it is tiny
diff = max(abs(la.get(k, 0) - lb.get(k, 0)) for k in set(la) | set(lb))
assert diff <= tol * big, (diff, big)
print(len(la), 'links; max |difference|', diff, 'of max |weight|', big)
")
add_test(NAME attrib.max_context COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${AT_DIR}; rm -f long1.* long2.* rows7.* budget.*
          P=\"$(${VPD_PYTHON} -c \"print(('the quick brown fox jumps over the lazy dog. ' * 2)[:72], end='')\")\"
          ${VPD_CLI} attrib ${AT_RUN} --prompt \"$P\" --max-context 80 --prune-steps 0 --out long1.json 2> long1.err | tee long1.txt
          cat long1.err; grep -q 'warning: the prompt has 72 tokens but the model was trained on n_ctx = 64' long1.err
          grep -q 'attention full' long1.txt
          ${AT_MPIEXEC_STR} 2 ${VPD_CLI} attrib ${AT_RUN} --prompt \"$P\" --max-context 80 --prune-steps 0 --attention full --out long2.json
          ${VPD_PYTHON} check_same.py long1.json long2.json 0
          ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --attention rows --out rows7.json | tee rows7.txt
          grep -q 'attention row blocks' rows7.txt
          ${VPD_PYTHON} check_same.py a1.json rows7.json 1e-4
          ${VPD_CLI} attrib ${AT_RUN} ${AT_ARGS_STR} --mem-budget 0.05 --out budget.json | tee budget.txt
          grep -q 'targets per backward (of --batch 7) fit --mem-budget 0.05 MiB' budget.txt
          ${VPD_PYTHON} check_same.py a1.json budget.json 1e-5")
set_tests_properties(attrib.max_context PROPERTIES FIXTURES_REQUIRED lm_runs LABELS "attrib;lm;mpi;python"
                     TIMEOUT 300 PROCESSORS 2 DEPENDS attrib.lm_1rank_2ranks)
at_expect_fail(past_max_context "the prompt has 70 tokens, longer than --max-context 66"
               "${VPD_CLI} attrib ${AT_RUN} --prompt 0123456789012345678901234567890123456789012345678901234567890123456789 --max-context 66 --out long.json"
               FIXTURES_REQUIRED lm_runs)

# the pruned graph on 1 and 2 ranks (rank 0 optimises, the CI is broadcast): identical files
add_test(NAME attrib.pruned_1rank_2ranks COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${AT_DIR}; rm -f pr1.* pr2.*
          ${VPD_CLI} attrib ${AT_RUN} --prompt 'hello world ' --prune-steps 30 --node-threshold 1 --edge-threshold 1 --out pr1.json | tee pr1.txt
          grep -q '^pruned: ' pr1.txt
          ${AT_MPIEXEC_STR} 2 ${VPD_CLI} attrib ${AT_RUN} --prompt 'hello world ' --prune-steps 30 --node-threshold 1 --edge-threshold 1 --out pr2.json
          ${VPD_PYTHON} check_same.py pr1.json pr2.json 0
          ${VPD_PYTHON} -c \"import json; a, b = (json.load(open(p))['metadata']['info'] for p in ('pr1.json', 'pr2.json')); k = ('p_target_pruned', 'p_target_unpruned', 'n_nodes_full'); assert all(a[x] == b[x] for x in k), [(a[x], b[x]) for x in k]; print('pruned on 1 and 2 ranks:', a['n_nodes_full'], 'nodes', a['p_target_pruned'])\"")
set_tests_properties(attrib.pruned_1rank_2ranks PROPERTIES FIXTURES_REQUIRED lm_runs LABELS "attrib;lm;mpi;python"
                     TIMEOUT 300 PROCESSORS 2 DEPENDS attrib.max_context)
