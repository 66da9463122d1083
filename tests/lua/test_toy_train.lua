-- End-to-end training test: the toy transformer of lua/pivot/toy.lua (embedding, causal attention from
-- matmul/softmax, rms_norm, an MLP, a tied LM head through token_logprob, AdamW) learns the periodic
-- next-token task to a low loss, and two runs with the same seed give bit-identical losses.
local toy = require "pivot.toy"

local STEPS, THRESHOLD = 200, 0.05
local cfg = {steps = STEPS, seed = 5, threads = 2}

local t0 = os.clock()
local l1 = toy.train(cfg)
local t1 = os.clock() - t0
print(string.format("run 1: loss %.4f -> %.6f after %d steps (chance %.4f), %.2f s cpu", l1[1], l1[STEPS], STEPS,
  math.log(toy.defaults.vocab), t1))
assert(l1[1] > 1.5, "the first loss should be near chance, got " .. l1[1])
assert(l1[STEPS] < THRESHOLD, string.format("final loss %.4f is not below %.3f", l1[STEPS], THRESHOLD))
for i = 1, STEPS do assert(l1[i] == l1[i], "loss is NaN at step " .. i) end

local l2 = toy.train(cfg)
for i = 1, STEPS do
  if l1[i] ~= l2[i] then
    error(string.format("runs with the same seed differ at step %d: %.9g vs %.9g", i, l1[i], l2[i]))
  end
end
print("run 2: identical losses")

local l3 = toy.train({steps = 5, seed = 6, threads = 2})
assert(l3[1] ~= l1[1], "another seed should give another run")
print("ok")
