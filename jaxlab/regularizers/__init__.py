"""Regularizers and data-side tricks: penalties, mixing, reweighting, augmentation."""
