"""Read the world: DICOM folders, DICOMDIR, zips, PACS image exports with LabelMe boxes; write them back. No Qt."""
