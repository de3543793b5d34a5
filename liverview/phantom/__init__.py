"""The synthetic four-phase pediatric liver CT phantom: writes real DICOM plus ground truth."""
