# HPC operations without Slurm (label: hpc): checkpoints, bitwise-exact resume, resume on
# another rank count, kill -9 during a checkpoint write, signals, config changes on resume,
# kills at random steps with resumes, provenance (vpd info), a rank killed under mpiexec, vpd sweep + vpd collect.
# Scripts: tests/hpc/*.sh (arguments: vpd, python, tools/, config). The TMS 5-2 target is the
# decompose.pretrain_tms52 fixture; the config is the all-losses one (every kind of state,
# including per-rank persistent-PGD sources).
set(VPD_HPC_DIR ${CMAKE_SOURCE_DIR}/tests/hpc)
set(VPD_HPC_ARGS ${VPD_CLI} ${VPD_PYTHON} ${VPD_TOOLS} ${CMAKE_SOURCE_DIR}/tests/configs/tms_all_losses.yaml)
set(VPD_HPC_ENV ${VPD_TEST_ENV} "MPIEXEC=${MPIEXEC_EXECUTABLE}" "VPD_TOOLS_DIR=${VPD_TOOLS}")

function(vpd_hpc_test name script procs)
  add_test(NAME hpc.${name} COMMAND bash ${VPD_HPC_DIR}/${script} ${VPD_HPC_ARGS} ${ARGN}
           WORKING_DIRECTORY ${VPD_FIXTURES})
  set_tests_properties(hpc.${name} PROPERTIES LABELS "hpc" FIXTURES_REQUIRED tms52 ENVIRONMENT "${VPD_HPC_ENV}"
                       TIMEOUT 180 PROCESSORS ${procs})
endfunction()

vpd_hpc_test(resume_exact_1rank resume_exact.sh 1 1)
vpd_hpc_test(resume_exact_2ranks resume_exact.sh 2 2)
vpd_hpc_test(resume_2to1_ranks resume_layout.sh 2 2 1)
vpd_hpc_test(resume_1to2_ranks resume_layout.sh 2 1 2)
vpd_hpc_test(resume_2to4_ranks resume_layout.sh 2 2 4)
# component parallelism (shared_mlp CI function): bitwise on cp 2 and dp 2 × cp 2; a cp 2
# checkpoint on 1 rank, a dp 2 × cp 2 one on cp 2, a 1-rank one on dp 2 × cp 2
vpd_hpc_test(resume_exact_cp2 resume_exact.sh 2 2 2)
vpd_hpc_test(resume_exact_dp2cp2 resume_exact.sh 2 4 2)
vpd_hpc_test(resume_cp2_to_1rank resume_layout.sh 2 2 1 2 1)
vpd_hpc_test(resume_dp2cp2_to_cp2 resume_layout.sh 2 4 2 2 2)
vpd_hpc_test(resume_1rank_to_dp2cp2 resume_layout.sh 2 1 4 1 2)
vpd_hpc_test(kill9_during_checkpoint kill_during_checkpoint.sh 1)
# issue 17: SIGKILL, SIGTERM and SIGKILL inside a checkpoint write at seeded random steps, 5 kills
# on 1 rank and 5 on 2 ranks, each resumed; bitwise identical to an uninterrupted run
vpd_hpc_test(kill_resume_random kill_resume_random.sh 2)
vpd_hpc_test(signals signals.sh 2)
vpd_hpc_test(preempt_group preempt_group.sh 2)
# SIGTERM to a bare mpirun (alone, and with its ranks as Slurm signals a job): a complete checkpoint with
# OMPI_MCA_odls_base_sigkill_timeout raised; mpirun itself exits 1 (Open MPI), see the script
vpd_hpc_test(mpirun_term mpirun_term.sh 2)

vpd_hpc_test(run_dir_guard run_dir_guard.sh 2)
vpd_hpc_test(nonfinite nonfinite.sh 2)
vpd_hpc_test(damaged_files damaged_files.sh 1)
vpd_hpc_test(watchdog watchdog.sh 2)
vpd_hpc_test(config_change_and_info config_change.sh 1)
vpd_hpc_test(rank_death rank_death.sh 2)
vpd_hpc_test(sweep_collect sweep_collect.sh 1)
# a disk filling up inside a checkpoint write: a message and a plain failure, no segfault in
# MPI_Finalize (a 64 KiB tmpfs; skipped without root)
vpd_hpc_test(disk_full disk_full.sh 2)
set_tests_properties(hpc.disk_full PROPERTIES SKIP_RETURN_CODE 77)
