"""Training data: WebDataset shards with an offset index, aspect-ratio buckets, a distributed resumable
bucket batch sampler, and joint image + video batches."""

from openwfm.data.buckets import (DEFAULT_BUCKETS, bucket_size, bucket_sizes, fit_to_bucket, nearest_bucket,
                                  parse_bucket)
from openwfm.data.dataset import (ClipDataset, DataConfig, DataConfigError, StageConfig, collate, make_loader,
                                  stage_at, worker_context)
from openwfm.data.sampler import BucketBatchSampler
from openwfm.data.shards import (DataError, IndexEntry, ShardIndex, build_index, decode_image, decode_video,
                                 load_index, pack_samples, pack_sim_dir, parse_meta, probe_video, read_sample,
                                 scan_shard)

__all__ = ["DEFAULT_BUCKETS", "bucket_size", "bucket_sizes", "fit_to_bucket", "nearest_bucket", "parse_bucket",
           "ClipDataset", "DataConfig", "DataConfigError", "StageConfig", "collate", "make_loader", "stage_at",
           "worker_context",
           "BucketBatchSampler", "DataError", "IndexEntry", "ShardIndex", "build_index", "decode_image",
           "decode_video", "load_index", "pack_samples", "pack_sim_dir", "parse_meta", "probe_video",
           "read_sample", "scan_shard"]
