"""rsbatch QGIS plugin package.

Only `classFactory` lives here and it imports the GUI lazily, so `import qgis_rsbatch.core`
works anywhere (the CLI, the Lambda, the worker image) without QGIS.
"""


def classFactory(iface):
    from .plugin import RsbatchPlugin

    return RsbatchPlugin(iface)
