-- pivot.train.log: metrics.jsonl and terminal progress.
--
--   local log = require "pivot.train.log"
--   local L = log.new{path = "runs/a/metrics.jsonl", every = 10, total = 234, progress = nil, quiet = false}
--   L:record(step, metrics)       -- every step; writes a line when step % every == 0 (and at the last step)
--   L:write(tbl)                  -- writes one JSON object line now (flushed)
--   L:close()
--
-- Each logged line is a JSON object with TRL/HF keys: "loss", "grad_norm", "learning_rate", "epoch", "step" and
-- the build's outputs (e.g. "rewards/chosen"). As in HF, "loss" and the outputs are the means over the steps since
-- the last logged line; grad_norm, learning_rate and epoch are the values of the logged step.
-- Progress: a one-line bar on stderr (step/total, step/s, ETA, loss) when stderr is a terminal or progress = true;
-- when progress is false (or stderr is not a terminal) a plain line on stdout every `every` steps; quiet = true
-- prints nothing.
local ffi = require "ffi"
local json = require "pivot.json"

local M = {}

if not pcall(ffi.typeof, "pv_train_timespec") then
  ffi.cdef [[
    typedef struct pv_train_timespec { long tv_sec; long tv_nsec; } pv_train_timespec;
    int pv_train_clock_gettime(int clk, pv_train_timespec *ts) __asm__("clock_gettime");
    int pv_train_isatty(int fd) __asm__("isatty");
  ]]
end
local C = ffi.C
local ts = ffi.new("pv_train_timespec")

-- wall-clock seconds (CLOCK_MONOTONIC)
function M.now()
  C.pv_train_clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
function M.isatty(fd) return C.pv_train_isatty(fd or 2) == 1 end

function M.format_duration(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.max(0, math.floor(s + 0.5))
  local h, m, sec = math.floor(s / 3600), math.floor(s / 60) % 60, s % 60
  if h > 0 then return string.format("%dh%02dm%02ds", h, m, sec) end
  if m > 0 then return string.format("%dm%02ds", m, sec) end
  return string.format("%ds", sec)
end

-- keys that are not averaged over the logging interval
local LAST = {grad_norm = true, learning_rate = true, epoch = true, step = true}
M.LAST = LAST

local Log = {}
Log.__index = Log
M.Log = Log

function M.new(opts)
  opts = opts or {}
  local self = setmetatable({path = opts.path, every = math.max(1, opts.every or 1), total = opts.total,
    quiet = opts.quiet or false, sums = {}, counts = {}, nsteps = 0, t0 = M.now(), start_step = opts.start_step or 0,
    tlast = nil}, Log)
  if opts.progress == nil then self.bar = M.isatty(2)
  else self.bar = opts.progress and true or false end
  if self.path then
    local f, err = io.open(self.path, opts.append == false and "w" or "a")
    if not f then error("log: cannot open '" .. self.path .. "': " .. tostring(err), 0) end
    f:setvbuf("no")
    self.f = f
  end
  return self
end

-- one JSON line, flushed
function Log:write(obj)
  if not self.f then return end
  self.f:write(json.encode(obj), "\n")
  self.f:flush()
end

local function fmt(v)
  if type(v) ~= "number" then return tostring(v) end
  if v ~= 0 and (math.abs(v) < 1e-3 or math.abs(v) >= 1e5) then return string.format("%.3e", v) end
  return string.format("%.5g", v)
end

function Log:rate(step)
  local dt = M.now() - self.t0
  local done = step - self.start_step
  if done <= 0 or dt <= 0 then return 0, math.huge end
  local r = done / dt
  local eta = self.total and (self.total - step) / r or math.huge
  return r, eta
end

function Log:progress(step, metrics)
  if self.quiet then return end
  local r, eta = self:rate(step)
  local total = self.total or step
  if self.bar then
    local w = 24
    local frac = total > 0 and math.min(1, step / total) or 1
    local filled = math.floor(frac * w + 0.5)
    local line = string.format("\r%s/%s [%s%s] %3d%% | %.2f step/s | ETA %s | loss %s", step, total,
      string.rep("#", filled), string.rep(".", w - filled), math.floor(frac * 100), r, M.format_duration(eta),
      fmt(metrics.loss))
    io.stderr:write(line, "\27[K")
    if step >= total then io.stderr:write("\n") end
    io.stderr:flush()
  elseif step % self.every == 0 or step == total then
    local parts = {string.format("step %d/%d", step, total)}
    for _, k in ipairs {"loss", "grad_norm", "learning_rate"} do
      if metrics[k] ~= nil then parts[#parts + 1] = k .. " " .. fmt(metrics[k]) end
    end
    parts[#parts + 1] = string.format("| %.2f step/s ETA %s", r, M.format_duration(eta))
    io.stdout:write(table.concat(parts, "  "), "\n")
    io.stdout:flush()
  end
end

-- record(step, metrics [, force]): accumulates, writes a line at logging steps (or when force)
function Log:record(step, metrics, force)
  for k, v in pairs(metrics) do
    if type(v) == "number" and not LAST[k] then
      self.sums[k] = (self.sums[k] or 0) + v
      self.counts[k] = (self.counts[k] or 0) + 1
    end
  end
  self.nsteps = self.nsteps + 1
  local logged
  if force or step % self.every == 0 or step == self.total then
    logged = {}
    for k, v in pairs(metrics) do
      if type(v) == "number" then
        logged[k] = LAST[k] and v or (self.sums[k] / self.counts[k])
      elseif type(v) == "table" then
        logged[k] = v
      end
    end
    logged.step = step
    self:write(logged)
    self.sums, self.counts, self.nsteps = {}, {}, 0
  end
  self:progress(step, logged or metrics)
  return logged
end

-- a message that does not break the progress bar
function Log:message(text)
  if self.bar and not self.quiet then io.stderr:write("\r\27[K") end
  io.stdout:write(text, "\n")
  io.stdout:flush()
end

function Log:close()
  if self.f then
    self.f:close()
    self.f = nil
  end
end

-- Keeps only the lines of a metrics.jsonl whose "step" is <= max_step (and that parse), atomically. Used on resume
-- so the steps after the checkpoint (which will be redone) are not logged twice.
function M.truncate(path, max_step, write_atomic)
  local f = io.open(path, "rb")
  if not f then return end
  local keep = {}
  for line in f:lines() do
    local ok, obj = pcall(json.decode, line)
    if ok and type(obj) == "table" and (obj.step == nil or obj.step <= max_step) then keep[#keep + 1] = line end
  end
  f:close()
  local text = table.concat(keep, "\n") .. (#keep > 0 and "\n" or "")
  write_atomic(path, text)
end

return M
