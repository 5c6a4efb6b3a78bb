"""DynaBERT (Hou et al., NeurIPS 2020): one model whose sub-networks of any (width, depth) on a grid run alone.

Width keeps the most important attention heads and FFN neurons of every layer (the model is rewired once so that
they come first); depth keeps an evenly spread subset of layers. Training distils the teacher into every
sub-network at once (`subnetworks`).
"""
