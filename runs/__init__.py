"""The application ring: what a run is and does, with no Prefect in it.

flows/ (the story) -> tasks/ (retries, caching, tags) -> runs/ (specs, planning, shard work, the
method plug-ins) -> infra/ (store, registry, manifest) and styleops/ (pure PyTorch). Nothing
imports runs/ but tasks/ and flows/.
"""
