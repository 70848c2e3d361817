import csv
import io
import json
import os

import click

from ..errors import EXIT_OK, EXIT_ROW_ERRORS
from ..gallery import Gallery
from ..jobs.collect import gallery_fingerprints
from .options import GalleryDir, expect_digest_option, handle_errors, stream_options

CSV_COLUMNS = ["path", "rank", "model", "distance", "key", "error"]


@click.command("search")
@click.argument("queries", nargs=-1, required=True)
@click.option("--gallery", "-g", required=True, type=GalleryDir())
@click.option("-k", "k", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True,
              help="table: for reading; json: one array, an object per query ({path, error, models: [{model, "
                   "distance}], neighbors: [{rank, model, distance, key}]}); csv: a row per neighbour "
                   f"({', '.join(CSV_COLUMNS)}). Queries in input order, unreadable ones in place with "
                   "their error (null for a fine query).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default=None,
              help="Write the results to this file instead of stdout.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@expect_digest_option
@stream_options
@handle_errors
def search_cmd(queries, gallery, k, fmt, out, overwrite, expect_digest, opts):
    """Nearest enrolled samples (with their source keys) and nearest models of each query image.

    \b
    Example:
      fpfast search suspicious.png --gallery my_gallery -k 5
      fpfast search queries/ --gallery my_gallery --format json --out hits.json
    """
    if out and os.path.exists(out) and not overwrite:
        raise click.UsageError(f"--out {out} exists: pass --overwrite to replace it or choose another")
    g = Gallery.load(gallery, expect_digest=expect_digest)
    fp = gallery_fingerprints(g, list(queries), opts, desc="queries")
    records = search_records(g, fp, k)
    text = {"table": format_table, "json": format_json, "csv": format_csv}[fmt](records)
    if out:
        tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.tmp")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, out)
    else:
        click.echo(text, nl=False)
    raise SystemExit(EXIT_ROW_ERRORS if fp.errors else EXIT_OK)


def search_records(g: Gallery, fp, k: int) -> list[dict]:
    """One record per query, in input order: path, error (None when fine), nearest models and
    neighbours (empty for an unreadable query)."""
    res = g.search(fp.vectors, k=k) if len(fp.keys) else None
    models = res.nearest_models() if res is not None else []
    names, keys = (res.models, res.keys) if res is not None else ([], [])
    records, i, j = [], 0, 0
    for ok in fp.ok_in_order:
        if not ok:
            records.append({"path": fp.errors[j]["path"], "error": fp.errors[j]["error"], "models": [],
                            "neighbors": []})
            j += 1
            continue
        nb = [{"rank": r + 1, "model": str(names[i][r]), "distance": float(res.distances[i, r]),
               "key": keys[i][r]} for r in range(res.ids.shape[1]) if res.ids[i, r] >= 0]
        records.append({"path": fp.keys[i], "error": None,
                        "models": [{"model": m, "distance": d} for m, d in models[i]], "neighbors": nb})
        i += 1
    return records


def format_table(records: list[dict]) -> str:
    lines = []
    for r in records:
        if r["error"] is not None:
            lines.append(f"{r['path']}: error: {r['error']}")
            continue
        lines.append(r["path"])
        lines.append("  models:  " + ", ".join(f"{m['model']} ({m['distance']:.3g})" for m in r["models"]))
        lines += [f"  {n['rank']:2d}. {n['model']:<20s} d={n['distance']:.4g}  {n['key']}" for n in r["neighbors"]]
    return "".join(line + "\n" for line in lines)


def format_json(records: list[dict]) -> str:
    return json.dumps(records, indent=1, ensure_ascii=False) + "\n"


def format_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in records:
        if r["error"] is not None:
            w.writerow({"path": r["path"], "error": r["error"]})
        for n in r["neighbors"]:
            w.writerow({"path": r["path"], **n})
    return buf.getvalue()
