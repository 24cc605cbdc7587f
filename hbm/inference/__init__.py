"""Stage 3, inference: sampler settings, backends, the nutpie cache, fitting and the gate."""
