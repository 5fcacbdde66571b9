"""Tables whose rows are Structs: column names and SQL types derived from the Struct's fields, so a
new field is a new column without a hand-kept list of types to fall out of step with it."""

import msgspec
from msgspec import inspect
from psycopg.types.json import Jsonb

_SQL = {
    inspect.UUIDType: "uuid", inspect.StrType: "text", inspect.LiteralType: "text", inspect.IntType: "integer",
    inspect.DecimalType: "numeric", inspect.BoolType: "boolean", inspect.DateTimeType: "timestamptz",
    inspect.StructType: "jsonb", inspect.ListType: "jsonb", inspect.DictType: "jsonb",
}


def _sql_type(t: inspect.Type) -> str:
    if isinstance(t, inspect.UnionType):  # `X | None`: a nullable column of X
        (t,) = [m for m in t.types if not isinstance(m, inspect.NoneType)]
    return _SQL[type(t)]


def columns(struct: type[msgspec.Struct], *, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """Column name -> SQL type of each field of `struct`, in field order."""
    return {f.name: _sql_type(f.type) for f in inspect.type_info(struct).fields if f.name not in exclude}


def recordset(param: str, cols: dict[str, str]) -> str:
    """A SELECT of `cols` from the JSON array in parameter `param` (one round trip for many rows)."""
    typed = ", ".join(f"{c} {t}" for c, t in cols.items())
    return f"SELECT {', '.join(cols)} FROM jsonb_to_recordset(%({param})s::jsonb) AS r({typed})"


def upsert(table: str, cols: list[str], key: str, source: str) -> str:
    """INSERT `source` (a SELECT or VALUES of `cols`) into `table`, updating every column on a key clash."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key)
    return f"INSERT INTO {table} ({', '.join(cols)}) {source} ON CONFLICT ({key}) DO UPDATE SET {updates}"


def param(value: object) -> object:
    """A field's value as a statement parameter: a list or a Struct goes to its jsonb column as JSON."""
    return Jsonb(value, dumps=msgspec.json.encode) if isinstance(value, (list, dict, msgspec.Struct)) else value
