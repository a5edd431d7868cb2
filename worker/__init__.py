"""The per-cell worker: Sentinel-2 bands in, RGB and NDVI Cloud-Optimized GeoTIFFs out."""
