"""The only modules that touch private names of Keras and hls4ml, and one that
works around a Keras behaviour with public names (:mod:`.ops64`: float64 kept
float64 on JAX and PyTorch).

Each function says which upstream version it was checked on and why no
public API serves; everything else in hgq_fpga uses public APIs only (a test
greps for it).
"""
