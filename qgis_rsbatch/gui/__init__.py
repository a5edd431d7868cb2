"""The plugin's widgets, map tool, layers and styles: the QGIS adapter around the core."""
