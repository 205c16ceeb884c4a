"""Internal: what operators use around a listener: the health endpoint and metrics, log
formats, queue maintenance (migrate, delete) and record / replay files. The command line
(`tcpulse.cli`) is their public face.
"""
