"""Figures and widgets; every figure the book shows is drawn here.

Its modules::

    plots              the chapters' plots: curves, bars, costs, the recorded seeds' spread
    attention_plots    attention weights as heatmaps, per model or per layer and head
    state_space_plots  the State-space chapter's figures (discretization, kernels, matrices)
    figure             what every figure shares: its input checks and its canvas
    diagrams           cell and block diagrams (LSTM, GRU, Mamba) drawn from their data flow
    widgets            the interactive explorers (ipywidgets), static where no kernel runs
    receptive_field    a TCN's receptive field, measured by gradients and drawn
    alt_text           each figure's alt text, written from its title, axes and legend
"""
