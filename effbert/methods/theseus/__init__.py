"""BERT-of-Theseus (Xu et al., EMNLP 2020): compress a fine-tuned BERT by progressive module replacing.

The fine-tuned teacher (the predecessor) is cut into modules of consecutive layers; each module gets one successor
layer, initialised as a copy of one of the teacher's first layers. During training every module is replaced by its
successor with probability ``p`` (one draw per module per batch), ``p`` rising on a schedule until only successors
run; only the successors train, on the task loss. The student is the teacher with its layers swapped for the
successors: a plain model of the teacher's family, with fewer layers (`replacement`).
"""
