-- Argo CD health check for autoglm.io/ModelDeployment (Lua 5.1, as Argo CD runs it). Installed as
-- resource.customizations.health.autoglm.io_ModelDeployment in argocd-cm (kustomization.yaml here builds it).
--   Progressing: not planned yet, the operator has not seen the newest spec, converting weights, rolling out,
--                replicas starting;
--   Degraded:    the spec is invalid or nothing can place it, a conversion Job failed, a member cannot be
--                reached, a rollout rolled back or is blocked, or the Degraded condition is True (fewer replicas
--                than wanted, CPU fallback, a member down), with that condition's message;
--   Healthy:     Ready (every desired replica ready) and not Degraded.
local hs = {}

local function condition(kind)
  if obj.status == nil or obj.status.conditions == nil then
    return nil
  end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function answer(status, message)
  hs.status = status
  hs.message = message or ""
  return hs
end

local planned = condition("Planned")
if planned == nil then
  return answer("Progressing", "Waiting for the operator to plan the deployment")
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  return answer("Progressing", "Waiting for the operator to plan generation " .. obj.metadata.generation)
end
if planned.status == "Unknown" then
  return answer("Progressing", planned.message)
end
if planned.status == "False" then
  return answer("Degraded", planned.reason .. ": " .. planned.message)
end

local converted = condition("Converted")
if converted ~= nil and converted.status == "False" then
  if converted.reason == "ConversionFailed" then
    return answer("Degraded", converted.reason .. ": " .. converted.message)
  end
  return answer("Progressing", converted.message)
end

local propagated = condition("Propagated")
if propagated ~= nil and propagated.status == "False" then
  return answer("Degraded", propagated.reason .. ": " .. propagated.message)
end

local rollout = condition("Progressing")
if rollout ~= nil then
  if rollout.status == "False" then
    return answer("Degraded", rollout.reason .. ": " .. rollout.message)
  end
  if rollout.reason == "RollingOut" then
    return answer("Progressing", rollout.message)
  end
end

local degraded = condition("Degraded")
if degraded ~= nil and degraded.status == "True" then
  return answer("Degraded", degraded.message)
end

local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  return answer("Healthy", ready.message)
end
return answer("Progressing", ready ~= nil and ready.message or "Waiting for replicas")
