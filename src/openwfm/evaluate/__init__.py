"""Evaluation metrics (design.md section 2: evaluate/)."""

from openwfm.evaluate.metrics import (EvalError, I3DFeatures, effnet_video_features, fd_effnet, feature_distance,
                                      frechet_distance, fvd, gaussian_fit, perceptual_distance, psnr, ssim)

__all__ = ["EvalError", "psnr", "ssim", "perceptual_distance", "frechet_distance", "gaussian_fit",
           "feature_distance", "effnet_video_features", "fd_effnet", "I3DFeatures", "fvd"]
