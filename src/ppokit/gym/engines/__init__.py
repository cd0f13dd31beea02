"""Update engines: how a policy's parameters are trained from a rollout, by hand-written numpy gradients or by torch autograd over ppokit.core."""
