-- pivot.chat: the paper's ChatML prompt (LLaVA-OneVision's `qwen_1_5` template) and batches of token ids.
--
--   local chat = require "pivot.chat"
--   local tok = ctx:tokenizer("tokenizer.json")
--   local s = chat.build(tok, "What color is the circle?", "Red.", {image_token = "<image>"})
--   s.ids, s.labels        -- Lua lists of the same length; labels are -100 on the prompt
--   s.prompt_len           -- number of prompt ids
--   s.image_pos            -- 0-based position of the image placeholder in s.ids (nil without an image token)
--
-- The rendered text (LLaVA's conv_qwen, system "You are a helpful assistant."):
--   <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<image>\n{question}<|im_end|>\n
--   <|im_start|>assistant\n{answer}<|im_end|>\n
-- The prompt ends with "<|im_start|>assistant\n"; the completion "{answer}<|im_end|>\n" is the supervised part
-- (TRL's prompt/completion split: the two are tokenized separately, so the prompt length is exact).
--
-- opts:
--   system: the system message (default "You are a helpful assistant."; false: no system turn)
--   image_token: "<image>" (default; LLaVA's literal placeholder), "<|image_pad|>" (a special token of the Qwen2
--     tokenizer), or false (no image text in the prompt: the images are put in front of the text, the fixtures'
--     "prefix" mode). The placeholder is one id at s.image_pos; pivot.models.mllm replaces it by the image
--     embeddings (image_pos in its forward).
--   image_token_id: the id written at the placeholder (default: the tokenizer's id of image_token if it has one,
--     else of "<|image_pad|>", else pad_id or 0). It must be a valid vocabulary id (the row is embedded whole).
--   end_of_turn: the text after the answer (default "<|im_end|>\n")
--   image_newline: the text between the image token and the question (default "\n")
local M = {}
M.IGNORE = -100
M.SYSTEM = "You are a helpful assistant."

local function append(dst, src)
  for i = 1, #src do dst[#dst + 1] = src[i] end
  return dst
end

-- the prompt text with the image token (or none); the caller splits at the image token
function M.render_prompt(question, opts)
  opts = opts or {}
  local parts = {}
  local system = opts.system
  if system == nil then system = M.SYSTEM end
  if system then parts[#parts + 1] = "<|im_start|>system\n" .. system .. "<|im_end|>\n" end
  local img = opts.image_token
  if img == nil then img = "<image>" end
  local user = question
  if img then user = img .. (opts.image_newline or "\n") .. question end
  parts[#parts + 1] = "<|im_start|>user\n" .. user .. "<|im_end|>\n<|im_start|>assistant\n"
  return table.concat(parts)
end

function M.render_completion(answer, opts)
  opts = opts or {}
  return answer .. (opts.end_of_turn or "<|im_end|>\n")
end

-- the full text of one exchange
function M.render(question, answer, opts)
  return M.render_prompt(question, opts) .. M.render_completion(answer, opts)
end

local function placeholder_id(tok, img, opts)
  if opts.image_token_id then return opts.image_token_id end
  local id = tok:token_to_id(img)
  if id then return id end
  id = tok:token_to_id("<|image_pad|>")
  if id then return id end
  return opts.pad_id or 0
end

-- Encodes the prompt: ids, image_pos (0-based, or nil)
function M.encode_prompt(tok, question, opts)
  opts = opts or {}
  local text = M.render_prompt(question, opts)
  local img = opts.image_token
  if img == nil then img = "<image>" end
  if not img then return tok:encode(text), nil end
  local a, b = text:find(img, 1, true)
  local before, after = text:sub(1, a - 1), text:sub(b + 1)
  if after:find(img, 1, true) then error("chat: the prompt has more than one " .. img, 2) end
  local ids = tok:encode(before)
  local pos = #ids
  ids[#ids + 1] = placeholder_id(tok, img, opts)
  append(ids, tok:encode(after))
  return ids, pos
end

-- chat.build(tok, question, answer, opts) -> {ids, labels, prompt_len, image_pos, text}
function M.build(tok, question, answer, opts)
  opts = opts or {}
  local ids, pos = M.encode_prompt(tok, question, opts)
  local plen = #ids
  local labels = {}
  for i = 1, plen do labels[i] = M.IGNORE end
  if answer ~= nil then
    local comp = tok:encode(M.render_completion(answer, opts))
    for _, id in ipairs(comp) do
      ids[#ids + 1] = id
      labels[#labels + 1] = id
    end
  end
  return {ids = ids, labels = labels, prompt_len = plen, image_pos = pos,
    text = M.render(question, answer or "", opts)}
end

-- A preference pair: {chosen = build(...), rejected = build(...)} with the same prompt
function M.build_pair(tok, question, chosen, rejected, opts)
  return {chosen = M.build(tok, question, chosen, opts), rejected = M.build(tok, question, rejected, opts)}
end

-- Right-pads a list of built samples to length Lt (default: the longest; longer samples raise, or are cut
-- when opts.truncate) -> {ids = flat R*Lt list, labels = flat R*Lt list, image_pos = list of R, Lt, lengths}
-- Padding ids are pad_id (default 0) with label -100.
function M.batch(samples, Lt, opts)
  opts = opts or {}
  local pad = opts.pad_id or 0
  local maxlen = 0
  for _, s in ipairs(samples) do maxlen = math.max(maxlen, #s.ids) end
  Lt = Lt or maxlen
  local ids, labels, pos, lens = {}, {}, {}, {}
  for r, s in ipairs(samples) do
    local n = #s.ids
    if n > Lt then
      if not opts.truncate then
        error(string.format("chat.batch: sample %d has %d ids, more than the bucket length %d", r, n, Lt), 2)
      end
      n = Lt
    end
    for t = 1, Lt do
      ids[#ids + 1] = t <= n and s.ids[t] or pad
      labels[#labels + 1] = t <= n and s.labels[t] or M.IGNORE
    end
    pos[r] = s.image_pos
    lens[r] = n
  end
  return {ids = ids, labels = labels, image_pos = pos, Lt = Lt, lengths = lens}
end

return M
