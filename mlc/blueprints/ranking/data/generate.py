"""Generate the blueprint's sample data: judged search impressions and daily product stats.

    python data/generate.py [--out data] [--seed 11]

Writes data/judgements.parquet (one row per product shown for a query, graded 0-3) and
data/item_daily.parquet (one row per product and day), so that `mlc run --env dev` trains,
gates and registers the re-ranker on this machine. The same seed gives the same rows.
Replace both with your own logs: the columns are those ml.yaml declares.

What decides relevance: the text match (bm25, title_match) and the product's standing *on
the day of the search* (its click-through rate and rating then, and its price), plus noise.
Each query shows 8-30 candidates; a few are bought, more clicked, most ignored. Timestamps
are fixed (ending 2025-06-30) so the data never changes; the training window counts back
from the newest judgement, not from today.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

END = pd.Timestamp("2025-06-30", tz="UTC")
DAYS = 45
ITEMS = 300
QUERIES = 1000


def _days() -> pd.DatetimeIndex:
    return pd.date_range(END - pd.Timedelta(days=DAYS), periods=DAYS, freq="D", unit="us")


def item_daily(rng: np.random.Generator) -> pd.DataFrame:
    ids = np.arange(1, ITEMS + 1)
    appeal = rng.beta(2.0, 30.0, ITEMS)  # a product's long-run click-through rate
    rating = np.clip(rng.normal(4.0, 0.6, ITEMS), 1, 5)
    price = np.round(rng.lognormal(3.5, 0.8, ITEMS), 2)
    rows = []
    for day in _days():
        rows.append(pd.DataFrame({
            "item_id": ids, "event_timestamp": day,
            "ctr_30d": np.round(np.clip(appeal * rng.lognormal(0, 0.25, ITEMS), 0, 1), 4),
            "rating": np.round(np.clip(rating + rng.normal(0, 0.05, ITEMS), 0, 5), 2),
            "price": price}))
    df = pd.concat(rows, ignore_index=True)
    df.loc[rng.random(len(df)) < 0.01, "rating"] = np.nan  # some gaps, as in life
    return df


def judgements(rng: np.random.Generator, items: pd.DataFrame) -> pd.DataFrame:
    start = END - pd.Timedelta(days=DAYS - 1)
    seconds = np.sort(rng.integers(0, (DAYS - 1) * 86400, QUERIES))
    frames = []
    for q, second in enumerate(seconds):
        n = int(rng.integers(8, 31))
        shown = rng.choice(np.arange(1, ITEMS + 1), n, replace=False)
        # the candidates of one query were shown a second apart, in the engine's order
        ts = start + pd.to_timedelta(second + np.arange(n), unit="s")
        bm25 = np.round(rng.gamma(2.0, 4.0, n), 3)
        title = np.round(rng.beta(2.0, 3.0, n), 3)
        frames.append(pd.DataFrame({
            "query_id": np.full(n, q + 1, dtype=np.int64), "item_id": shown.astype(np.int64),
            "event_timestamp": ts.astype("datetime64[us, UTC]"),
            "bm25": bm25, "title_match": title}))
    df = pd.concat(frames, ignore_index=True)
    # the product's stats as of each impression: the newest daily row at or before it
    asof = pd.merge_asof(df.reset_index().sort_values("event_timestamp"),
                         items.sort_values("event_timestamp"), on="event_timestamp",
                         by="item_id", direction="backward").set_index("index").sort_index()
    score = (0.12 * df["bm25"].to_numpy() + 2.0 * df["title_match"].to_numpy()
             + 12.0 * asof["ctr_30d"].fillna(0.05).to_numpy()
             + 0.8 * (asof["rating"].fillna(4.0).to_numpy() - 4.0)
             - 0.25 * np.log(asof["price"].to_numpy())
             + rng.gumbel(0, 0.5, len(df)))
    # grades by how far above its query's typical candidate a product stands
    centred = score - pd.Series(score).groupby(df["query_id"].to_numpy()).transform(
        "median").to_numpy()
    df["relevance"] = np.digitize(centred, [0.6, 1.4, 2.2]).astype(np.int64)
    return df


def generate(seed: int = 11) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = item_daily(rng)
    return {"item_daily": items, "judgements": judgements(rng, items)}


def write(frames: dict[str, pd.DataFrame], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet", index=False, compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    write(generate(args.seed), args.out)
    for path in sorted(args.out.glob("*.parquet")):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
