-- round_robin.lua: never split a descriptor. Each one goes whole to the next
-- rail in turn, so many descriptors spread over all rails while each stays
-- on one connection (fewest chunks, best for many small KV blocks).
local P = {}

function P.plan(xfer, rails, peer)
  local use = {}
  for _, r in ipairs(rails) do
    if r.state == "up" then use[#use + 1] = r.index end
  end
  return { rails = use, stripe_min = math.maxinteger }
end

return P
