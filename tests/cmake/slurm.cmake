# Tests with a real single-node Slurm (label: slurm; tools/local-slurm.sh, see its README in
# ../shared/slurm). CI runs as root with Debian's mirror reachable: slurm.install installs the
# Slurm packages (apt, ~5 s) when sbatch is missing, slurm.start starts munged + slurmctld +
# slurmd (cred_expire 5 s, so a requeued job restarts after ~6 s), slurm.stop stops them.
#   slurm.array_requeue  3-task job array from `vpd sweep`; task 1 gets USR1 mid-run,
#                        checkpoints, is requeued and resumes; all equal uninterrupted runs
#   slurm.kill9_resume   vpd killed -9 inside a checkpoint write under srun; the resubmitted
#                        job resumes from the previous complete checkpoint, bitwise exact
# Run them with: ctest -L slurm   (about 30 s; exclude them with -LE slurm)
set(VPD_LOCAL_SLURM ${CMAKE_SOURCE_DIR}/tools/local-slurm.sh)
set(VPD_SLURM_ENV ${VPD_TEST_ENV} "SLURM_CONF=/tmp/local-slurm/etc/slurm.conf" "MPIEXEC=${MPIEXEC_EXECUTABLE}"
    "VPD_TOOLS_DIR=${VPD_TOOLS}")

add_test(NAME slurm.install COMMAND sh -c "command -v sbatch >/dev/null && command -v slurmctld >/dev/null || bash ${VPD_LOCAL_SLURM} install")
add_test(NAME slurm.start COMMAND ${CMAKE_COMMAND} -E env LOCAL_SLURM_CRED_EXPIRE=5 bash ${VPD_LOCAL_SLURM} start)
add_test(NAME slurm.stop COMMAND bash ${VPD_LOCAL_SLURM} stop)
set_tests_properties(slurm.install PROPERTIES FIXTURES_SETUP slurm_pkgs LABELS "slurm" TIMEOUT 300)
set_tests_properties(slurm.start PROPERTIES FIXTURES_SETUP slurm FIXTURES_REQUIRED slurm_pkgs LABELS "slurm" TIMEOUT 60)
set_tests_properties(slurm.stop PROPERTIES FIXTURES_CLEANUP slurm LABELS "slurm" TIMEOUT 60)

add_test(NAME slurm.array_requeue
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hpc/slurm_array.sh ${VPD_CLI} ${VPD_PYTHON} ${VPD_TOOLS}
                 ${CMAKE_SOURCE_DIR}/tests/configs/tms_all_losses.yaml
         WORKING_DIRECTORY ${VPD_FIXTURES})
add_test(NAME slurm.kill9_resume
         COMMAND bash ${CMAKE_SOURCE_DIR}/tests/hpc/slurm_kill9.sh ${VPD_CLI} ${VPD_PYTHON} ${VPD_TOOLS}
                 ${CMAKE_SOURCE_DIR}/tests/configs/tms_all_losses.yaml ${CMAKE_SOURCE_DIR}
         WORKING_DIRECTORY ${VPD_FIXTURES})
# RUN_SERIAL: both use the one 2-CPU node; run one after the other to keep timings predictable
set_tests_properties(slurm.array_requeue slurm.kill9_resume PROPERTIES LABELS "slurm" FIXTURES_REQUIRED "slurm;tms52"
                     ENVIRONMENT "${VPD_SLURM_ENV}" TIMEOUT 240 RUN_SERIAL TRUE)
