"""GoogLeNet region detector: dataset layer, box layer, config and (with torch) the network.

Importing this package is cheap: only numpy-based modules load here. The network code
(torch) lives in modules that are imported where the network runs.
"""
