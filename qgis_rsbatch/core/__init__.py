"""The pure-Python core shared by the plugin, the `rsbatch` command line and the Lambda.

Standard library only at import time; optional packages (boto3, pyproj) are imported where
used. Never imports qgis, Qt or rasterio.
"""
