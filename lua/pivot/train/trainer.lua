-- pivot.train.trainer: a model-agnostic training loop (AdamW, schedules, clipping, accumulation, checkpoints,
-- metrics), driving one compiled plan per batch-shape bucket.
--
--   local train = require "pivot.train"
--   local tr = train.trainer.new{
--     ctx = ctx, model = mllm,                      -- an nn module or a list of modules (frozen ones are skipped)
--     build = function(g, bucket)                   -- the forward of one batch shape; the trainer adds the rest
--       local ids = g:input("ids", {B, bucket.len}, "i32") ...
--       return {loss = loss, outputs = {["rewards/chosen"] = rc, ...}, inputs = {ids = ids, labels = labels}}
--     end,
--     lr = 1e-6, schedule = "cosine", warmup_ratio = 0.03, steps = 234, accum = 32, max_grad_norm = 1.0,
--     weight_decay = 0, lr_mult = {["vision"] = 0.2}, backend = "cpu", threads = 2,
--     out_dir = "runs/dpo", log_every = 1, save_every = 20, save_total_limit = 2, resume = opts.resume,
--   }
--   tr:fit(loader)               -- loader: function() -> batch | nil, or {next = fn, state = fn, set_state = fn}
--                                -- (restore = fn is accepted for set_state, as pivot.data.batches has)
--   -- or by hand: local m = tr:step(batch) (accum = 1) / tr:step({b1, b2, ...}) (accum = k micro-batches)
--
-- A batch is {bucket = key (any value; tables are keyed by their JSON), feeds = {input name -> Lua table or cdata},
-- epoch = optional float}. Every input the build returned must be fed each time.
-- step() returns the metrics: loss, grad_norm (before clipping), learning_rate, step, epoch (if known), and every
-- output of the build (1-element outputs as numbers, others as tables). With accumulation, loss and outputs are
-- the means over the k micro-batches.
--
-- Plans: with accum = 1, one fused plan per bucket (forward + backward + clip + AdamW, one pv_plan_run per step).
-- With accum = k > 1, a micro plan per bucket (forward + backward of loss/k, grads added into "<param>.grad_acc")
-- and one update plan (global norm of the sums, clip, AdamW, zero the sums) run once per optimizer step.
-- The per-step values (lr, betas, eps, bias corrections) go through a [6] f32 input, so the plans never recompile.
--
-- Failure: a NaN or Inf loss or grad_norm raises "step N: loss is nan; stopping, last good checkpoint: DIR/..."
-- before anything is saved, so the last checkpoint on disk is the last good state.
local pv = require "pivot"
local json = require "pivot.json"
local optim = require "pivot.train.optim"
local schedule = require "pivot.train.schedule"
local ckpt = require "pivot.train.checkpoint"
local log = require "pivot.train.log"

local M = {}

local Trainer = {}
Trainer.__index = Trainer
M.Trainer = Trainer

local HYPER_NAME = "train.adamw_hyper"

local function bucket_key(b)
  if b == nil then return "default" end
  if type(b) == "table" then return json.encode(b) end
  return tostring(b)
end
M.bucket_key = bucket_key

local function finite(x) return type(x) == "number" and x == x and x ~= math.huge and x ~= -math.huge end
local function badness(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  return tostring(x)
end

-- the config saved in trainer_state.json (plain values only)
local CONFIG_KEYS = {"lr", "schedule", "warmup_ratio", "warmup_steps", "steps", "accum", "max_grad_norm",
  "weight_decay", "lr_mult", "beta1", "beta2", "eps", "backend", "threads", "log_every", "save_every",
  "save_total_limit", "seed", "steps_per_epoch"}

-- trainer.new(opts): see the header. Other opts: beta1, beta2 (or betas), eps, warmup_steps, steps_per_epoch,
-- save_total_limit (default 2), progress (true: bar, false: plain lines, nil: bar if stderr is a terminal),
-- quiet, profile (per-op timing of every plan; tr:profile()), metrics_path, resume (true: the latest checkpoint in
-- out_dir, or a fresh start when there is none; a string: that checkpoint folder), no_inplace, save_final (default
-- true), verbose_plans (default true: a line per compiled plan), append_metrics.
function M.new(opts)
  opts = opts or {}
  local ctx = opts.ctx or pv.raise("trainer: ctx is required")
  if opts.model == nil then pv.raise("trainer: model is required (an nn module or a list of modules)") end
  if type(opts.build) ~= "function" then pv.raise("trainer: build = function(g, bucket) -> {loss, outputs, inputs} is required") end
  if type(opts.lr) ~= "number" then pv.raise("trainer: lr is required") end
  if type(opts.steps) ~= "number" or opts.steps < 1 then pv.raise("trainer: steps (optimizer steps) is required") end
  local accum = math.floor(opts.accum or 1)
  if accum < 1 then pv.raise("trainer: accum must be >= 1") end
  local self = setmetatable({ctx = ctx, model = opts.model, build_fn = opts.build, opts = opts, accum = accum,
    steps = math.floor(opts.steps), max_grad_norm = opts.max_grad_norm == nil and 1.0 or opts.max_grad_norm,
    backend = opts.backend, threads = opts.threads, out_dir = opts.out_dir, step_count = 0, plans = {},
    plan_order = {}, profiling = opts.profile or false, seed = opts.seed, steps_per_epoch = opts.steps_per_epoch,
    history_loss = 0, history_n = 0}, Trainer)
  if self.max_grad_norm == false then self.max_grad_norm = 0 end
  self.opt = optim.adamw(ctx, opts.model, {beta1 = opts.beta1, beta2 = opts.beta2, betas = opts.betas, eps = opts.eps,
    weight_decay = opts.weight_decay or 0.0, lr_mult = opts.lr_mult, accum = accum})
  self.sched = schedule.new{name = opts.schedule or "cosine", lr = opts.lr, steps = self.steps,
    warmup_ratio = opts.warmup_ratio, warmup_steps = opts.warmup_steps}
  self.model_vars = optim.model_vars(opts.model)
  self.log_every = math.max(1, math.floor(opts.log_every or 1))
  if opts.save_every ~= nil then self.save_every = math.floor(opts.save_every)
  else self.save_every = self.out_dir and math.max(1, math.floor(self.steps / 10)) or 0 end
  self.save_total_limit = opts.save_total_limit or opts.keep or 2
  local cfg = {}
  for _, k in ipairs(CONFIG_KEYS) do
    local v = opts[k]
    if type(v) == "number" or type(v) == "string" or type(v) == "boolean" or type(v) == "table" then cfg[k] = v end
  end
  cfg.schedule = type(self.sched.name) == "string" and self.sched.name or "custom"
  cfg.warmup_steps, cfg.accum = self.sched.warmup, accum
  cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay = self.opt.beta1, self.opt.beta2, self.opt.eps, self.opt.weight_decay
  cfg.max_grad_norm, cfg.save_every, cfg.save_total_limit = self.max_grad_norm, self.save_every, self.save_total_limit
  self.config = cfg

  -- resume
  if opts.resume then
    local path, st
    if type(opts.resume) == "string" then
      path = opts.resume
      st = ckpt.read_state(path)
      if not st then pv.raise("trainer: resume: '" .. path .. "' is not a complete checkpoint") end
    else
      if not self.out_dir then pv.raise("trainer: resume = true needs out_dir") end
      path, st = ckpt.find_latest(self.out_dir)
    end
    if path then self:_load(path, st) end
  end

  local metrics_path = opts.metrics_path
  if metrics_path == nil and self.out_dir then metrics_path = self.out_dir .. "/metrics.jsonl" end
  if self.out_dir then ckpt.mkdirs(self.out_dir) end
  if metrics_path then
    if self.resumed_from then log.truncate(metrics_path, self.step_count, ckpt.write_atomic)
    elseif not opts.append_metrics then os.remove(metrics_path) end
  end
  self.log = log.new{path = metrics_path, every = self.log_every, total = self.steps, progress = opts.progress,
    quiet = opts.quiet, start_step = self.step_count}
  if self.resumed_from and not opts.quiet then
    self.log:message(string.format("trainer: resumed from %s (step %d of %d)", self.resumed_from, self.step_count,
      self.steps))
  end
  return self
end

-- loads a checkpoint into the model and optimizer vars; sets the step and the data state
function Trainer:_load(path, st)
  local optional = {}
  for _, e in ipairs(self.opt.entries) do if e.acc then optional[e.acc.name] = true end end
  st = ckpt.load(self.ctx, path, {model = self.model_vars, optimizer = self.opt:state_vars(), optional = optional})
  self.step_count = math.floor(st.global_step or 0)
  self.data_state = st.data_state
  self.epoch = st.epoch
  self.last_checkpoint = path
  self.last_saved_step = self.step_count
  self.resumed_from = path
  self.resume_state = st
  if self.accum > 1 then
    -- accumulators are zero at step boundaries; make sure (an older checkpoint may lack them)
    local st2 = self.ctx:open_safetensors(path .. "/optimizer.safetensors")
    for _, e in ipairs(self.opt.entries) do if e.acc and not st2:find(e.acc.name) then e.acc:fill(0) end end
    st2:close()
  end
end

---------------------------------------------------------------------------------------------------- plans
local function check_build(r, key)
  if type(r) ~= "table" then pv.raise("trainer: build(g, " .. key .. ") must return {loss, outputs, inputs}") end
  if getmetatable(r.loss) ~= pv.Tensor then pv.raise("trainer: build(g, " .. key .. ") returned no loss node") end
  if r.loss:numel() ~= 1 then
    pv.raise("trainer: the loss of bucket " .. key .. " has " .. r.loss:numel() .. " elements, expected 1")
  end
  r.outputs = r.outputs or {}
  r.inputs = r.inputs or {}
  for k, v in pairs(r.outputs) do
    if getmetatable(v) ~= pv.Tensor then pv.raise("trainer: output '" .. tostring(k) .. "' is not a tensor") end
  end
  for k, v in pairs(r.inputs) do
    if getmetatable(v) ~= pv.Tensor then pv.raise("trainer: input '" .. tostring(k) .. "' is not a tensor") end
  end
end

function Trainer:_compile(g, what)
  local plan = g:compile{backend = self.backend, threads = self.threads, no_inplace = self.opts.no_inplace}
  if self.profiling then plan:set_profiling(true) end
  if not self.opts.quiet and self.opts.verbose_plans ~= false then
    self.log:message(string.format("trainer: compiled %s on %s: %d nodes, %.1f MiB activations", what, plan:backend(),
      plan:node_count(), plan:peak_bytes() / 1048576))
  end
  return plan
end

-- the cached plan entry of a bucket: {plan, graph, loss, outputs, inputs, hyper, grad_norm}
function Trainer:_plan(bucket)
  local key = bucket_key(bucket)
  local e = self.plans[key]
  if e then return e end
  local g = self.ctx:graph()
  local r = self.build_fn(g, bucket)
  check_build(r, key)
  r.loss:mark_output()
  for _, node in pairs(r.outputs) do node:mark_output() end
  e = {key = key, graph = g, loss = r.loss, outputs = r.outputs, inputs = r.inputs}
  if self.accum == 1 then
    g:backward(r.loss)
    e.hyper = g:input(HYPER_NAME, {6})
    e.grad_norm = self.opt:add_updates(g, e.hyper, {max_grad_norm = self.max_grad_norm})
    e.kind = "fused"
  else
    local scaled = r.loss:scale(1 / self.accum)
    g:backward(scaled)
    self.opt:add_accumulate(g)
    e.kind = "micro"
  end
  e.plan = self:_compile(g, e.kind .. " plan for bucket " .. key)
  self.plans[key] = e
  self.plan_order[#self.plan_order + 1] = key
  return e
end

function Trainer:_update_plan()
  if self.update then return self.update end
  local g = self.ctx:graph()
  local hyper = g:input(HYPER_NAME, {6})
  local gn = self.opt:add_accumulated_updates(g, hyper, {max_grad_norm = self.max_grad_norm})
  local u = {key = "update", graph = g, hyper = hyper, grad_norm = gn, kind = "update"}
  u.plan = self:_compile(g, "update plan")
  self.update = u
  return u
end

local function feed(e, feeds)
  feeds = feeds or {}
  for name, data in pairs(feeds) do
    local node = e.inputs[name]
    if not node then
      local known = {}
      for k in pairs(e.inputs) do known[#known + 1] = k end
      table.sort(known)
      pv.raise(string.format("trainer: bucket %s has no input '%s' (inputs: %s)", e.key, tostring(name),
        table.concat(known, ", ")))
    end
    e.plan:write(node, data)
  end
  for name in pairs(e.inputs) do
    if feeds[name] == nil then pv.raise(string.format("trainer: bucket %s: input '%s' was not fed", e.key, name)) end
  end
end

local function read_outputs(e, into, k)
  for name, node in pairs(e.outputs) do
    if node:numel() == 1 then
      local v = e.plan:item(node)
      into[name] = (into[name] or 0) + v / k
    else
      into[name] = e.plan:read(node)
    end
  end
end

---------------------------------------------------------------------------------------------------- steps
function Trainer:_fail(step, what, value, metrics)
  if metrics then
    local line = {}
    for k, v in pairs(metrics) do line[k] = v end
    line.step = step
    pcall(function() self.log:write(line) end)
  end
  local msg = string.format("step %d: %s is %s; stopping, last good checkpoint: %s", step, what, badness(value),
    self.last_checkpoint or "none")
  self.failed = msg
  error(msg, 0)
end

-- epoch of the step: the batch's epoch, else step / steps_per_epoch
function Trainer:_epoch(step, batches)
  local last = batches[#batches]
  if type(last) == "table" and type(last.epoch) == "number" then return last.epoch end
  if self.steps_per_epoch and self.steps_per_epoch > 0 then return step / self.steps_per_epoch end
  return nil
end

-- tr:step(batch | {micro batches}, [{data_state = ...}]) -> metrics
function Trainer:step(batch, sopts)
  if self.failed then pv.raise("trainer: the run stopped: " .. self.failed) end
  local batches
  if type(batch) == "table" and (batch.feeds ~= nil or batch.bucket ~= nil) then batches = {batch}
  elseif type(batch) == "table" and #batch > 0 then batches = batch
  else pv.raise("trainer: step expects a batch {bucket, feeds} or a list of accum micro-batches") end
  if #batches ~= self.accum then
    pv.raise(string.format("trainer: accum = %d needs %d micro-batches per step, got %d", self.accum, self.accum,
      #batches))
  end
  if sopts and sopts.data_state ~= nil then self.data_state = sopts.data_state end
  local t = self.step_count + 1
  local lr = self.sched:lr(t - 1)
  local hyper = self.opt:hyper(lr, t)
  local t0 = log.now()
  local metrics, outs = {}, {}
  local loss_sum = 0
  local gn
  if self.accum == 1 then
    local e = self:_plan(batches[1].bucket)
    feed(e, batches[1].feeds)
    e.plan:write(e.hyper, hyper)
    e.plan:run()
    loss_sum = e.plan:item(e.loss)
    gn = e.plan:item(e.grad_norm)
    read_outputs(e, outs, 1)
  else
    for i, b in ipairs(batches) do
      local e = self:_plan(b.bucket)
      feed(e, b.feeds)
      e.plan:run()
      local l = e.plan:item(e.loss)
      if not finite(l) then
        self:_fail(t, string.format("loss (micro-batch %d of %d)", i, self.accum), l,
          {loss = l, learning_rate = lr})
      end
      loss_sum = loss_sum + l
      read_outputs(e, outs, self.accum)
    end
    local u = self:_update_plan()
    u.plan:write(u.hyper, hyper)
    u.plan:run()
    gn = u.plan:item(u.grad_norm)
  end
  local loss = loss_sum / self.accum
  for k, v in pairs(outs) do metrics[k] = v end
  metrics.loss, metrics.grad_norm, metrics.learning_rate, metrics.step = loss, gn, lr, t
  metrics.epoch = self:_epoch(t, batches)
  self.last_step_time = log.now() - t0
  if not finite(loss) then self:_fail(t, "loss", loss, metrics) end
  if not finite(gn) then self:_fail(t, "grad_norm", gn, metrics) end
  self.step_count = t
  self.epoch = metrics.epoch
  self.history_loss, self.history_n = self.history_loss + loss, self.history_n + 1
  self.log:record(t, metrics)
  if self.out_dir and self.save_every > 0 and t % self.save_every == 0 then self:save() end
  return metrics
end

-- writes a checkpoint of the current state (params, optimizer state, step, data state, config)
function Trainer:save(dir)
  dir = dir or self.out_dir
  if not dir then pv.raise("trainer: save needs out_dir") end
  local state = {global_step = self.step_count, epoch = self.epoch, max_steps = self.steps, data_state = self.data_state,
    config = self.config, seed = self.seed, pivot_version = pv.version(), resumed_from = self.resumed_from}
  local path = ckpt.save(self.ctx, dir, self.step_count, {model = self.model_vars, optimizer = self.opt:state_vars(),
    state = state, keep = self.save_total_limit})
  self.last_checkpoint = path
  self.last_saved_step = self.step_count
  return path
end

-- a loader adapter: returns next(), state(), set_state(s)
local function adapt(loader)
  if type(loader) == "function" then return loader, nil, nil end
  if type(loader) == "table" then
    local nxt = loader.next or loader.next_batch
    if type(nxt) ~= "function" then pv.raise("trainer: the loader has no next() method") end
    local st = loader.state and function() return loader:state() end or nil
    local setf = loader.set_state or loader.restore -- pivot.data.batches uses restore(st)
    local set = setf and function(s) return setf(loader, s) end or nil
    return function() return nxt(loader) end, st, set
  end
  pv.raise("trainer: fit expects a function or a loader table, got " .. type(loader))
end

-- tr:fit(loader, {on_step = function(metrics, trainer) -> false to stop}) -> summary
-- Runs until `steps` optimizer steps are done or the loader ends (an incomplete accumulation cycle is dropped).
-- On resume the loader's set_state(saved data state) is called first. A final checkpoint is saved (out_dir).
function Trainer:fit(loader, fopts)
  fopts = fopts or {}
  local nxt, get_state, set_state = adapt(loader)
  if self.resumed_from and self.data_state ~= nil then
    if set_state then set_state(self.data_state)
    elseif not self.opts.quiet then
      self.log:message("trainer: warning: the loader has no set_state(); the data restarts from its beginning")
    end
  end
  local t0 = log.now()
  local start = self.step_count
  local loss0, n0 = self.history_loss, self.history_n
  while self.step_count < self.steps do
    local micro = {}
    for i = 1, self.accum do
      local b = nxt()
      if b == nil then break end
      micro[i] = b
    end
    if #micro < self.accum then break end
    local ds = get_state and get_state() or nil
    local m = self:step(micro, {data_state = ds})
    if fopts.on_step and fopts.on_step(m, self) == false then break end
  end
  if self.out_dir and self.opts.save_final ~= false and self.last_saved_step ~= self.step_count
    and self.step_count > 0 then
    self:save()
  end
  local dt = log.now() - t0
  local n = self.step_count - start
  local summary = {train_runtime = dt, train_steps_per_second = n > 0 and n / dt or 0,
    train_loss = (self.history_n - n0) > 0 and (self.history_loss - loss0) / (self.history_n - n0) or nil,
    step = self.step_count, epoch = self.epoch}
  self.log:write(summary)
  return summary
end

-- the per-op timing tables of every plan (enable with profile = true or tr:set_profiling(true))
function Trainer:set_profiling(on)
  self.profiling = on ~= false
  for _, k in ipairs(self.plan_order) do self.plans[k].plan:set_profiling(self.profiling) end
  if self.update then self.update.plan:set_profiling(self.profiling) end
end
function Trainer:profile()
  local parts = {}
  for _, k in ipairs(self.plan_order) do
    local e = self.plans[k]
    parts[#parts + 1] = string.format("== %s plan, bucket %s ==\n%s", e.kind, k, e.plan:profile())
  end
  if self.update then parts[#parts + 1] = "== update plan ==\n" .. self.update.plan:profile() end
  return table.concat(parts, "\n")
end

-- the plan entries (for inspection): list of {key, kind, plan, graph, ...}
function Trainer:plan_list()
  local r = {}
  for _, k in ipairs(self.plan_order) do r[#r + 1] = self.plans[k] end
  if self.update then r[#r + 1] = self.update end
  return r
end

function Trainer:close()
  if self.log then self.log:close() end
end

return M
