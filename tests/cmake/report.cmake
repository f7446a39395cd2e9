# vpd report (labels: lm / decompose, python, cli): the lm_tiny run of lm.cmake with its
# harvest (harvest.cmake) and `vpd eval`, and a TMS 5-2 run harvested here without /eval, are
# rendered into RUN_DIR/report/index.html and opened in headless Chromium
# (tools/reference/check_report.py): every <img> loaded (the page's own check, read with --dump-dom), no
# console output, the card count equals what harvest.h5 holds, the screenshot and every plot
# are not blank. The checker is shown to fail on a corrupt image. Bad input: one-line errors
# naming the file; an existing report is kept without --force.
set(RP_DIR ${VPD_FIXTURES}/report)
file(MAKE_DIRECTORY ${RP_DIR})
set(RP_CHECK ${VPD_PYTHON} ${CMAKE_SOURCE_DIR}/tools/reference/check_report.py)
string(JOIN " " RP_CHECK_STR ${RP_CHECK})

# ---- language model: run.h5 + metrics.jsonl + config.yaml of lm/run_np1, its harvest.h5 ----
add_test(NAME report.lm_setup COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; rm -rf ${RP_DIR}/lm ${RP_DIR}/lm_noharvest; mkdir -p ${RP_DIR}/lm ${RP_DIR}/lm_noharvest
          cp ${VPD_FIXTURES}/harvest/lm/run.h5 ${VPD_FIXTURES}/harvest/lm/harvest.h5 ${RP_DIR}/lm/
          cp ${VPD_FIXTURES}/lm/run_np1/metrics.jsonl ${VPD_FIXTURES}/lm/run_np1/config.yaml ${RP_DIR}/lm/
          ${VPD_CLI} eval ${RP_DIR}/lm --batches 1 --pgd-steps 2 > ${RP_DIR}/lm_eval.txt
          cp ${RP_DIR}/lm/run.h5 ${RP_DIR}/lm/metrics.jsonl ${RP_DIR}/lm_noharvest/")
set_tests_properties(report.lm_setup PROPERTIES FIXTURES_REQUIRED "hv_lm_done;lm_runs" FIXTURES_SETUP rp_lm
                     LABELS "lm;fixture" TIMEOUT 300 RESOURCE_LOCK lm_run_np1)
add_test(NAME report.lm COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${RP_DIR}; rm -rf lm/report lm/attrib.json lm/attrib.dot lm/attrib.svg
          ${VPD_CLI} attrib lm --token-ids 5,6,7,8,9,10 --prune-steps 20 > /dev/null
          ${VPD_CLI} report lm --max-cards 4 > lm_report.txt 2>&1 || { cat lm_report.txt; exit 1; }; cat lm_report.txt
          grep -q 'vpd report: layer 13/13 wte' lm_report.txt
          ${RP_CHECK_STR} lm/report --harvest lm/harvest.h5 --max-cards 4 --screenshot lm_report.png --expect-note 'CI masks' --expect-note 'head_shares.png' --expect-note 'qk_h.0.png' --expect-note 'train_l0.png' --expect-note 'ci_histograms.png' --expect-note 'Attribution graphs' --expect-note 'attrib_0.svg'")
set_tests_properties(report.lm PROPERTIES FIXTURES_REQUIRED rp_lm FIXTURES_SETUP rp_lm_done LABELS "lm;python" TIMEOUT 300)
add_test(NAME report.lm_without_harvest COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${RP_DIR}; rm -rf lm_noharvest/report; ${VPD_CLI} report lm_noharvest
          ${RP_CHECK_STR} lm_noharvest/report --expect-note 'vpd harvest' --expect-note 'CI masks'")
set_tests_properties(report.lm_without_harvest PROPERTIES FIXTURES_REQUIRED rp_lm LABELS "lm;python" TIMEOUT 300)

# ---- toy model (TMS 5-2): no /eval (the page says how to add it); the learned directions ----
add_test(NAME report.toy COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; rm -rf ${RP_DIR}/tms; mkdir -p ${RP_DIR}/tms; cd ${RP_DIR}
          cp ${VPD_FIXTURES}/harvest/tms/run.h5 ${VPD_FIXTURES}/harvest/tms/metrics.jsonl ${VPD_FIXTURES}/harvest/tms/config.yaml tms/
          ${VPD_CLI} harvest tms --n-tokens 20000 --batch 1000 --quiet
          ${VPD_CLI} report tms --max-cards 6
          ${RP_CHECK_STR} tms/report --harvest tms/harvest.h5 --max-cards 6 --screenshot tms_report.png --expect-note 'vpd eval' --expect-note 'toy_linear1.png' --expect-note 'toy_linear2.png'
          ${VPD_CLI} report tms --force --max-cards 2
          ${RP_CHECK_STR} tms/report --harvest tms/harvest.h5 --max-cards 2")
set_tests_properties(report.toy PROPERTIES FIXTURES_REQUIRED hv_tms FIXTURES_SETUP rp_tms LABELS "decompose;python"
                     TIMEOUT 300)

# ---- the checker fails on a page whose image does not load ----
add_test(NAME report.check_fails_on_broken_image COMMAND sh -c
         "set -e; cd ${RP_DIR}; rm -rf broken; cp -r tms/report broken; head -c 200 /dev/zero > broken/train_l0.png
          if ${RP_CHECK_STR} broken > broken.txt 2>&1; then cat broken.txt; echo 'unexpected success'; exit 1; fi
          cat broken.txt; grep -q 'images did not load' broken.txt")
set_tests_properties(report.check_fails_on_broken_image PROPERTIES FIXTURES_REQUIRED rp_tms LABELS "decompose;python"
                     TIMEOUT 300)

# ---- bad input: one line naming the file; nothing overwritten ----
function(rp_expect_fail name pattern cmd)
  add_test(NAME report.${name} COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
           "cd ${RP_DIR}; if ${cmd} > ${name}.out 2> ${name}.err; then echo 'unexpected success'; exit 1; fi; cat ${name}.err
            test $(wc -l < ${name}.err) -eq 1 && grep -q \"${pattern}\" ${name}.err")
  set_tests_properties(report.${name} PROPERTIES LABELS "cli" TIMEOUT 120 ${ARGN})
endfunction()
rp_expect_fail(no_run_h5 "empty/run.h5: no such file" "mkdir -p empty && ${VPD_CLI} report empty")
rp_expect_fail(other_runs_harvest "mixed/harvest.h5 was made from another run"
               "rm -rf mixed && mkdir mixed && cp lm/run.h5 mixed/ && cp tms/harvest.h5 mixed/ && ${VPD_CLI} report mixed")
set_property(TEST report.other_runs_harvest PROPERTY FIXTURES_REQUIRED rp_lm rp_tms)
rp_expect_fail(no_tokenizer "nope.json: no such tokenizer file" "${VPD_CLI} report lm --force --tokenizer nope.json"
               FIXTURES_REQUIRED rp_lm_done)
add_test(NAME report.exists_no_force COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "cd ${RP_DIR}; sha256sum lm/report/index.html lm/report/train_l0.png > rp_sum.txt
          if ${VPD_CLI} report lm 2> rp_exists.err; then echo 'unexpected success'; exit 1; fi
          cat rp_exists.err; grep -q 'lm/report exists: pass --force' rp_exists.err && sha256sum -c rp_sum.txt")
set_tests_properties(report.exists_no_force PROPERTIES LABELS "lm;cli" TIMEOUT 120 FIXTURES_REQUIRED rp_lm_done)

# ---- token decoding with --tokenizer: a byte-level tokenizer.json of the 256 bytes (lm_tiny's vocabulary) ----
file(WRITE ${RP_DIR}/make_bytes_tokenizer.py "import json, sys
sys.path.insert(0, '${CMAKE_SOURCE_DIR}/tools')
from report import bytes_to_unicode
b2u = bytes_to_unicode()
json.dump({'model': {'type': 'BPE', 'vocab': {b2u[b]: b for b in range(256)}, 'merges': []}, 'added_tokens': []},
          open(sys.argv[1], 'w'))
")
add_test(NAME report.lm_tokenizer COMMAND ${CMAKE_COMMAND} -E env ${VPD_TEST_ENV} sh -c
         "set -e; cd ${RP_DIR}; rm -rf lm_tok; mkdir lm_tok; cp lm/run.h5 lm/harvest.h5 lm_tok/
          ${VPD_PYTHON} make_bytes_tokenizer.py bytes.json
          ${VPD_CLI} report lm_tok --max-cards 2 --tokenizer bytes.json
          ${RP_CHECK_STR} lm_tok/report --harvest lm_tok/harvest.h5 --max-cards 2 --expect-note 'Tokens decoded with bytes.json' --expect-note 'no metrics.jsonl'")
set_tests_properties(report.lm_tokenizer PROPERTIES FIXTURES_REQUIRED rp_lm LABELS "lm;python" TIMEOUT 300)
