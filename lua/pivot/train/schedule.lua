-- pivot.train.schedule: learning-rate schedules with linear warmup, as Hugging Face transformers
-- (get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup, get_constant_schedule[_with_warmup]).
--
--   local schedule = require "pivot.train.schedule"
--   local sched = schedule.new{name = "cosine", lr = 1e-6, steps = 234, warmup_ratio = 0.03}
--   sched:lr(s)          -- the learning rate of the optimizer step that follows s completed steps (s = 0, 1, ...)
--   sched.warmup         -- warmup steps: warmup_steps if given, else ceil(steps * warmup_ratio) (HF's rule)
--
-- The argument is HF's scheduler step: the count of optimizer steps already taken. The first update (s = 0) of
-- a schedule with warmup therefore uses lr 0, exactly as an HF Trainer does.
--   warmup (s < W):  lr * s / max(1, W)
--   cosine:          lr * max(0, 0.5 * (1 + cos(pi * progress))),  progress = (s - W) / max(1, steps - W)
--   linear:          lr * max(0, (steps - s) / max(1, steps - W))
--   constant:        lr
-- Warmup defaults: 3 % (the paper) for cosine and linear; none for constant (HF "constant"), unless given.
local M = {}

local KINDS = {cosine = true, linear = true, constant = true, constant_with_warmup = true}

-- lambda(s): the multiplier of the base lr (HF's lr_lambda)
function M.lambda(name, s, steps, warmup)
  if s < warmup then return s / math.max(1, warmup) end
  if name == "constant" or name == "constant_with_warmup" then return 1.0 end
  if name == "linear" then return math.max(0.0, (steps - s) / math.max(1, steps - warmup)) end
  if name == "cosine" then
    local progress = (s - warmup) / math.max(1, steps - warmup)
    return math.max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
  end
  error("schedule: unknown schedule '" .. tostring(name) .. "' (cosine, linear, constant)", 2)
end

-- warmup steps from opts {warmup_steps | warmup_ratio}, HF's TrainingArguments.get_warmup_steps
function M.warmup_steps(name, steps, opts)
  opts = opts or {}
  if opts.warmup_steps and opts.warmup_steps > 0 then return math.floor(opts.warmup_steps) end
  local ratio = opts.warmup_ratio
  if ratio == nil then ratio = (name == "constant") and 0 or 0.03 end
  if ratio < 0 or ratio > 1 then error("schedule: warmup_ratio must be in [0, 1], got " .. tostring(ratio), 3) end
  return math.ceil(steps * ratio)
end

local Schedule = {}
Schedule.__index = Schedule
M.Schedule = Schedule

-- schedule.new{name = "cosine"|"linear"|"constant", lr, steps, warmup_ratio | warmup_steps}
-- opts.name may also be a function(s, steps, warmup) -> multiplier (a custom schedule).
function M.new(opts)
  opts = opts or {}
  local name = opts.name or opts.schedule or "cosine"
  if type(name) ~= "function" and not KINDS[name] then
    error("schedule: unknown schedule '" .. tostring(name) .. "' (cosine, linear, constant)", 2)
  end
  local lr = opts.lr
  if type(lr) ~= "number" or lr < 0 then error("schedule: lr must be a non-negative number", 2) end
  local steps = opts.steps
  if type(steps) ~= "number" or steps < 1 then error("schedule: steps must be a positive number", 2) end
  local self = setmetatable({name = name, base_lr = lr, steps = steps}, Schedule)
  self.warmup = M.warmup_steps(type(name) == "string" and name or "cosine", steps, opts)
  return self
end

function Schedule:multiplier(s)
  if type(self.name) == "function" then return self.name(s, self.steps, self.warmup) end
  return M.lambda(self.name, s, self.steps, self.warmup)
end
-- the lr of the update after s completed optimizer steps
function Schedule:lr(s) return self.base_lr * self:multiplier(s) end
Schedule.__call = function(self, s) return self:lr(s) end

-- the list of lrs of steps 1..steps (for plots and tests)
function Schedule:values()
  local r = {}
  for s = 0, self.steps - 1 do r[s + 1] = self:lr(s) end
  return r
end

return M
