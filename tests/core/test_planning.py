"""Planning: AOI → tiles → scenes → one cell per scene, and the estimate of its cost."""

from __future__ import annotations

import pytest

from qgis_rsbatch.core.errors import InvalidInput
from qgis_rsbatch.core.estimate import FULL_TILE_PIXELS, estimate, window_pixels
from qgis_rsbatch.core.planning import JobRequest, find_scenes, make_job, plan


def _request(sample, **fields):
    data = {"aoi": sample["aoi"], "start": sample["start"], "end": sample["end"],
            "output": "/tmp/out", "catalog": sample["catalog"], **fields}
    return JobRequest(**data)


def test_sample_job_has_one_cell_per_tile_and_date(sample_catalog):
    result = plan(_request(sample_catalog), job_id="j")
    assert [t.tile for t in result.tiles] == ["32TMT", "32TNT"]
    cells = {c.cell_id: c for c in result.job.cells}
    assert sorted(cells) == ["32TMT_2024-06-01", "32TMT_2024-06-11", "32TNT_2024-06-01",
                             "32TNT_2024-06-11"]
    cell = cells["32TMT_2024-06-01"]
    assert cell.job_id == "j" and cell.output == "file:///tmp/out"
    assert cell.offset == -0.1 and cell.scale == 0.0001 and cell.cloud_mask
    assert cell.aoi["type"] == "Polygon" and cell.scene_id == "S2B_32TMT_20240601_0_L2A"
    assert cell.bands["red"].endswith("32TMT_2024-06-01/B04.tif")
    assert result.job.params["catalog"] == sample_catalog["catalog"]


def test_cloud_limit_and_exclusions(sample_catalog):
    clear = plan(_request(sample_catalog, max_cloud=20), job_id="j").job
    assert {c.date for c in clear.cells} == {"2024-06-01"}
    some = plan(_request(sample_catalog), job_id="j",
                exclude=["32TNT_2024-06-11", "S2B_32TMT_20240611_0_L2A"]).job
    assert sorted(c.cell_id for c in some.cells) == ["32TMT_2024-06-01", "32TNT_2024-06-01"]


def test_unticked_scenes_are_left_out(sample_catalog):
    request = _request(sample_catalog)
    found = find_scenes(request)
    job = make_job(request, [s for s in found.scenes if s.tile == "32TNT"], job_id="j")
    assert {c.tile for c in job.cells} == {"32TNT"}
    with pytest.raises(InvalidInput, match="no scene selected"):
        make_job(request, [])


@pytest.mark.parametrize(("fields", "message"), [
    ({"start": "2024-06-11", "end": "2024-06-01"}, "the date range is empty"),
    ({"start": "2024-02-30"}, "start date '2024-02-30' is not a date"),
    ({"products": ("ndvi", "ndvx")}, "products: unknown product.s. ndvx; known: rgb, ndvi"),
    ({"max_cloud": 140}, "the cloud limit must be 0–100 %"),
])
def test_bad_requests(sample_catalog, fields, message):
    with pytest.raises(InvalidInput, match=message):
        _request(sample_catalog, **fields)


def test_a_date_range_without_scenes_is_bad_input(sample_catalog):
    with pytest.raises(InvalidInput, match=r"no Sentinel-2 scene of tile\(s\) 32TMT, 32TNT "
                                           r"between 2023-01-01 and 2023-01-31"):
        plan(_request(sample_catalog, start="2023-01-01", end="2023-01-31"))


def test_point_aoi_means_whole_tiles(sample_catalog):
    lon, lat = sample_catalog["aoi"]["coordinates"][0][0]
    job = plan(_request(sample_catalog, aoi={"type": "Point", "coordinates": [lon, lat]}),
               job_id="j").job
    assert all(cell.aoi is None for cell in job.cells)


def test_real_items_plan_with_the_corrected_offsets(real_items_file):
    aoi = {"type": "Polygon", "coordinates": [[[9.2, 47.3], [9.8, 47.3], [9.8, 47.6],
                                               [9.2, 47.6], [9.2, 47.3]]]}
    request = JobRequest(aoi=aoi, start="2020-03-01", end="2020-03-05", output="s3://b/p",
                         catalog=str(real_items_file))
    job = plan(request, job_id="real").job
    assert {c.tile for c in job.cells} <= {"32TMT", "32TNT", "32UMU", "32UNU"}
    for cell in job.cells:
        # the newest run (baseline 05.00, offset already removed by Element 84) is planned
        assert cell.scene_id.endswith("_1_L2A") and cell.offset == 0.0
        assert cell.bands["red"].startswith("https://sentinel-cogs.s3.us-west-2.amazonaws.com/")


def test_estimate_scales_with_the_aoi_and_prices_aws(sample_catalog):
    job = plan(_request(sample_catalog), job_id="j").job
    pixels = [window_pixels(cell) for cell in job.cells]
    # the AOI covers about 70 % × 76 % of a 600 px crop on each tile
    assert all(150_000 < px < 600_000 for px in pixels)
    whole = plan(_request(sample_catalog, clip=False), job_id="w").job
    assert all(window_pixels(cell) == FULL_TILE_PIXELS for cell in whole.cells)
    local = estimate(job)
    aws = estimate(whole, backend="aws", spot_price=0.05)
    assert local.cells == 4 and local.tiles == 2 and local.dollars is None
    assert aws.dollars > 0 and aws.vcpu_hours > 4 * local.vcpu_hours  # whole tiles cost more
    # compute, +30 % for start-up, idle tail and retries, and 6 state transitions per cell
    assert aws.dollars == pytest.approx(aws.vcpu_hours * 0.05 * 1.3 + 4 * 6 * 0.025 / 1000)
    assert "$" in aws.summary() and "here" in local.summary()


def test_the_estimate_sizes_each_cell_as_if_alone_across_aois_tiles_and_zones():
    """The estimate reuses one AOI's projection per zone; it must never mix AOIs or tiles."""
    from qgis_rsbatch.core.contract import Job

    bands = {k: f"s3://b/{k}.tif" for k in ("blue", "green", "red", "nir")}
    near = {"type": "Polygon", "coordinates": [[[8.9, 45.0], [9.3, 45.0], [9.3, 45.3],
                                                 [8.9, 45.3], [8.9, 45.0]]]}
    wide = {"type": "Polygon", "coordinates": [[[8.5, 44.8], [9.6, 44.8], [9.6, 45.6],
                                                 [8.5, 45.6], [8.5, 44.8]]]}
    cells = [{"tile": tile, "date": f"2024-06-0{day}", "bands": bands, "aoi": aoi,
              "output": "file:///tmp/x", "cloud_mask": False, "job_id": f"j{n}"}
             for n, aoi in enumerate((near, wide))
             for tile in ("32TMR", "32TNR", "32TMQ")  # zone 32; 32TNR overlaps zone 33's edge
             for day in (1, 2)]
    jobs = [Job.from_dict({"job_id": "j0", "cells": [c for c in cells if c["job_id"] == "j0"]}),
            Job.from_dict({"job_id": "j1", "cells": [c for c in cells if c["job_id"] == "j1"]})]
    mixed = Job.from_dict({"job_id": "jm", "cells": [{**c, "job_id": "jm", "date":
                                                      f"2024-06-{i + 10}"}
                                                     for i, c in enumerate(cells)]})
    alone = sum(window_pixels(cell) for job in jobs for cell in job.cells)
    assert estimate(mixed).pixels == alone
    assert {window_pixels(c) for c in jobs[0].cells} != {window_pixels(c) for c in jobs[1].cells}


def test_a_job_naming_a_tile_date_twice_is_refused_with_the_duplicates():
    from qgis_rsbatch.core.contract import Job
    from qgis_rsbatch.core.errors import InvalidInput

    bands = {k: f"s3://b/{k}.tif" for k in ("blue", "green", "red", "nir")}
    cells = [{"tile": "32TMT", "date": f"2024-06-{day:02d}", "bands": bands,
              "cloud_mask": False, "output": "file:///tmp/x"} for day in (1, 2, 1, 3, 2)]
    with pytest.raises(InvalidInput, match=r"^job has duplicate cell ids: "
                                           r"32TMT_2024-06-01, 32TMT_2024-06-02$"):
        Job.from_dict({"job_id": "j", "cells": cells})
    assert len(Job.from_dict({"job_id": "j", "cells": cells[:2]}).cells) == 2
