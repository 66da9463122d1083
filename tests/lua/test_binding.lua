-- Tests of the LuaJIT binding (lua/pivot/init.lua) and of the `pivot` command. Run by ctest as
-- `pivot run tests/lua/test_binding.lua`; raises an error (exit 1) if any case fails.
local pv = require "pivot"

local T = require("pivot.testing").suite("binding")
local function case(name, fn) T:case(name, fn) end
local function near(a, b, tol) return math.abs(a - b) <= (tol or 1e-5) * math.max(1, math.abs(b)) end
local function eq_list(got, want, tol, what)
  assert(#got == #want, string.format("%s: %d values, expected %d", what or "values", #got, #want))
  for i = 1, #want do
    if not near(got[i], want[i], tol) then
      error(string.format("%s[%d] = %.9g, expected %.9g", what or "values", i, got[i], want[i]), 2)
    end
  end
end
local function same_shape(s, want, what)
  assert(table.concat(s, ",") == table.concat(want, ","),
    string.format("%s: shape {%s}, expected {%s}", what or "shape", table.concat(s, ","), table.concat(want, ",")))
end
-- expects fn to raise; returns the message and checks it contains every pattern (plain)
local function raises(fn, ...)
  local ok, err = pcall(fn)
  assert(not ok, "expected an error")
  err = tostring(err)
  for _, p in ipairs {...} do
    assert(err:find(p, 1, true), "error message '" .. err .. "' does not mention '" .. p .. "'")
  end
  return err
end
local THIS_FILE = debug.getinfo(1, "S").source:match("([^/]*)$")

case("version and library", function()
  assert(pv.version() == "0.1.0", pv.version())
  assert(pv.library_path)
end)

case("ctx:defer_init: random inits wait, written vars keep their values, the rest get the same draws", function()
  local ctx = pv.context{threads = 1, seed = 5}
  local a, b, c = ctx:defer_init(function()
    local a = ctx:var("a", {1000}, {init = "normal", std = 1})
    local b = ctx:var("b", {1000}, {init = "uniform", bound = 2})
    local c = ctx:var("c", {4}, {init = "ones"})
    assert(a:read()[1] == 0, "a is zero-filled during the deferral")
    b:fill(7)
    return a, b, c
  end)
  local ra, rb = a:read(), b:read()
  local ctx2 = pv.context{threads = 1, seed = 5}
  local a2 = ctx2:var("a", {1000}, {init = "normal", std = 1}):read()
  for i = 1, 1000 do assert(ra[i] == a2[i] and rb[i] == 7, "deferred init") end
  assert(c:read()[1] == 1)
  local ok, err = pcall(ctx.defer_init, ctx, function() error("boom") end)
  assert(not ok and tostring(err):find("boom") and rawget(ctx, "_deferred") == nil, "errors end the deferral")
end)

case("header stripping", function()
  local s = pv._strip_header("#ifndef X\n#define X\n#ifdef __cplusplus\nextern \"C\" {\n#endif\nint a;\n" ..
    "#define LONG \\\n  continued\nint b;\n#ifdef __cplusplus\n}\n#endif\n#endif\n")
  assert(not s:find("extern", 1, true) and not s:find("#", 1, true) and not s:find("continued", 1, true), s)
  assert(s:find("int a;", 1, true) and s:find("int b;", 1, true), s)
end)

case("operator sugar with tensors and numbers", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local a = g:input("a", {2, 3})
  local b = g:input("b", {3})
  local outs = {
    a + b, a - b, a * b, a / b, -a, a + 2, 2 + a, a - 2, 2 - a, a * 3, 3 * a, a / 4, 4 / a, a ^ 2, (a + 1) ^ 0.5,
  }
  for _, t in ipairs(outs) do t:mark_output() end
  local plan = g:compile()
  local av, bv = {1, 2, 3, 4, 5, 6}, {10, 20, 40}
  plan:run{[a] = {{1, 2, 3}, {4, 5, 6}}, [b] = bv}
  local fns = {
    function(x, y) return x + y end, function(x, y) return x - y end, function(x, y) return x * y end,
    function(x, y) return x / y end, function(x) return -x end, function(x) return x + 2 end,
    function(x) return 2 + x end, function(x) return x - 2 end, function(x) return 2 - x end,
    function(x) return x * 3 end, function(x) return 3 * x end, function(x) return x / 4 end,
    function(x) return 4 / x end, function(x) return x * x end, function(x) return math.sqrt(x + 1) end,
  }
  for k, t in ipairs(outs) do
    local want = {}
    for i = 1, 6 do want[i] = fns[k](av[i], bv[(i - 1) % 3 + 1]) end
    same_shape(t.shape, {2, 3}, "out " .. k)
    eq_list(plan:read(t), want, 1e-6, "out " .. k)
  end
end)

case("unary methods", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("x", {4})
  local xs = {-1.5, -0.2, 0.3, 2.0}
  local ref = {
    exp = math.exp, tanh = math.tanh, abs = math.abs, square = function(v) return v * v end,
    relu = function(v) return v > 0 and v or 0 end, sigmoid = function(v) return 1 / (1 + math.exp(-v)) end,
    silu = function(v) return v / (1 + math.exp(-v)) end, neg = function(v) return -v end,
  }
  local outs = {}
  for name in pairs(ref) do outs[name] = x[name](x):mark_output() end
  local plan = g:compile()
  plan:write(x, xs):run()
  for name, f in pairs(ref) do
    local want = {}
    for i = 1, 4 do want[i] = f(xs[i]) end
    eq_list(plan:read(outs[name]), want, 1e-5, name)
  end
end)

case("shapes of shape ops, reductions and matmul", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("x", {2, 3, 4})
  same_shape(x.shape, {2, 3, 4})
  assert(x:numel() == 24 and x.ndim == 3 and x:dim() == 3 and x:size(-1) == 4 and x.dtype == "f32")
  assert(x.name == "x" and x.op == "input")
  same_shape(x:reshape{6, 4}.shape, {6, 4}, "reshape")
  same_shape(x:reshape(4, -1).shape, {4, 6}, "reshape -1")
  same_shape(x:permute{2, 0, 1}.shape, {4, 2, 3}, "permute")
  same_shape(x:transpose(0, 1).shape, {3, 2, 4}, "transpose")
  same_shape(x:slice(2, 1, 3).shape, {2, 3, 2}, "slice")
  same_shape(x:concat(x, 1).shape, {2, 6, 4}, "concat")
  same_shape(pv.concat({x, x, x}, -1).shape, {2, 3, 12}, "pv.concat")
  same_shape(x:sum(1).shape, {2, 4}, "sum")
  same_shape(x:sum(-1, true).shape, {2, 3, 1}, "sum keepdim")
  same_shape(x:mean(0).shape, {3, 4}, "mean")
  same_shape(x:max(2).shape, {2, 3}, "max")
  same_shape(x:sum().shape, {1}, "sum all")
  same_shape(x:sumsq().shape, {1}, "sumsq")
  local w = g:input("w", {5, 4})
  same_shape(x:matmul(w, false, true).shape, {2, 3, 5}, "matmul trans_b")
  same_shape(x:linear(w).shape, {2, 3, 5}, "linear")
  same_shape(x:linear(w, g:input("bias", {5})).shape, {2, 3, 5}, "linear+bias")
  same_shape(x:softmax{causal = false}.shape, {2, 3, 4}, "softmax")
  same_shape(x:rms_norm(g:input("n", {4})).shape, {2, 3, 4}, "rms_norm")
  same_shape(x:layer_norm(nil, nil).shape, {2, 3, 4}, "layer_norm")
  same_shape(x:cast("f16").shape, {2, 3, 4}, "cast")
  assert(x:cast("f16").dtype == "f16")
  local ids = g:input("ids", {2, 3}, "i64")
  assert(ids.dtype == "i64")
  same_shape(w:embedding(ids).shape, {2, 3, 4}, "embedding")
  same_shape(ids:label_mask().shape, {2, 3}, "label_mask")
  same_shape(x:reshape{6, 4}:token_logprob(ids:reshape{6}).shape, {6}, "token_logprob")
  same_shape(x:reshape{6, 4}:scatter_add(ids:reshape{6}, 9).shape, {9, 4}, "scatter_add")
  local img = g:input("img", {2, 3, 8, 8})
  same_shape(img:patchify(4).shape, {2, 4, 48}, "patchify")
  same_shape(img:patchify(4):unpatchify(4, 8, 8).shape, {2, 3, 8, 8}, "unpatchify")
  same_shape(img:patch_embed(g:input("pw", {5, 3, 4, 4}), nil, 4).shape, {2, 4, 5}, "patch_embed")
  local r = g:input("r", {2, 3, 2, 4})
  same_shape(r:rope(g:arange(3, "i32")).shape, {2, 3, 2, 4}, "rope")
  same_shape(g:fill(1.5, {2, 2}).shape, {2, 2}, "fill")
  same_shape(g:arange(5).shape, {5}, "arange")
  assert(tostring(x):find("input 'x' [2, 3, 4] f32", 1, true), tostring(x))
end)

case("values of shape ops, reductions, matmul", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("x", {2, 3})
  local w = g:input("w", {2, 3})
  local bias = g:input("b", {2})
  local outs = {
    x:transpose(0, 1):copy(), x:sum(1), x:mean(0), x:max(1), x:sum(), x:slice(1, 1, 3):copy(),
    x:matmul(w, false, true), x:linear(w, bias), x:reshape{3, 2}:copy(),
  }
  for _, t in ipairs(outs) do t:mark_output() end
  local plan = g:compile()
  plan:run{[x] = {1, 2, 3, 4, 5, 6}, [w] = {1, 0, -1, 0.5, 0.5, 0.5}, [bias] = {100, 200}}
  eq_list(plan:read(outs[1]), {1, 4, 2, 5, 3, 6}, 1e-6, "transpose")
  eq_list(plan:read(outs[2]), {6, 15}, 1e-6, "sum")
  eq_list(plan:read(outs[3]), {2.5, 3.5, 4.5}, 1e-6, "mean")
  eq_list(plan:read(outs[4]), {3, 6}, 1e-6, "max")
  eq_list(plan:read(outs[5]), {21}, 1e-6, "sum all")
  eq_list(plan:read(outs[6]), {2, 3, 5, 6}, 1e-6, "slice")
  eq_list(plan:read(outs[7]), {-2, 3, -2, 7.5}, 1e-6, "matmul")
  eq_list(plan:read(outs[8]), {98, 203, 98, 207.5}, 1e-6, "linear")
  local vals, shape = plan:read(outs[9])
  eq_list(vals, {1, 2, 3, 4, 5, 6}, 1e-6, "reshape")
  same_shape(shape, {3, 2})
  assert(plan:item(outs[5]) == 21)
  local raw, n = plan:read_raw(outs[2])
  assert(n == 2 and pv.ffi.istype("float[?]", raw) and raw[0] == 6 and raw[1] == 15)
  assert(plan:peak_bytes() > 0 and plan:naive_bytes() >= plan:peak_bytes() and plan:node_count() > 0)
  assert(plan:backend() == "cpu")
end)

case("cdata input and output buffers", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("x", {4})
  local ids = g:input("ids", {4}, "i32")
  local y = (x * 2):mark_output()
  local z = ids:label_mask(2):mark_output()
  local unmarked = (x + 1):mark_output():set_output(false)
  local plan = g:compile()
  plan:write(x, pv.array("f32", {1, 2, 3, 4}))
  plan:write(ids, pv.array("i32", {0, 2, 1, 2}))
  plan:run()
  local out = pv.array("f64", 4)
  plan:read_raw(y, out)
  assert(out[0] == 2 and out[3] == 8)
  eq_list(plan:read(z), {1, 0, 1, 0}, 0, "label_mask")
  plan:write(x, 0.5):run() -- a number fills the input
  eq_list(plan:read(y), {1, 1, 1, 1}, 0, "filled")
  raises(function() plan:read(unmarked) end, "PV_ERR_INVALID")
  raises(function() plan:write(x, pv.array("f32", 3)) end, "3 elements given", "4 expected")
  raises(function() plan:write(x, {1, 2, 3}) end, "PV_ERR_SHAPE", "3 elements")
end)

case("variables", function()
  local ctx = pv.context{seed = 3}
  local v = ctx:var("w", {2, 2}, {init = "normal", std = 1})
  assert(v.name == "w" and v.numel == 4 and v.dtype == "f32")
  same_shape(v.shape, {2, 2})
  local a = v:read()
  assert(#a == 4 and a[1] ~= 0)
  v:write({{1, 2}, {3, 4}})
  eq_list(v:read(), {1, 2, 3, 4}, 0, "write")
  v:fill(7)
  eq_list(v:read(), {7, 7, 7, 7}, 0, "fill")
  assert(v:item() == 7)
  local u = ctx:var("u", {3}, {init = "ones"})
  eq_list(u:read(), {1, 1, 1}, 0, "ones")
  local k = ctx:var("k", {2}, {dtype = "i64", data = {5, 6}})
  eq_list(k:read(), {5, 6}, 0, "i64 var")
  assert(ctx:find_var("u") == u and ctx:find_var("nope") == nil)
  assert(#ctx:vars() == 3 and ctx:vars()[1] == v)
  raises(function() ctx:var("w", {1}) end, "PV_ERR_INVALID", "'w' exists")
  raises(function() v:write({1, 2, 3}) end, "PV_ERR")
  -- same seed, same init
  local c1, c2 = pv.context{seed = 9}, pv.context{seed = 9}
  eq_list(c1:var("a", {5}, {init = "normal"}):read(), c2:var("a", {5}, {init = "normal"}):read(), 0, "seeded init")
  u:free()
  assert(ctx:find_var("u") == nil)
  raises(function() u:read() end, "freed")
end)

case("gradients and updates", function()
  local ctx = pv.context{threads = 1}
  local w = ctx:var("w", {3}, {data = {1, -2, 3}})
  local g = ctx:graph()
  local x = g:input("x", {3})
  local p = g:param(w)
  local loss = ((p * x):sum() + (p * p):sum()):mark_output() -- d/dw = x + 2w
  g:backward(loss)
  local dw = g:grad(p):mark_output()
  assert(g:grad(x) == nil, "x is not trainable")
  g:assign(w, dw, nil, true) -- w += dw (checks pv_assign)
  local plan = g:compile()
  plan:run{[x] = {1, 1, 1}}
  eq_list(plan:read(dw), {3, -3, 7}, 1e-6, "grad")
  eq_list(plan:read(loss), {2 + 14}, 1e-6, "loss")
  eq_list(w:read(), {4, -5, 10}, 1e-6, "assign accumulate")
  assert(p:var() == w)
end)

case("graph errors name the op and shapes, at the caller's line", function()
  local ctx = pv.context()
  local g = ctx:graph()
  local a, b = g:input("a", {2, 3}), g:input("b", {4})
  local err = raises(function() return a + b end, "add", "[2, 3]", "[4]")
  assert(err:find(THIS_FILE, 1, true), "position should be in the test file: " .. err)
  -- sticky: later builds say so until cleared
  raises(function() return a * 2 end, "earlier error", "add")
  g:clear_error()
  local c = a * 2
  same_shape(c.shape, {2, 3})
  raises(function() return a:matmul(g:input("w", {5, 7})) end, "matmul", "[5, 7]")
  g:clear_error()
  local ids = g:input("ids", {3}, "i32")
  raises(function() return ids:exp() end, "dtype", "i32", "f32")
  g:clear_error()
  raises(function() return a:softmax(3) end, "softmax")
  raises(function() return a:reshape{7} end, "reshape")
  g:clear_error()
  raises(function() return a + "x" end, "add: expected tensors or numbers")
  raises(function() g:input("z", {2}, "f128") end, "unknown dtype")
  local g2 = ctx:graph()
  raises(function() return a + g2:input("q", {2, 3}) end, "different graphs")
end)

case("status errors carry pv_last_error", function()
  local ctx = pv.context()
  local g = ctx:graph()
  local x = g:input("x", {2})
  local y = (x + 1):mark_output()
  local z = x * 3 -- not an output
  raises(function() g:compile{backend = "nope"} end, "PV_ERR_INVALID", "unknown backend 'nope'")
  local plan = g:compile()
  raises(function() plan:read(y) end, "PV_ERR_STATE", "has not run")
  raises(function() plan:write(y, {1, 2}) end, "not an input")
  plan:run{[x] = {1, 2}}
  raises(function() plan:read(z) end, "PV_ERR_INVALID")
  local ok, why = ctx:backend_available("vulkan")
  assert(type(ok) == "boolean" and (ok or type(why) == "string"))
  assert(ctx:backend_describe("cpu"):find("cpu", 1, true))
  local bad = ctx:graph()
  pcall(function() return bad:input("a", {2}) + bad:input("b", {3}) end)
  raises(function() bad:compile() end, "graph has an error", "add")
end)

case("pv.scope prefixes module paths", function()
  local ctx = pv.context()
  local g = ctx:graph()
  local x = g:input("x", {2, 3})
  local err = raises(function()
    pv.scope("mllm", function()
      pv.scope("llm.layers.3", function()
        pv.scope("attn", function(t) local y = t:matmul(t) return y end, x)
      end)
    end)
  end, "mllm.llm.layers.3.attn: matmul")
  assert(err:find(THIS_FILE, 1, true), err)
  -- full paths (as nn modules use) are not repeated
  raises(function()
    pv.scope("llm", function()
      pv.scope("llm.layers.0", function() pv.scope("llm.layers.0.mlp", function() return x:reshape{5} end) end)
    end)
  end, ": llm.layers.0.mlp: reshape")
  local r1, r2 = pv.scope("s", function(a, b) return a + 1, b end, 1, "q")
  assert(r1 == 2 and r2 == "q" and pv.scope_path() == "")
  raises(function() pv.scope("top", function() error("plain") end) end, "top: ", "plain")
end)

case("profiling", function()
  local ctx = pv.context{threads = 1}
  local g = ctx:graph()
  local x = g:input("x", {64})
  local y = x:exp():sum():mark_output()
  local plan = g:compile()
  plan:set_profiling(true)
  plan:run{[x] = 0}
  assert(plan:item(y) == 64)
  local prof = plan:profile()
  assert(prof:find("op", 1, true) and prof:find("total", 1, true), prof)
end)

case("freeing and garbage collection", function()
  for _ = 1, 20 do
    local ctx = pv.context()
    local g = ctx:graph()
    local x = g:input("x", {8})
    x:exp():mark_output()
    local plan = g:compile()
    plan:run{[x] = 1}
    if _ % 2 == 0 then ctx:free() end -- frees plan and graph first
  end
  collectgarbage()
  collectgarbage()
  local ctx = pv.context()
  local g = ctx:graph()
  local x = g:input("x", {2})
  g:free()
  raises(function() return x + 1 end, "graph was freed")
  local g2 = ctx:graph()
  g2:input("y", {2}):exp():mark_output()
  local p2 = g2:compile()
  ctx:free()
  raises(function() p2:run() end, "plan was freed")
end)

case("safetensors and tokenizer wrappers", function()
  local ctx = pv.context{seed = 1}
  local a = ctx:var("a", {2, 3}, {init = "normal", std = 1})
  local b = ctx:var("b", {4}, {data = {1, 2, 3, 4}})
  local path = os.tmpname()
  ctx:save_safetensors(path, {a, b}, {metadata = {k = "v"}})
  local st = ctx:open_safetensors(path)
  assert(table.concat(st:names(), ",") == "a,b" and st:count() == 2 and st:metadata():find('"k"', 1, true))
  local info = st:info("a")
  assert(info.dtype == "f32" and info.numel == 6)
  same_shape(info.shape, {2, 3})
  eq_list(st:read_table("b"), {1, 2, 3, 4}, 0, "read_table")
  local c = ctx:var("c", {2, 3})
  st:load_var("a", c)
  eq_list(c:read(), a:read(), 0, "load_var")
  raises(function() st:read("zz") end, "PV_ERR_NOT_FOUND", "'zz'")
  raises(function() st:load_var("b", c) end, "PV_ERR_SHAPE", "[4]", "[2, 3]")
  st:close()
  raises(function() st:names() end, "closed")
  os.remove(path)
  raises(function() ctx:tokenizer("/nonexistent/tokenizer.json") end, "PV_ERR_IO", "tokenizer.json")
  local fixtures = os.getenv("PIVOT_FIXTURES") or (pv.source_dir .. "/../shared/fixtures")
  local tj = fixtures .. "/hf/tokenizer/tokenizer.json"
  local f = io.open(tj)
  if not f then return end
  f:close()
  local tok = ctx:tokenizer(tj)
  local text = "Hello world, this is pivot!"
  local ids = tok:encode(text)
  assert(#ids > 0 and tok:vocab_size() > 0)
  assert(tok:decode(ids) == text, tok:decode(ids))
  assert(tok:token_to_id(tok:id_to_token(ids[1])) == ids[1])
  local raw, n = tok:encode_raw(text)
  assert(n == #ids and raw[0] == ids[1] and tok:decode(raw, n) == text)
end)

-- the command: options, exit codes, tracebacks
local exe = arg and arg[-1]
local tmp = os.tmpname()
local function sh(cmd)
  local f = io.popen(cmd .. " 2>&1; echo \"rc=$?\"")
  local out = f:read("*a")
  f:close()
  return out, tonumber(out:match("rc=(%d+)%s*$"))
end
local function write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

case("pivot run passes options", function()
  assert(exe, "arg[-1] (the pivot executable) is not set")
  write_file(tmp, [[
local o = ...
assert(o == opts)
print("steps", o.steps, type(o.steps))
print("quick", o.quick, "out_dir", o.out_dir, "lr", o.lr, "pos", o[1], o[2])
print("backend", o.backend, os.getenv("PIVOT_BACKEND"), "threads", os.getenv("PIVOT_THREADS"))
print("arg0", arg[0] ~= nil, "neg", o.neg)
]])
  local out, rc = sh(string.format("%q run %q --steps 10 --quick --out-dir x --lr=1e-3 p1 --backend ref --threads 1 " ..
    "--neg -2 p2", exe, tmp))
  assert(rc == 0, out)
  assert(out:find("steps\t10\tnumber", 1, true), out)
  assert(out:find("quick\ttrue\tout_dir\tx\tlr\t0.001\tpos\tp1\tp2", 1, true), out)
  assert(out:find("backend\tref\tref\tthreads\t1", 1, true), out)
  assert(out:find("neg\t-2", 1, true), out)
end)

case("a bad PIVOT_GEMM / PIVOT_VMATH value is named on stderr, not silently ignored", function()
  local out = sh(string.format("PIVOT_GEMM=bogus %q devices", exe))
  assert(out:find("PIVOT_GEMM='bogus' is not one of avx512, avx2, openblas", 1, true), out)
  write_file(tmp, "local pv = require 'pivot'\nlocal g = pv.context():graph()\n" ..
    "local x = g:input('x', {4096})\nlocal y = x:exp()\ny:mark_output()\ng:compile{backend = 'cpu'}:run()\n")
  out = sh(string.format("PIVOT_VMATH=nope %q run %q", exe, tmp))
  assert(out:find("PIVOT_VMATH='nope' is not one of sse, avx2, avx512", 1, true), out)
end)

case("pivot run errors: traceback and exit codes", function()
  write_file(tmp, "local function f()\n  error('boom')\nend\nf()\n")
  local out, rc = sh(string.format("%q run %q", exe, tmp))
  assert(rc == 1, out)
  assert(out:find(":2: boom", 1, true) and out:find("stack traceback", 1, true), out)
  write_file(tmp, "local pv = require 'pivot'\nlocal g = pv.context():graph()\n" ..
    "local y = g:input('a', {2}) + g:input('b', {3})\n")
  out, rc = sh(string.format("%q run %q", exe, tmp))
  assert(rc == 1 and out:find(":3: add: shapes [2] and [3]", 1, true), out)
  out, rc = sh(string.format("%q run %q", exe, tmp .. ".missing"))
  assert(rc == 2 and out:find("cannot read script", 1, true), out)
  write_file(tmp, "return false")
  out, rc = sh(string.format("%q run %q", exe, tmp))
  assert(rc == 1, out)
  out, rc = sh(string.format("%q frobnicate", exe))
  assert(rc == 2 and out:find("unknown command", 1, true) and out:find("usage", 1, true), out)
  out, rc = sh(string.format("%q version", exe))
  assert(rc == 0 and out:find("pivot 0.1.0", 1, true) and out:find("LuaJIT", 1, true), out)
  out, rc = sh(string.format("%q devices", exe))
  assert(rc == 0 and out:find("cpu", 1, true) and out:find("vulkan", 1, true), out)
end)
os.remove(tmp)

T:finish()
