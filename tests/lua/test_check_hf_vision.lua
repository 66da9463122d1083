-- Runs the SigLIP and SigLIP2 NaFlex reference checks (pivot.check_hf) on ../shared/fixtures/hf and requires
-- every group (forward outputs, objective, every gradient) within tolerance. Prints the max errors.
local check = require "pivot.check_hf"

local FIX = "../shared/fixtures/hf"
local T = require("pivot.testing").suite("check_hf_vision")
local function case(name, fn) T:case(name, fn) end

for _, e in ipairs {{"siglip", "siglip", 40}, {"siglip2_naflex", "siglip2", 2}} do
  local sub, kind, min_rows = e[1], e[2], e[3]
  case(sub, function()
    local dir = FIX .. "/" .. sub
    local f = io.open(dir .. "/golden.safetensors", "rb")
    if not f then error("fixture missing: " .. dir .. "/golden.safetensors (tests must not skip)") end
    f:close()
    local rows, k = check.run(dir, {threads = 2})
    assert(k == kind, "detected " .. tostring(k) .. ", expected " .. kind)
    assert(#rows >= min_rows, string.format("only %d rows", #rows))
    local text, nfail = check.format(rows)
    local s = check.summary(rows)
    print(string.format("  %s: %d groups, max forward err %.3e, max grad err %s", sub, #rows, s.forward or 0,
      s.grad and string.format("%.3e", s.grad) or "-"))
    if nfail > 0 then error(nfail .. " groups over tolerance:\n" .. text) end
  end)
end

case("detect errors name the directory", function()
  local ok, err = pcall(check.run, FIX .. "/does_not_exist", {})
  assert(not ok and tostring(err):find("does_not_exist", 1, true), tostring(err))
end)

T:finish()
