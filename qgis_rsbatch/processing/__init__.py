"""rsbatch's Processing provider: resolve tiles, search scenes, run an RGB/NDVI job."""
