-- The child process of tests/lua/test_resume.lua: trains a small MLP with pivot.train, saving a checkpoint every
-- step, so that it can be killed at any point and resumed.
--
--   pivot run tests/lua/resume_worker.lua --out DIR --steps N [--threads 1] [--resume] [--delay-ms 30]
--
-- The data of micro-batch i is a function of (seed, i) only, and the loader's position is saved in the
-- checkpoints, so a resumed run sees the same batches as an uninterrupted one.
local opts = ... or {}
local ffi = require "ffi"
local pv = require "pivot"
local nn = require "pivot.nn"
local train = require "pivot.train"

local out = assert(opts.out, "--out DIR is required")
local steps = assert(tonumber(opts.steps), "--steps N is required")
local threads = tonumber(opts.threads) or 1
local delay_ms = tonumber(opts.delay_ms) or 0
local SEED = 1234

if not pcall(ffi.typeof, "pv_worker_marker") then
  ffi.cdef [[
    typedef struct pv_worker_marker pv_worker_marker;
    int pv_worker_usleep(unsigned int usec) __asm__("usleep");
  ]]
end

local ctx = pv.context{seed = 7, threads = threads}
local D, H, B = 12, 48, 8
local net = nn.module(ctx, "mlp")
local fc1 = net:add("fc1", nn.linear(ctx, "mlp.fc1", D, H))
local norm = net:add("norm", nn.layer_norm(ctx, "mlp.norm", H))
local fc2 = net:add("fc2", nn.linear(ctx, "mlp.fc2", H, D))

local function build(g, bucket)
  local x = g:input("x", {bucket, D})
  local y = g:input("y", {bucket, D})
  local h = norm:forward(g, fc1:forward(g, x):gelu())
  local d = fc2:forward(g, h) - y
  local loss = (d * d):mean()
  return {loss = loss, outputs = {["abs_err"] = d:abs():mean()}, inputs = {x = x, y = y}}
end

-- micro-batch i of the stream: a deterministic function of (SEED, i)
local function batch(i)
  local s = (SEED * 1000003 + i * 7919) % 2147483647
  local function r()
    s = (16807 * s) % 2147483647
    return s / 2147483647 * 2 - 1
  end
  local x, y = {}, {}
  for b = 0, B - 1 do
    for k = 1, D do x[b * D + k] = r() end
    for k = 1, D do y[b * D + k] = math.sin(3 * x[b * D + (k % D) + 1]) * x[b * D + k] end
  end
  return {bucket = B, feeds = {x = x, y = y}}
end

local loader = {index = 0}
function loader:next()
  self.index = self.index + 1
  return batch(self.index)
end
function loader:state() return {index = self.index, seed = SEED} end
function loader:set_state(s)
  assert(s.seed == SEED, "data stream seed mismatch")
  self.index = s.index
end

local tr = train.new{ctx = ctx, model = net, build = build, lr = 3e-3, schedule = "cosine", warmup_ratio = 0.1,
  steps = steps, accum = 2, max_grad_norm = 1.0, weight_decay = 0.01, lr_mult = {["mlp.fc2"] = 0.5}, threads = threads,
  out_dir = out, save_every = 1, save_total_limit = 2, log_every = 1, quiet = true, seed = SEED,
  resume = opts.resume and true or false}
print(string.format("worker: start at step %d%s", tr.step_count,
  tr.resumed_from and (" (resumed from " .. tr.resumed_from .. ")") or ""))
io.stdout:flush()
tr:fit(loader, {on_step = function(m)
  if delay_ms > 0 then ffi.C.pv_worker_usleep(delay_ms * 1000) end
end})
print(string.format("worker: done at step %d, loss %.6f", tr.step_count, tr.history_loss / math.max(1, tr.history_n)))
