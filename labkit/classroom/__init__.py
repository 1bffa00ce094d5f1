"""A whole class on one shared PostgreSQL 16: a login role and a shop database per student, and the JupyterHub hook.

``roster`` reads LMS roster exports, ``provision`` creates, resets, lists and drops the students'
roles and databases (as a role with CREATEDB and CREATEROLE, no superuser needed), ``credentials``
keeps their passwords in a private file, and ``hub`` hands each JupyterHub user their own database.
"""
