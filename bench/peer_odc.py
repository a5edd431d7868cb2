"""The AOI benchmark's peer: odc-stac loading the same bands over the same window.

    bench/.peer-venv/bin/python bench/peer_odc.py URL SCENE_DIR BOUNDS_JSON EPSG

Runs in its own venv (odc-stac brings xarray, dask and pandas). The STAC item is built from
the local files' own grid (read locally, not counted), its assets point at the range server;
odc-stac then reads the window with GDAL's cloud defaults, as its users do. Prints seconds.
"""

from __future__ import annotations

import json
import os
import sys
import time

FILES = {"blue": "B02.tif", "green": "B03.tif", "red": "B04.tif", "nir": "B08.tif",
         "scl": "SCL.tif"}


def item(url: str, scene: str, epsg: int):
    import pystac
    import rasterio
    from rasterio.warp import transform_geom

    with rasterio.open(os.path.join(scene, FILES["red"])) as ds:
        left, bottom, right, top = ds.bounds
    footprint = transform_geom(f"EPSG:{epsg}", "EPSG:4326", {
        "type": "Polygon", "coordinates": [[(left, bottom), (right, bottom), (right, top),
                                            (left, top), (left, bottom)]]})
    lons = [p[0] for p in footprint["coordinates"][0]]
    lats = [p[1] for p in footprint["coordinates"][0]]
    assets = {}
    for key, name in FILES.items():
        with rasterio.open(os.path.join(scene, name)) as ds:
            extra = {"proj:epsg": epsg, "proj:shape": [ds.height, ds.width],
                     "proj:transform": list(ds.transform)[:6],
                     "raster:bands": [{"data_type": ds.dtypes[0], "nodata": ds.nodata}]}
        assets[key] = pystac.Asset(f"{url}/{name}", media_type=pystac.MediaType.COG,
                                   roles=["data"], extra_fields=extra)
    out = pystac.Item("scene", geometry=footprint,
                      bbox=[min(lons), min(lats), max(lons), max(lats)],
                      datetime=__import__("datetime").datetime(2024, 6, 1), properties={})
    for key, asset in assets.items():
        out.add_asset(key, asset)
    return out


def main() -> None:
    import odc.stac
    from odc.geo.geobox import GeoBox

    url, scene, bounds, epsg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
    odc.stac.configure_rio(cloud_defaults=True)
    geobox = GeoBox.from_bbox(bounds, crs=f"EPSG:{epsg}", resolution=10)
    items = [item(url, scene, epsg)]
    started = time.perf_counter()
    data = odc.stac.load(items, bands=list(FILES), geobox=geobox,
                         resampling={"scl": "nearest", "*": "nearest"}, pool=2)
    for name in FILES:
        data[name].values.sum()  # touch every pixel
    print(time.perf_counter() - started)


if __name__ == "__main__":
    main()
