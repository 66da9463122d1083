-- Crash-resume test of pivot.train: a training process (tests/lua/resume_worker.lua) that saves a checkpoint every
-- step is killed with SIGKILL mid-run, restarted with --resume, and its final parameters and optimizer state must
-- equal, bit for bit, those of an uninterrupted run (same backend, --threads 1 for both).
local ffi = require "ffi"
local pv = require "pivot"
local json = require "pivot.json"
local ckpt = require "pivot.train.checkpoint"

local passed, failed = 0, 0
local function test(name, fn)
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    passed = passed + 1
    print("ok    " .. name)
  else
    failed = failed + 1
    print("FAIL  " .. name .. ": " .. tostring(err))
  end
end

if not pcall(ffi.typeof, "pv_test_resume_marker") then
  ffi.cdef [[
    typedef struct pv_test_resume_marker pv_test_resume_marker;
    int pv_test_usleep(unsigned int usec) __asm__("usleep");
  ]]
end
local function sleep_ms(ms) ffi.C.pv_test_usleep(ms * 1000) end

-- the pivot executable: the one running this script (arg[-1], set by tools/pivot_main.c), or $PIVOT_EXE
local EXE = os.getenv("PIVOT_EXE")
if not EXE or EXE == "" then EXE = arg and arg[-1] end
assert(EXE and EXE ~= "", "cannot tell the pivot executable (set PIVOT_EXE)")
local SRC = rawget(_G, "PIVOT_SOURCE_DIR") or pv.source_dir or "."
local WORKER = SRC .. "/tests/lua/resume_worker.lua"
local q = ckpt.shell_quote

local TMP = string.format("/tmp/pivot_test_resume_%d", ckpt.getpid())
ckpt.rmtree(TMP)
ckpt.mkdirs(TMP)

local N, K = 24, 6

local function worker_cmd(dir, extra)
  return string.format("%s run %s --out %s --steps %d --threads 1 %s", q(EXE), q(WORKER), q(dir), N, extra or "")
end

local function sh_ok(cmd)
  local r = os.execute(cmd)
  return r == true or r == 0
end

local function run_sync(dir, extra, logname)
  local logf = TMP .. "/" .. logname
  local ok = sh_ok(worker_cmd(dir, extra) .. " > " .. q(logf) .. " 2>&1")
  local f = io.open(logf, "rb")
  local text = f and f:read("*a") or ""
  if f then f:close() end
  if not ok then error("worker failed:\n" .. text, 0) end
  return text
end

local function alive(pid) return sh_ok("kill -0 " .. pid .. " 2>/dev/null") end

-- compares two safetensors files tensor by tensor, bit for bit (f32 read as u32)
local function compare_files(ctx, a, b)
  local sa, sb = ctx:open_safetensors(a), ctx:open_safetensors(b)
  local na, nb = sa:names(), sb:names()
  table.sort(na)
  table.sort(nb)
  assert(#na == #nb and #na > 0, string.format("%s has %d tensors, %s %d", a, #na, b, #nb))
  local total = 0
  for i, name in ipairs(na) do
    assert(nb[i] == name, "tensor names differ: " .. name .. " vs " .. tostring(nb[i]))
    local ia, ib = sa:info(name), sb:info(name)
    assert(ia.dtype == "f32" and ib.dtype == "f32", name .. ": f32 on disk")
    local x, n1 = sa:read(name, "f32")
    local y, n2 = sb:read(name, "f32")
    assert(n1 == n2, name .. ": sizes differ")
    local ux, uy = ffi.cast("const uint32_t *", x), ffi.cast("const uint32_t *", y)
    for k = 0, n1 - 1 do
      if ux[k] ~= uy[k] then
        error(string.format("%s[%d] differs: %.9g (0x%08x) vs %.9g (0x%08x)", name, k, x[k], tonumber(ux[k]), y[k],
          tonumber(uy[k])), 0)
      end
    end
    total = total + n1
  end
  sa:close()
  sb:close()
  return #na, total
end

test("kill -9 mid-run, --resume, final state bit-identical to an uninterrupted run", function()
  local A, B = TMP .. "/a", TMP .. "/b"
  -- the uninterrupted reference
  run_sync(A, "", "a.log")
  assert(ckpt.find_latest(A) == A .. "/checkpoint-" .. N, "reference run finished")

  -- the victim: slowed down a little so that the kill lands mid-run
  local pidfile = TMP .. "/b.pid"
  os.execute(worker_cmd(B, "--delay-ms 60") .. " > " .. q(TMP .. "/b1.log") .. " 2>&1 & echo $! > " .. q(pidfile))
  local f = assert(io.open(pidfile, "rb"))
  local pid = tonumber(f:read("*a"))
  f:close()
  assert(pid and pid > 1, "no pid")
  local waited = 0
  local function latest_step() -- the step the "latest" pointer names (0 if none yet)
    local lf = io.open(B .. "/latest", "rb")
    if not lf then return 0 end
    local t = lf:read("*a") or ""
    lf:close()
    return tonumber(t:match("checkpoint%-(%d+)")) or 0
  end
  while latest_step() < K do
    assert(waited < 60000, "checkpoint " .. K .. " did not appear within 60 s")
    if waited % 1000 == 0 and waited > 0 then assert(alive(pid), "the worker died early") end
    sleep_ms(5)
    waited = waited + 5
  end
  sleep_ms(ckpt.getpid() % 37) -- a little jitter, so that over many runs the kill also lands inside a save
  os.execute("kill -9 " .. pid)
  local w = 0
  while alive(pid) and w < 5000 do
    sleep_ms(10)
    w = w + 10
  end
  assert(not alive(pid), "the worker survived kill -9")
  local path, st = ckpt.find_latest(B)
  assert(path and st.global_step >= K and st.global_step < N,
    "the kill should land mid-run (latest: " .. tostring(path) .. ")")
  print(string.format("      killed pid %d; latest complete checkpoint: step %d", pid, st.global_step))
  -- debris a crash can leave: a half-written checkpoint folder and a temp pointer; resume must ignore them
  ckpt.mkdirs(B .. "/checkpoint-" .. (N + 5) .. ".tmp-99999999")
  local junk = io.open(B .. "/latest.tmp-99999999", "wb")
  junk:write("checkpoint-999\n")
  junk:close()

  local text = run_sync(B, "--resume", "b2.log")
  local start = tonumber(text:match("worker: start at step (%d+)"))
  assert(start and start >= K and start == st.global_step,
    "the resumed run should start at the latest checkpoint:\n" .. text)
  print(string.format("      resumed at step %d, ran to step %d", start, N))

  local ctx = pv.context()
  local nm, nvals = compare_files(ctx, A .. "/checkpoint-" .. N .. "/model.safetensors",
    B .. "/checkpoint-" .. N .. "/model.safetensors")
  local no, ovals = compare_files(ctx, A .. "/checkpoint-" .. N .. "/optimizer.safetensors",
    B .. "/checkpoint-" .. N .. "/optimizer.safetensors")
  print(string.format("      identical: %d param tensors (%d values), %d optimizer tensors (%d values)", nm, nvals, no,
    ovals))
  local sa = json.read_file(A .. "/checkpoint-" .. N .. "/trainer_state.json")
  local sb = json.read_file(B .. "/checkpoint-" .. N .. "/trainer_state.json")
  assert(sa.global_step == N and sb.global_step == N)
  assert(sa.data_state.index == sb.data_state.index and sa.data_state.index == 2 * N, "data position")

  -- metrics.jsonl: each step logged exactly once, with identical values
  local function steps_of(dir)
    local r = {}
    for line in io.lines(dir .. "/metrics.jsonl") do
      local o = json.decode(line)
      if o.loss then
        assert(r[o.step] == nil, dir .. ": step " .. o.step .. " logged twice")
        r[o.step] = o
      end
    end
    return r
  end
  local la, lb = steps_of(A), steps_of(B)
  for s = 1, N do
    assert(la[s] and lb[s], "step " .. s .. " missing from metrics.jsonl")
    assert(la[s].loss == lb[s].loss and la[s].grad_norm == lb[s].grad_norm, "metrics of step " .. s .. " differ")
  end
  -- the debris is gone and only the last 2 checkpoints are kept
  assert(not ckpt.is_dir(B .. "/checkpoint-" .. (N + 5) .. ".tmp-99999999"), "stale temp folder removed")
  local list = ckpt.list(B)
  assert(#list == 2 and list[2].step == N, "keep the last 2 checkpoints")
end)

test("resume without a 'latest' pointer scans for the newest complete checkpoint", function()
  local A = TMP .. "/a"
  os.remove(A .. "/latest")
  ckpt.mkdirs(A .. "/checkpoint-" .. (N + 1)) -- incomplete (no trainer_state.json): ignored
  local path, st = ckpt.find_latest(A)
  assert(path == A .. "/checkpoint-" .. N and st.global_step == N, "found " .. tostring(path))
  local text = run_sync(A, "--resume", "a2.log")
  assert(text:match("worker: start at step " .. N), "a finished run resumes at its end:\n" .. text)
end)

ckpt.rmtree(TMP)
print(string.format("%d passed, %d failed", passed, failed))
if failed > 0 then error(failed .. " test(s) failed", 0) end
