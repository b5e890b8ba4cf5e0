"""Run by ParaView's pvpython (system Python) from tests/test_outputs.py: open what twin wrote."""
import json, sys
from paraview.simple import OpenDataFile
from paraview import servermanager as sm
pvd, act = sys.argv[1], sys.argv[2]
r = OpenDataFile(pvd)
times = list(r.TimestepValues)
r.UpdatePipeline(times[-1])
d = sm.Fetch(r)
a = OpenDataFile(act)
a.UpdatePipeline()
d2 = sm.Fetch(a)
rng = d.GetPointData().GetArray("Vm").GetRange()
print(json.dumps({"times": times, "n_points": d.GetNumberOfPoints(), "n_cells": d.GetNumberOfCells(),
                  "arrays": [d.GetPointData().GetArrayName(i) for i in range(d.GetPointData().GetNumberOfArrays())],
                  "vm_range": list(rng),
                  "act_arrays": [d2.GetPointData().GetArrayName(i) for i in range(d2.GetPointData().GetNumberOfArrays())],
                  "act_range": list(d2.GetPointData().GetArray("activation_time").GetRange()),
                  "act_cells": d2.GetNumberOfCells()}))
