#!/bin/bash
# The runs behind docs/ulmfit.md's "Cause 4", "what was tried" and "Where that leaves the bar" tables (one thread,
# one process at a time). Each line is `run TAG flags...` for examples/ulmfit_fortunes.py; results go to
# OUT/results_TASK_TAG.json; steps_budget_results.txt lists the figures as measured.
# Needs OUT/models/general_lm.pth, fortunes_encoder.pth and debian_encoder.pth from a plain run of the example
# (`--task fortunes` and `--task debian --ft-lr 1e-2`).
set -e
DATA=${DATA:-data/ulmfit}
OUT=${OUT:-runs/ulmfit}
export OMP_NUM_THREADS=1
run() { tag=$1; shift; python examples/ulmfit_fortunes.py --data "$DATA" --out "$OUT" --reuse-lm --threads 1 --tag "$tag" "$@"; }

# the table (both regimes, equal optimizer steps), two classifier seeds
run final_d_s0 --task debian --ft-lr 1e-2
run final_d_s1 --task debian --ft-lr 1e-2 --init-seed 1
run final_f_s0 --task fortunes
run final_f_s1 --task fortunes --init-seed 1
# the previous head (last layer) under the same budget
run f10_steps --task fortunes --fracs 0.1 --ulmfit-features last
run d10_steps --task debian --fracs 0.1 --ulmfit-features last
for s in 0 1 2; do run f_last_s$s --task fortunes --fracs 1 --models ulmfit --ulmfit-features last --init-seed $s; done
# one change at a time (fortunes, all labels)
for s in 0 1 2; do run f_dm5_s$s --task fortunes --fracs 1 --models ulmfit --clas-drop-mult 0.5 --init-seed $s; done
for s in 0 1; do run f_dm10_s$s --task fortunes --fracs 1 --models ulmfit --clas-drop-mult 1.0 --init-seed $s; done
for s in 0 1 2; do run f_dm5_lr8_s$s --task fortunes --fracs 1 --models ulmfit --clas-drop-mult 0.5 --clas-lr 8e-2 --init-seed $s; done
for s in 0 1; do run f_dm5_lr2_s$s --task fortunes --fracs 1 --models ulmfit --clas-drop-mult 0.5 --clas-lr 2e-2 --init-seed $s; done
for s in 0 1; do run f_dm5_gf_s$s --task fortunes --fracs 1 --models ulmfit --clas-drop-mult 0.5 --group-factor 2.6 --init-seed $s; done
for s in 0 1; do run f_ft10_s$s --task fortunes --fracs 1 --models ulmfit --ft-epochs 10 --lm-tag _ft10 --init-seed $s; done
for s in 0 1; do run f_union_last_s$s --task fortunes --fracs 1 --models ulmfit --lm-vocab union --ulmfit-features last --init-seed $s; done
run f_union_all --task fortunes --fracs 1,0.1 --models ulmfit --lm-vocab union
for s in 0 1; do run f_scratch_all_s$s --task fortunes --fracs 1 --models scratch --scratch-features all --init-seed $s; done
# Debian
for s in 0 1; do run d_dm5_s$s --task debian --fracs 1 --models ulmfit --clas-drop-mult 0.5 --init-seed $s; done
run d_scratch_all --task debian --fracs 1,0.1 --models scratch --scratch-features all
run d_ft5 --task debian --fracs 1,0.1 --models ulmfit --ft-epochs 5 --ft-lr 1e-2 --lm-tag _ft5
for s in 0 1; do run d10_dm5_s$s --task debian --fracs 0.1 --models ulmfit --clas-drop-mult 0.5 --init-seed $s; done
run d10_lr2 --task debian --fracs 0.1 --models ulmfit --clas-lr 2e-2
run d10_lr1 --task debian --fracs 0.1 --models ulmfit --clas-lr 1e-2
run d10_gf --task debian --fracs 0.1 --models ulmfit --group-factor 2.6
run d10_st33 --task debian --fracs 0.1 --models ulmfit --stages 3,0,0,3
run d10_st60 --task debian --fracs 0.1 --models ulmfit --stages 6,0,0,0
