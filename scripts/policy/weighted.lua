-- weighted.lua: split in proportion to rail speed. With rails of 400, 400,
-- 100 and 100 Mbit/s, a 1 MiB descriptor sends 40%, 40%, 10% and 10%, so all
-- four finish together instead of waiting on the slow ones. Rails whose speed
-- is unknown (0) count as the mean of the known ones, or 1 if none is known.
local P = {}

function P.plan(xfer, rails, peer)
  local known, sum = 0, 0
  for _, r in ipairs(rails) do
    if r.state == "up" and r.speed > 0 then known, sum = known + 1, sum + r.speed end
  end
  local default = known > 0 and sum / known or 1
  local use, weights = {}, {}
  for _, r in ipairs(rails) do
    if r.state == "up" then
      use[#use + 1] = r.index
      weights[#weights + 1] = r.speed > 0 and r.speed or default
    end
  end
  return { rails = use, weights = weights, stripe_min = 128 * 1024 }
end

return P
