"""What a notebook touches: ``labkit.lab()``, the ``%sql`` magic and its fixes, and the lesson helpers.

``lab`` connects a notebook to the shop, ``magic`` makes JupySQL behave like psql, ``sessions``
runs side-by-side sessions, ``explain`` draws plans and ``erd`` draws the schema.
"""
