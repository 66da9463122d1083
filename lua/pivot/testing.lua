-- pivot.testing: the small harness the Lua tests share. A suite counts cases, prints "ok NAME (t s)" or
-- "FAIL NAME: traceback", and finish() prints "N passed, N failed" and raises when anything failed, so
-- `pivot run` exits non-zero.
local M = {}

local Suite = {}
Suite.__index = Suite

function M.suite(name) return setmetatable({name = name or "tests", passed = 0, failed = 0}, Suite) end

function Suite:case(name, fn)
  local t0 = os.clock()
  local ok, err = xpcall(fn, debug.traceback)
  if ok then
    self.passed = self.passed + 1
    print(string.format("ok    %s (%.2f s)", name, os.clock() - t0))
  else
    self.failed = self.failed + 1
    io.stderr:write("FAIL ", name, ": ", tostring(err), "\n")
  end
end

function Suite:finish()
  print(string.format("%d passed, %d failed", self.passed, self.failed))
  if self.failed > 0 then error(string.format("%s: %d test(s) failed", self.name, self.failed), 0) end
end

-- near(a, b, tol, what): raises unless |a - b| <= tol * max(1, |b|)
function M.near(a, b, tol, what)
  tol = tol or 1e-5
  if not (math.abs(a - b) <= tol * math.max(1, math.abs(b))) then
    error(string.format("%s = %.9g, expected %.9g (tol %.1g)", what or "value", a, b, tol), 2)
  end
end

-- raises(fn, ...): fn must raise; the message must contain every given plain string; returns the message
function M.raises(fn, ...)
  local ok, err = pcall(fn)
  if ok then error("expected an error", 2) end
  err = tostring(err)
  for _, s in ipairs({...}) do
    if not err:find(s, 1, true) then error(string.format("error %q does not mention %q", err, s), 2) end
  end
  return err
end

-- a fresh temporary directory (unique per process and call)
function M.tmpdir(tag)
  local f = os.tmpname()
  os.remove(f)
  local dir = f .. "_" .. (tag or "pivot")
  os.execute("mkdir -p '" .. dir .. "'")
  return dir
end

return M
