-- numa_local.lua: keep traffic on the rails near the memory.
--
-- CUDA memory goes over the rails whose `gpu` is the buffer's device. On a
-- p5.48xlarge that is the 4 EFA rails beside each H100; declare it per rail
-- in the config (rails = { { provider = "efa", domain = "rdmap79s0", gpu = 0 }, ... }).
-- Host memory goes over the rails on the buffer's NUMA node (xfer.numa, from
-- the kernel at registration). When no rail is near, or the topology is
-- unknown, every rail is used, as in even_stripe.lua.
local P = {}

function P.plan(xfer, rails, peer)
  local near, all = {}, {}
  for _, r in ipairs(rails) do
    if r.state == "up" then
      all[#all + 1] = r.index
      local close = (xfer.mem == "cuda" and r.gpu >= 0 and r.gpu == xfer.device)
        or (xfer.mem == "host" and xfer.numa >= 0 and r.numa == xfer.numa)
      if close then near[#near + 1] = r.index end
    end
  end
  return { rails = #near > 0 and near or all, stripe_min = 128 * 1024 }
end

return P
