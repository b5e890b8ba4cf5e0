"""Writers: ParaView time series (VTU + PVD), maps, CSV, JSON and checkpoints."""
