"""Inference pipelines, diffusers-style: ``WorldPipeline`` (Text2World / Video2World, post-trained conditions)
and ``ARPipeline`` (autoregressive Video2World). They load models through ``openwfm.hub`` and import no
training code."""
