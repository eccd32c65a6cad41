-- even_stripe.lua: NIXL's rule. A descriptor of 128 KiB or more is split in
-- equal shares across every rail that reaches the peer; a smaller one goes
-- whole to one rail, round-robin. Equal shares make the slowest rail set the
-- pace, so prefer weighted.lua when rails differ in speed.
--
-- plan(xfer, rails, peer) -> { rails = {...}, weights = {...}, stripe_min =, chunk = }
--   xfer:  op ("write"/"read"), mem ("host"/"cuda"), device, size (lower
--          bound of the size class), size_class
--   rails: one table per rail: index, provider, domain, address, speed
--          (Mbit/s, 0 unknown), numa, state ("up", "down", "unreachable")
--   peer:  name, reachable (list of rail indexes)
local P = {}

function P.plan(xfer, rails, peer)
  local use, weights = {}, {}
  for _, r in ipairs(rails) do
    if r.state == "up" then
      use[#use + 1] = r.index
      weights[#weights + 1] = 1
    end
  end
  return { rails = use, weights = weights, stripe_min = 128 * 1024 }
end

return P
