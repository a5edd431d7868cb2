"""An independent Cloud-Optimized GeoTIFF check for the tests: GDAL's own validator.

`osgeo_utils.samples.validate_cloud_optimized_geotiff` (Debian's python3-gdal, which QGIS
brings) is Even Rouault's reference check of the COG layout. With `full_check` it also reads
every tile's size leader and trailer, so a file the worker's writer assembled by hand is held
against GDAL's reading of the format, not against the writer's own structure reader.
"""

from __future__ import annotations


def gdal_cog_errors(path: str) -> list[str]:
    """GDAL's list of COG errors for a local file ([] when it is a valid COG)."""
    from osgeo import gdal
    from osgeo_utils.samples import validate_cloud_optimized_geotiff as reference

    ds = gdal.OpenEx(str(path), gdal.OF_RASTER)
    if ds is None:
        return [f"GDAL cannot open it: {gdal.GetLastErrorMsg()}"]
    try:
        _warnings, errors, _details = reference.validate(ds, check_tiled=True, full_check=True)
    except reference.ValidateCloudOptimizedGeoTIFFException as exc:
        return [str(exc)]
    finally:
        ds = None
    return list(errors)


def assert_valid_cog(path: str) -> None:
    errors = gdal_cog_errors(path)
    assert errors == [], f"{path} is not a valid COG for GDAL: {errors}"
