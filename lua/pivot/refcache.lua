-- pivot.refcache: cached reference log-probs for DPO, so that no second (reference) model is held in memory.
--
--   local refcache = require "pivot.refcache"
--   local cache, info = refcache.get(ctx, model, pairs, {path = "runs/dpo/ref_logps.safetensors", batch_size = 8})
--   -- model is the reference = the DPO starting point, before any training step
--   local rc, rr = cache:gather({3, 7, ...})          -- float[B] chosen / rejected reference log-probs
--   -- study.dpo(..., {ref_cache = true}) does all of this and feeds rc, rr as the inputs ref_chosen_logps /
--   -- ref_rejected_logps of the DPO graph (objectives.reference_inputs)
--
-- One forward pass over the pairs (pivot.study.pair_logps) computes the summed and the length-averaged (for ipo)
-- sequence log-probs of chosen and rejected, with the same graph ops and batch shapes as the DPO graph, so the
-- losses equal those of an in-memory reference. The file is a safetensors with f32 tensors chosen, rejected,
-- chosen_avg, rejected_avg of shape [N]: element i-1 belongs to example i (the example's index in the list).
-- It is written to a temporary name and renamed. Its metadata holds a fingerprint of the reference weights, the
-- examples' token ids and the batching; get() recomputes when the fingerprint differs (a stale cache).
local pv = require "pivot"
local json = require "pivot.json"
local ckpt = require "pivot.train.checkpoint"
local ffi = require "ffi"

local M = {}
M.VERSION = "1"
M.NAMES = {"chosen", "rejected", "chosen_avg", "rejected_avg"}

local Cache = {}
Cache.__index = Cache
M.Cache = Cache

---------------------------------------------------------------------------------------------------- fingerprint
-- FNV-1a (64-bit) over 32-bit words
local PRIME = 0x100000001b3ULL
local function fnv_u32(h, x) return bit.bxor(h, ffi.cast("uint64_t", bit.band(x, 0xffffffff) % 4294967296)) * PRIME end
local function fnv_str(h, s)
  for i = 1, #s do h = fnv_u32(h, s:byte(i)) end
  return fnv_u32(h, 0)
end
local function fnv_words(h, p, n) -- n uint32 words at p
  for i = 0, n - 1 do h = bit.bxor(h, p[i]) * PRIME end
  return h
end

-- fingerprint(model, examples, opts) -> hex string of the reference weights, the token ids/labels, the images and
-- the batching
function M.fingerprint(model, examples, opts)
  opts = opts or {}
  local h = fnv_str(0xcbf29ce484222325ULL, "pivot-refcache-" .. M.VERSION)
  local strip = model.name ~= "" and (#model.name + 2) or 1
  for _, p in ipairs(model:parameters()) do
    h = fnv_str(h, p.name:sub(strip))
    local buf, n = p.var:read_raw("f32")
    h = fnv_words(h, ffi.cast("uint32_t *", buf), n)
  end
  for _, ex in ipairs(examples) do
    for _, e in ipairs {ex.chosen_enc, ex.rejected_enc} do
      for i = 1, #e.ids do h = fnv_u32(fnv_u32(h, e.ids[i]), e.labels[i]) end
      h = fnv_u32(fnv_u32(h, e.image_pos or -1), -2)
    end
    if type(ex.image) == "string" then h = fnv_str(h, ex.image)
    elseif type(ex.image) == "cdata" then h = fnv_words(h, ffi.cast("uint32_t *", ex.image), ffi.sizeof(ex.image) / 4)
    else h = fnv_str(h, tostring(ex.id)) end
  end
  h = fnv_str(h, json.encode({batch_size = opts.batch_size, seed = opts.seed or 1, buckets = opts.buckets or false,
    max_buckets = opts.max_buckets or false}))
  return (tostring(bit.tohex(tonumber(bit.rshift(h, 32)), 8)) .. bit.tohex(tonumber(bit.band(h, 0xffffffffULL)), 8))
end

---------------------------------------------------------------------------------------------------- compute, io
-- refcache.compute(ctx, model, examples, opts) -> cache (in memory). opts as study.pair_logps.
function M.compute(ctx, model, examples, opts)
  local study = require "pivot.study"
  local lp = study.pair_logps(ctx, model, examples, opts)
  local n = #examples
  local c = setmetatable({n = n}, Cache)
  for _, k in ipairs(M.NAMES) do
    local a = ffi.new("float[?]", math.max(n, 1))
    for i = 1, n do a[i - 1] = lp[k][i] end
    c[k] = a
  end
  return c
end

local counter = 0

-- refcache.save(ctx, path, cache, meta): writes the safetensors atomically (temporary file + rename)
function M.save(ctx, path, cache, meta)
  counter = counter + 1
  local vars, names = {}, {}
  for _, k in ipairs(M.NAMES) do
    local v = ctx:var(string.format("refcache.%d.%d.%s", ckpt.getpid(), counter, k), {cache.n}, {data = cache[k]})
    vars[#vars + 1] = v
    names[#names + 1] = k
  end
  local md = {format = "pivot-refcache", version = M.VERSION, n = tostring(cache.n)}
  for k, v in pairs(meta or {}) do md[k] = tostring(v) end
  local dir = path:match("^(.*)/[^/]*$")
  if dir then ckpt.mkdirs(dir) end
  local tmp = path .. ".tmp-" .. ckpt.getpid()
  local ok, err = pcall(ctx.save_safetensors, ctx, tmp, vars, {names = names, metadata = md})
  for _, v in ipairs(vars) do v:free() end
  if not ok then
    os.remove(tmp)
    error(err, 0)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then
    os.remove(tmp)
    pv.raise("refcache: cannot rename " .. tmp .. " to " .. path .. ": " .. tostring(rerr))
  end
  ckpt.fsync_path(path:match("^(.*)/[^/]*$") or ".")
  return path
end

-- refcache.load(ctx, path) -> cache, metadata table (nil when the file is missing)
function M.load(ctx, path)
  if not ckpt.exists(path) then return nil end
  local st = ctx:open_safetensors(path)
  local ok, res = pcall(function()
    local md = json.decode(st:metadata() or "{}")
    if md.format ~= "pivot-refcache" then pv.raise("refcache: " .. path .. " is not a reference cache") end
    local c = setmetatable({n = tonumber(md.n)}, Cache)
    for _, k in ipairs(M.NAMES) do
      local info = st:info(k)
      if info.numel ~= c.n then pv.raise(string.format("refcache: %s: tensor %s has %d values, expected %d", path, k,
        info.numel, c.n)) end
      c[k] = st:read(k, "f32")
    end
    return {c, md}
  end)
  st:close()
  if not ok then error(res, 0) end
  return res[1], res[2]
end

-- refcache.get(ctx, model, examples, opts) -> cache, info {computed, path, seconds, fingerprint}
-- Loads opts.path when its fingerprint matches, else computes with `model` (the reference) and saves there.
function M.get(ctx, model, examples, opts)
  opts = opts or {}
  local log = require "pivot.train.log"
  local t0 = log.now()
  local fp = M.fingerprint(model, examples, opts)
  if opts.path then
    local c, md = M.load(ctx, opts.path)
    if c and md.fingerprint == fp and c.n == #examples then
      return c, {computed = false, path = opts.path, seconds = log.now() - t0, fingerprint = fp}
    end
  end
  local c = M.compute(ctx, model, examples, opts)
  if opts.path then M.save(ctx, opts.path, c, {fingerprint = fp}) end
  return c, {computed = true, path = opts.path, seconds = log.now() - t0, fingerprint = fp}
end

---------------------------------------------------------------------------------------------------- lookup
-- cache:gather(indices [, average]) -> float[B] chosen, float[B] rejected for 1-based example indices
function Cache:gather(indices, average)
  local B = #indices
  local rc, rr = ffi.new("float[?]", B), ffi.new("float[?]", B)
  local sc, sr = average and self.chosen_avg or self.chosen, average and self.rejected_avg or self.rejected
  for r, i in ipairs(indices) do
    if i < 1 or i > self.n then pv.raise(string.format("refcache: example %d is outside the cache (1..%d)", i, self.n)) end
    rc[r - 1], rr[r - 1] = sc[i - 1], sr[i - 1]
  end
  return rc, rr
end

return M
