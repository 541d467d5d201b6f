"""Algorithms written from scratch, below the models that use them.

Its modules::

    bptt        backpropagation through time by hand, checked against autograd
    clipping    gradient clipping by norm and by value
    discretize  continuous-time state spaces to discrete (zero-order hold, bilinear)
    scan        the linear recurrence h_t = a_t ⊙ h_{t-1} + b_t: sequential, fast, parallel
    hippo       the HiPPO-LegS matrices and their online reconstruction
    ssd         state-space duality: the selective scan as one masked matrix
"""
