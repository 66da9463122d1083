-- Tests of lua/pivot/refcache.lua: DPO with cached reference log-probs gives the same losses and metrics as DPO
-- with the frozen reference model in memory (sigmoid and ipo, several steps, within 1e-6), the first loss is log 2,
-- the cache holds the reference's sequence log-probs by example index, the file is written atomically and reused,
-- and a stale cache (other weights, other pairs) is recomputed. Run by ctest as `pivot run tests/lua/test_refcache.lua`.
local pv = require "pivot"
local study = require "pivot.study"
local refcache = require "pivot.refcache"
local data = require "pivot.data"
local log = require "pivot.train.log"

local testing = require "pivot.testing"
local T = testing.suite("test_refcache")
local function case(name, fn) return T:case(name, fn) end
local near = testing.near -- near(a, b, tol, what): |a - b| <= tol * max(1, |b|)

local TMP = testing.tmpdir("refcache")

-- a tiny model after a few SFT steps (so chosen and rejected log-probs differ), saved as the DPO starting point
local ctx0 = pv.context{threads = 2, seed = 11}
local env0 = study.world(ctx0, {out_dir = TMP})
local PAIRS = study.world_pairs(env0, {count = 12})
local INIT = TMP .. "/init"
do
  local m = study.model(ctx0, study.mini_config{preset = "tiny", vocab_size = env0.vocab_size})
  study.sft(ctx0, m, PAIRS, {steps = 4, lr = 2e-3, batch_size = 4, print_every = 0})
  study.save_checkpoint(ctx0, m, INIT, {tokenizer_path = env0.tokenizer_path})
end

local function fresh()
  local ctx = pv.context{threads = 2, seed = 11}
  return ctx, study.load_model(ctx, INIT)
end

local function compare(loss_type, steps)
  local o = {steps = steps, lr = 2e-3, batch_size = 4, seed = 3, print_every = 0, loss_type = loss_type}
  local ctx1, m1 = fresh()
  local a = study.dpo(ctx1, m1, PAIRS, o)
  local ctx2, m2 = fresh()
  o.ref_cache = TMP .. "/cache_" .. loss_type .. ".safetensors"
  local b = study.dpo(ctx2, m2, PAIRS, o)
  assert(b.ref_cache and b.ref_cache.computed, "the cache was not computed")
  assert(#a.losses == steps and #b.losses == steps)
  local worst = 0
  for i = 1, steps do
    if not (math.abs(b.losses[i] - a.losses[i]) <= 1e-6) then
      error(string.format("%s loss at step %d: cache %.9g, memory %.9g", loss_type, i, b.losses[i], a.losses[i]))
    end
    worst = math.max(worst, math.abs(b.losses[i] - a.losses[i]))
  end
  for _, k in ipairs {"rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"} do
    near(b.last[k], a.last[k], 1e-5, loss_type .. " " .. k)
  end
  print(string.format("     %s: %d steps, largest loss difference %.3g, losses %.5f .. %.5f", loss_type, steps, worst,
    a.losses[1], a.losses[steps]))
  return a, b
end

case("sigmoid: cached reference = in-memory reference (losses within 1e-6), first loss log 2", function()
  local a, b = compare("sigmoid", 6)
  near(a.losses[1], math.log(2), 1e-6, "first loss (memory)")
  near(b.losses[1], math.log(2), 1e-6, "first loss (cache)")
  assert(math.abs(a.losses[6] - a.losses[1]) > 1e-4, "DPO did not move, so the comparison says little")
end)

case("ipo (length-averaged log-probs): cached = in-memory", function()
  compare("ipo", 3)
end)

case("the cache holds the reference's sequence log-probs, by example index; reused; atomic", function()
  local ctx, m = fresh()
  local path = TMP .. "/c/ref.safetensors"
  local c, info = refcache.get(ctx, m, PAIRS, {path = path, batch_size = 4, seed = 3})
  assert(info.computed and c.n == #PAIRS)
  local lp = study.pair_logps(ctx, m, PAIRS, {batch_size = 4, seed = 3})
  for i = 1, #PAIRS do
    assert(c.chosen[i - 1] == lp.chosen[i] and c.rejected[i - 1] == lp.rejected[i], "cache entry " .. i)
    assert(c.chosen[i - 1] < 0 and c.chosen_avg[i - 1] > c.chosen[i - 1], "log-probs are negative sums")
  end
  -- a different batch size gives the same values (rows are independent)
  local lp8 = study.pair_logps(ctx, m, PAIRS, {batch_size = 8, seed = 5})
  for i = 1, #PAIRS do near(lp8.chosen[i], lp.chosen[i], 1e-4, "logp with another batching") end
  local rc, rr = c:gather({3, 1})
  assert(rc[0] == c.chosen[2] and rr[1] == c.rejected[0])
  assert(not pcall(c.gather, c, {#PAIRS + 1}), "an index outside the cache must raise")
  -- no temporary files are left; a second get() loads the file
  for _, name in ipairs(data.list_dir(TMP .. "/c")) do assert(not name:find("tmp"), "left over: " .. name) end
  local c2, info2 = refcache.get(ctx, m, PAIRS, {path = path, batch_size = 4, seed = 3})
  assert(not info2.computed, "a matching cache should be reused")
  for i = 0, c.n - 1 do assert(c2.chosen[i] == c.chosen[i] and c2.rejected_avg[i] == c.rejected_avg[i]) end
  -- other pairs or other weights: recomputed
  local fewer = {}
  for i = 1, #PAIRS - 1 do fewer[i] = PAIRS[i] end
  local _, info3 = refcache.get(ctx, m, fewer, {path = path, batch_size = 4, seed = 3})
  assert(info3.computed, "a cache of other pairs must be recomputed")
  local w = m.projector:parameters()[1].var
  local vals = w:read()
  vals[1] = vals[1] + 0.5
  w:write(vals)
  local _, info4 = refcache.get(ctx, m, fewer, {path = path, batch_size = 4, seed = 3})
  assert(info4.computed, "a cache of other reference weights must be recomputed")
  local loaded, md = refcache.load(ctx, path)
  assert(loaded.n == #fewer and md.format == "pivot-refcache" and md.fingerprint == info4.fingerprint)
end)

os.execute("rm -rf '" .. TMP .. "'")
T:finish()
