"""The model engine: bundles, composites in, detection, two-stage diagnosis and Grad-CAM out. No Qt."""
