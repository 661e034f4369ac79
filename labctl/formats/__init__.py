"""File formats other tools read (PicoQuant PTU for raw tags).

Leaf codecs on top of ``labctl.interfaces``: the runner's stores write them and the twins
replay them, so they sit below both.
"""
