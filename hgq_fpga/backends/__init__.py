"""Backends: the IR -> firmware projects (:mod:`.hls4ml`: hls4ml HLS projects;
:mod:`.rtl`: Verilog whose structure hgq_fpga fixes, with yosys synthesis and
Icarus Verilog simulation)."""
