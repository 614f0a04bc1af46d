"""HLS C++ and Tcl templates that hgq_fpga adds to hls4ml projects.

Installed as the package ``hgq_fpga.hls_templates``; read them with
:func:`hgq_fpga.templates.read_template`.
"""
