"""``labkit.lab()``: the one call at the top of every notebook.

It ensures the server and the shop database, connects JupySQL's ``%sql`` magic as
``shop`` with settings that make failures loud (so nbval catches them) and outputs
stable, and returns a :class:`Lab` with pandas/psycopg/SQLAlchemy helpers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.string import TextLoader

from labkit.config import Settings
from labkit.errors import ConnectError, LabkitError
from labkit.notebook import failures
from labkit.servers import lifecycle
from labkit.servers.base import ConnectionInfo

SHOP_DB = "shop"
ALIAS = "shop"
DISPLAY_LIMIT = 20
SCALE_QUERY = "SELECT value FROM public.labkit_meta WHERE key = 'scale'"
WHERE = {"portable": "on this machine", "local": "on this machine", "docker": "in Docker"}  # else "at <host>"
SQLMAGIC_CONFIG = {
    "short_errors": False,  # a failing SQL cell raises, so nbval and nbclient see it
    "displaycon": False,  # no host/port in outputs
    "feedback": 0,  # no "N rows affected" chatter
    "named_parameters": "'disabled'",  # ':' in JSON literals is not a bind parameter
    "displaylimit": DISPLAY_LIMIT,
    "autopandas": False,
    "autocommit": True,
}


def _json_as_text(dbapi_conn: Any, _record: Any) -> None:
    """Show json/jsonb values as JSON text (as psql does), not as Python dicts."""
    raw = getattr(dbapi_conn, "driver_connection", dbapi_conn)
    for name in ("json", "jsonb"):
        raw.adapters.register_loader(name, TextLoader)


def make_engine(info: ConnectionInfo, dbname: str = SHOP_DB) -> sa.Engine:
    """A SQLAlchemy engine in autocommit mode: statements commit as in psql; BEGIN/COMMIT still work."""
    engine = sa.create_engine(info.sqlalchemy_url(dbname), isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    sa.event.listen(engine, "connect", _json_as_text)
    return engine


class ResetDone(float):
    """The seconds a reset took; shown as a sentence."""

    @property
    def seconds(self) -> float:
        return float(self)

    def __repr__(self) -> str:
        return f"The shop database is pristine again (restored from its template in {self.seconds:.2f} s)."

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


@dataclass
class Lab:
    """What a notebook gets back from ``labkit.lab()``."""

    info: ConnectionInfo
    engine: sa.Engine
    dbname: str = SHOP_DB
    _extras: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def url(self) -> str:
        return self.info.url(self.dbname, hide_password=True)

    def connect(self, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection:
        """A new psycopg 3 connection to the shop (close it, or use ``with``)."""
        return self.info.connect(self.dbname, autocommit=autocommit, **kwargs)

    def df(self, query: str, params: dict[str, Any] | None = None) -> Any:
        """Run ``query`` and return a pandas DataFrame."""
        import pandas as pd

        with self.engine.connect() as conn:
            return pd.read_sql_query(sa.text(query), conn, params=params)

    def explain(self, query: str, *, analyze: bool = False, buffers: bool = False) -> None:
        """Print the plan as psql shows it (indentation kept). Without costs, so the shape is stable;
        ``analyze=True`` runs the query (in a transaction that is rolled back) and adds real row counts and timings."""
        options = ["COSTS OFF"] + (["ANALYZE"] if analyze else []) + (["BUFFERS"] if buffers else [])
        with self.connect(autocommit=False) as conn:
            rows = conn.execute(f"EXPLAIN ({', '.join(options)}) {query}").fetchall()  # type: ignore[arg-type]
            conn.rollback()
        print("\n".join(r[0] for r in rows))

    def sessions(self, *names: str) -> Any:
        """Live sessions side by side (default ``a`` and ``b``) for the concurrency lessons."""
        from labkit.notebook.sessions import Sessions

        return Sessions(self.info, self.dbname, names or ("a", "b"))

    def check(self, exercise: str, answer: Any) -> Any:
        """Check your answer to ``exercise`` ("03.2"): SQL text, a DataFrame or a %sql result."""
        from labkit import exercises

        return exercises.check(self.info, self.dbname, exercise, answer)

    def hint(self, exercise: str) -> Any:
        """The next level of hint for ``exercise`` (the concept, the approach, nearly the answer), shown as text."""
        from labkit import exercises

        return exercises.hint(exercise)

    def solution(self, exercise: str) -> Any:
        """A reference solution for ``exercise``, from the instructor notebooks, once you checked an attempt of your own."""
        from labkit.exercises import checker
        from labkit.notebook.workspace import reference_solution

        checker.spec(exercise)  # an unknown id is an error naming the known ones
        return reference_solution(exercise, checker._attempts[exercise])

    @property
    def today(self) -> Any:
        """The dataset's fixed "today" (``labkit_today()`` in SQL)."""
        from labkit.shop.generator import AS_OF

        return AS_OF

    def reset(self) -> ResetDone:
        """Restore the shop database from its pristine template; notebooks are never touched.

        Every open connection to the shop (``%sql`` in any notebook) reconnects by itself at its next statement."""
        from labkit.notebook import class_reset
        from labkit.shop import database

        if self.dbname != SHOP_DB:
            if not class_reset.available():
                raise LabkitError(
                    f"The database {self.dbname!r} is not labkit's own shop, so it cannot be reset from the notebook.",
                    class_reset.ASK_INSTRUCTOR,
                )
            self.engine.dispose()  # the service ends this kernel's sessions; the next statement reconnects
            return ResetDone(class_reset.request_reset())
        self.engine.dispose()
        return ResetDone(database.reset(self.info))

    def __repr__(self) -> str:
        return f"<labkit lab: {self.dbname} on PostgreSQL via {self.info.provider}>"


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _configure_magic(lab: Lab) -> None:
    ip = _shell()
    if ip is None:
        return
    from IPython.utils.capture import capture_output

    try:
        with capture_output():  # JupySQL's start-up tips name local paths: keep outputs portable
            ip.run_line_magic("load_ext", "sql")
    except ModuleNotFoundError as exc:
        raise LabkitError(
            "The %sql magic (JupySQL) is not installed in this kernel.",
            "Install the project into the kernel's environment: pip install -e . (see README).",
        ) from exc
    from labkit.notebook import magic

    magic.install()
    for key, value in SQLMAGIC_CONFIG.items():
        ip.run_line_magic("config", f"SqlMagic.{key} = {value}")
    ip.user_ns["_labkit_engine"] = lab.engine
    ip.run_line_magic("sql", f"_labkit_engine --alias {ALIAS}")
    _configure_display()


def _configure_display() -> None:
    import matplotlib
    import pandas as pd

    pd.set_option("display.max_rows", DISPLAY_LIMIT)
    pd.set_option("display.max_columns", 20)
    pd.set_option("display.width", 160)
    pd.set_option("display.max_colwidth", 90)
    matplotlib.rcParams.update({"figure.figsize": (8, 4), "figure.dpi": 80, "axes.grid": True, "svg.hashsalt": "labkit"})


def _named_shop_copy(info: ConnectionInfo) -> str | None:
    """The database a URL names when it is a loaded copy of the shop (a student's own on a class server), else None."""
    if info.provider != "url" or info.maintenance_db in (SHOP_DB, "postgres"):
        return None
    try:
        with info.connect() as conn:
            row = conn.execute("SELECT value FROM public.labkit_meta WHERE key = 'schema_stage'").fetchone()
    except psycopg.Error:
        return None
    return info.maintenance_db if row and row[0] == "finish" else None


def lab(*, load_data: bool = True, server: str | None = None, scale: float | None = None) -> Lab:
    """Ensure PostgreSQL 16 and the shop database, connect ``%sql``, and return the :class:`Lab`.

    Raises a real exception if the lab cannot be reached: JupySQL's own "no active
    connection" message is a UsageError that test runners do not count as a failure.
    """
    if (shell := _shell()) is not None:
        failures.install(shell)  # from here on, errors show as psql or as one sentence, not as tracebacks
    settings = Settings.load(server=server, scale=scale)
    info = lifecycle.ensure_server(settings)
    failures.watch(info)
    own = _named_shop_copy(info)
    if load_data and own is None:
        from labkit.shop import database

        with lifecycle.locked(settings):
            for note in database.ensure_shop(info, scale=settings.scale, progress=True):
                print(f"labkit: {note}")
    dbname = own or (SHOP_DB if load_data else info.maintenance_db)
    engine = make_engine(info, dbname)
    try:
        with engine.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar_one()
            scale_loaded = conn.exec_driver_sql(SCALE_QUERY).scalar_one_or_none() if load_data else None
    except sa.exc.OperationalError as exc:
        raise ConnectError(f"The lab database {dbname!r} does not answer: {exc.orig}", "Run 'labkit doctor' in a terminal.") from exc
    result = Lab(info=info, engine=engine, dbname=dbname)
    _configure_magic(result)
    print(_summary(info, str(version), dbname, scale_loaded))
    return result


def _summary(info: ConnectionInfo, version: str, dbname: str, scale_loaded: str | None) -> str:
    """One line: which PostgreSQL, where it runs, and whether the shop is loaded."""
    where = WHERE.get(info.provider, f"at {info.host}")
    if dbname == SHOP_DB or scale_loaded:
        database = f"the shop database is loaded (scale {scale_loaded})" if scale_loaded else "the shop database is loaded"
    else:
        database = f"connected to the {dbname} database (the shop was not loaded)"
    return f"labkit: PostgreSQL {version.split()[0]} {where} ({info.provider}); {database}."
