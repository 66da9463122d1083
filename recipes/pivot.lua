-- recipes/pivot.lua: the miniature PIVOT study ("RL makes MLLMs see better than SFT") end to end, in one command:
--
--   pivot run recipes/pivot.lua [--out runs/pivot] [--seeds 3] [--jobs 3] [--quick] [--backend cpu]
--
-- For every seed: stage 0 (SigLIP contrastive pretraining of the vision tower on the world's captions), stage 1a
-- (projector only) and 1b (everything, the vision tower at a lower lr), with the linear probe per attribute
-- printed after each; then SFT and DPO from the same stage-1 weights on the same preference pairs, batches and
-- steps; the three encoders (base = after stage 1, SFT, DPO) detached and measured: linear probe top-1 on a
-- held-out split, segmentation probe (macro recall, mIoU), gradient-map focus of the SFT and DPO losses on the
-- same samples (PNG panels), VQA accuracy by type; and the PIVOT transfer: each encoder frozen into a new MLLM
-- (projector, then projector + LLM) and its VQA accuracy.
--
-- Writes OUT/report.md (the table as mean ± std over seeds, per-attribute probes, VQA by type, gradient focus,
-- verdicts, curve_*.png, panels/*.png), OUT/metrics_raw.jsonl (one line per seed x encoder x metric and per
-- logged training step), OUT/summary.json and OUT/seed_K/ (each seed's log, checkpoints and metrics). Prints the
-- same tables, whether each claim holds, and the wall time.
--
-- Options: --seeds N (default 3; quick: 1), --jobs N (seeds run as parallel child processes, one thread each;
-- default min(seeds, 3)), --quick (a small, fast version for tests), --backend cpu|vulkan, and the overrides of
-- pivot.pipeline.OVERRIDES (e.g. --steps-1b 400, --post-steps 60, --sft-lr 1e-4, --dpo-lr 5e-5, --llm large,
-- --transfer-llm fresh, --transfer false). Real checkpoints and data: see docs/STUDY.md.
local opts = ... or {}
local pipeline = require "pivot.pipeline"
return pipeline.main(opts, {script = arg and arg[0], exe = arg and arg[-1]})
