"""Video IO (PyAV) and the frame/tensor conventions."""

from openwfm.video.io import (Video, VideoError, VideoInfo, VideoWriter, check_output, count_frames, probe, read_video,
                              write_gif, write_video)
from openwfm.video.transforms import (center_crop, from_tensor, pad, pad_to_multiple, resize, resize_short_side,
                                      to_tensor)

__all__ = ["Video", "VideoError", "VideoInfo", "VideoWriter", "check_output", "count_frames", "probe", "read_video", "write_video", "write_gif",
           "resize", "resize_short_side", "center_crop", "pad", "pad_to_multiple", "to_tensor", "from_tensor"]
