-- Argo CD health check for atoll.dev/Tenant.
-- Maps the Tenant's phase and Ready condition to Argo CD health, so an
-- Application that holds Tenants is Healthy only when every tenant answers.
local hs = {}

local function ready_condition(obj)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to pick up the Tenant"
  return hs
end

-- A status written for an older spec says nothing about the current one.
if status.observedGeneration ~= nil and obj.metadata.generation ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "The operator has not yet seen the latest spec"
  return hs
end

local ready = ready_condition(obj)
local message = ""
if ready ~= nil and ready.message ~= nil then
  message = ready.message
end

if ready ~= nil and ready.reason == "InvalidSpec" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end

if status.phase == "Ready" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
elseif status.phase == "Sleeping" then
  -- Asleep after its idle time (spec.idle): by design, and its URL still
  -- answers (the first request wakes it).
  hs.status = "Healthy"
elseif status.phase == "Suspended" then
  hs.status = "Suspended"
elseif status.phase == "Degraded" then
  hs.status = "Degraded"
else
  -- Provisioning, Deleting, or Ready without a True condition yet.
  hs.status = "Progressing"
end
if message ~= "" then
  hs.message = message
else
  hs.message = "Phase " .. status.phase
end
return hs
