"""The chapters' measurements of models: cost, gradients, and the probes the prose draws on.

Its modules::

    timing          interleaved median timings that synchronise on every device
    analysis        saved-for-backward and peak tensor bytes; gradient norms through time
    gating          what the gates of an LSTM or GRU do on a task
    normalization   pre-norm against post-norm: gradients by depth, rank collapse
    comparison      every family at a matched size: training, long-range scores, costs
    recall          multi-query associative recall against each family's state size
"""
