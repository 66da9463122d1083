-- recipes/toy.lua: trains a tiny transformer on a toy next-token task on the CPU (or --backend vulkan)
-- and prints progress and the final loss. The smallest end-to-end run of pivot:
--
--   build/pivot run recipes/toy.lua [--steps 300] [--seed 1] [--lr 0.01] [--out DIR] [--quick]
--
-- --out DIR writes DIR/toy.safetensors (the trained weights) and DIR/metrics.json (the loss curve).
-- The model and task live in lua/pivot/toy.lua.
local opts = ... or {}
local pv = require "pivot"
local toy = require "pivot.toy"
local json = require "pivot.json"

local cfg = {
  steps = tonumber(opts.steps) or (opts.quick and 60 or toy.defaults.steps),
  seed = tonumber(opts.seed) or 1,
  lr = tonumber(opts.lr) or toy.defaults.lr,
  threads = tonumber(opts.threads),
  backend = opts.backend,
}
local quiet = os.getenv("PIVOT_QUIET") == "1"
local every = math.max(1, math.floor(cfg.steps / 10))
print(string.format("pivot %s toy: vocab %d, period %d, seq %d, batch %d, dim %d, %d steps, lr %g, seed %d",
  pv.version(), toy.defaults.vocab, toy.defaults.period, toy.defaults.seq, toy.defaults.batch, toy.defaults.dim,
  cfg.steps, cfg.lr, cfg.seed))

local t0 = os.time()
local clock0 = os.clock()
local losses, model = toy.train(cfg, function(step, loss)
  if not quiet and (step == 1 or step % every == 0 or step == cfg.steps) then
    print(string.format("step %5d  loss %.5f", step, loss))
  end
end)
local final = losses[#losses]
print(string.format("final loss %.6f (chance %.4f) after %d steps on %s, %.1f s cpu", final,
  math.log(toy.defaults.vocab), cfg.steps, model.plan:backend(), os.clock() - clock0))
print(string.format("plan memory: peak %.1f KiB, sum of all tensors %.1f KiB (%.0f%%)", model.plan:peak_bytes() / 1024,
  model.plan:naive_bytes() / 1024, 100 * model.plan:peak_bytes() / model.plan:naive_bytes()))

if opts.out then
  local out = tostring(opts.out)
  os.execute("mkdir -p '" .. out:gsub("'", "'\\''") .. "'")
  local vars = {}
  for _, k in ipairs(model.params.order) do vars[#vars + 1] = model.params[k] end
  local meta = {recipe = "toy", steps = tostring(cfg.steps)}
  model.ctx:save_safetensors(out .. "/toy.safetensors", vars, {metadata = meta})
  local f = assert(io.open(out .. "/metrics.json", "w"))
  f:write(json.encode({recipe = "toy", steps = cfg.steps, seed = cfg.seed, final_loss = final, losses = losses,
    wall_s = os.time() - t0}), "\n")
  f:close()
  print("wrote " .. out .. "/toy.safetensors and " .. out .. "/metrics.json")
end
if final ~= final or final > 0.5 then
  error(string.format("toy training did not converge (final loss %g)", final), 0)
end
