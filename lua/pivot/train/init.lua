-- pivot.train: the model-agnostic training machinery.
--
--   local train = require "pivot.train"
--   local tr = train.new{ctx = ctx, model = model, build = build, lr = 1e-5, steps = 100, out_dir = "runs/x"}
--   tr:fit(loader)
--
-- Modules: train.optim (AdamW groups, clipping, accumulation), train.schedule (cosine/linear/constant with
-- warmup), train.trainer (the loop), train.checkpoint (atomic checkpoints), train.log (metrics.jsonl, progress).
local M = {}

M.optim = require "pivot.train.optim"
M.schedule = require "pivot.train.schedule"
M.checkpoint = require "pivot.train.checkpoint"
M.log = require "pivot.train.log"
M.trainer = require "pivot.train.trainer"

M.new = M.trainer.new
M.Trainer = M.trainer.Trainer

return M
