"""The video curator: raw footage -> clean, captioned, deduplicated clips in WebDataset shards
(Cosmos paper sec. 3). Built so far: the crash-proof manifest, synthetic shot transitions with ground
truth, and the classical shot splitter with the clip rules."""
