"""What is in the server: the shop database's schema, generated data, bulk load, template and reset.

``schema`` applies ``sql/`` in order, ``generator`` makes the deterministic rows, ``bulkload``
streams them with COPY, and ``database`` keeps the pristine template that ``reset`` clones.
"""
