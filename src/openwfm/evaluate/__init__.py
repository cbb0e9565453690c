"""Evaluation metrics (design.md section 2: evaluate/)."""

from openwfm.evaluate.consistency import ConsistencyConfig, evaluate_consistency, video_consistency
from openwfm.evaluate.masks import ColorMaskConfig, fit_color_model, label_pixels, mask_iou, object_masks
from openwfm.evaluate.metrics import (EvalError, I3DFeatures, effnet_video_features, fd_effnet, feature_distance,
                                      frechet_distance, fvd, gaussian_fit, perceptual_distance, psnr, ssim)
from openwfm.evaluate.physics import (BASELINES, PhysicsConfig, WorldModelPredictor, copy_last, evaluate_physics,
                                      linear_extrapolation)
from openwfm.evaluate.report import write_report

__all__ = ["EvalError", "psnr", "ssim", "perceptual_distance", "frechet_distance", "gaussian_fit",
           "feature_distance", "effnet_video_features", "fd_effnet", "I3DFeatures", "fvd",
           "PhysicsConfig", "evaluate_physics", "copy_last", "linear_extrapolation", "BASELINES",
           "WorldModelPredictor", "ColorMaskConfig", "fit_color_model", "label_pixels", "object_masks", "mask_iou",
           "ConsistencyConfig", "evaluate_consistency", "video_consistency", "write_report"]
