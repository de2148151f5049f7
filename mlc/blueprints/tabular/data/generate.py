"""Generate the bundled example's sample data: card transactions and daily aggregates.

    python data/generate.py [--out data] [--seed 7]

The three parquet files under data/ are committed (about 1 MB together) so that `mlc run`
works on a fresh machine with no network; this script is how they were made, and running it
again with the same seed gives the same rows (the files may differ byte for byte across
pyarrow versions, their contents do not; tests/test_mlc_run.py checks this).

The fraud label depends on the features *as they were when the transaction happened*: a
merchant whose chargeback rate spikes for a week, a customer whose account is new. A join
that takes the latest feature values instead of the point-in-time ones learns less, which
is what the example is meant to show. Timestamps are fixed (ending 2025-06-30) so the data
never changes; the training window counts back from the newest transaction, not from today.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

END = pd.Timestamp("2025-06-30", tz="UTC")
DAYS = 120
CUSTOMERS = 400
MERCHANTS = 80
TRANSACTIONS = 20_000


def _days() -> pd.DatetimeIndex:
    return pd.date_range(END - pd.Timedelta(days=DAYS), periods=DAYS, freq="D", unit="us")


def customer_daily(rng: np.random.Generator) -> pd.DataFrame:
    days = _days()
    ids = np.arange(1, CUSTOMERS + 1)
    # a fifth of the customers open their account during the period: their history is short
    age0 = rng.gamma(2.0, 400.0, CUSTOMERS).astype(np.int64)
    opened = np.where(rng.random(CUSTOMERS) < 0.2, rng.integers(0, DAYS - 20, CUSTOMERS), 0)
    rate = rng.gamma(2.0, 1.5, CUSTOMERS)  # transactions per day
    spend = rng.lognormal(3.5, 0.6, CUSTOMERS)  # typical amount
    rows = []
    for d, day in enumerate(days):
        live = opened <= d
        age = np.where(opened > 0, d - opened, age0 + d)
        count = rng.poisson(rate * 7)
        avg = spend * rng.lognormal(0.0, 0.15, CUSTOMERS)
        rows.append(pd.DataFrame({
            "customer_id": ids[live], "event_timestamp": day,
            "txn_count_7d": count[live], "amount_avg_7d": np.round(avg[live], 2),
            "account_age_days": age[live]}))
    df = pd.concat(rows, ignore_index=True)
    df.loc[rng.random(len(df)) < 0.01, "amount_avg_7d"] = np.nan  # some gaps, as in life
    return df


def merchant_daily(rng: np.random.Generator) -> pd.DataFrame:
    days = _days()
    ids = np.arange(1, MERCHANTS + 1)
    base = rng.beta(1.0, 60.0, MERCHANTS)
    volume = rng.gamma(2.0, 150.0, MERCHANTS)
    # some merchants go through a bad week (a breach): their chargeback rate jumps
    spike_day = rng.integers(0, DAYS, MERCHANTS)
    spiky = rng.random(MERCHANTS) < 0.3
    rows = []
    for d, day in enumerate(days):
        in_spike = spiky & (d >= spike_day) & (d < spike_day + 7)
        rate = np.clip(base * rng.lognormal(0, 0.2, MERCHANTS) + in_spike * 0.15, 0, 1)
        rows.append(pd.DataFrame({
            "merchant_id": ids, "event_timestamp": day,
            "chargeback_rate_30d": np.round(rate, 4),
            "txn_count_30d": rng.poisson(volume * 30)}))
    return pd.concat(rows, ignore_index=True)


def transactions(rng: np.random.Generator, customers: pd.DataFrame,
                 merchants: pd.DataFrame) -> pd.DataFrame:
    start = END - pd.Timedelta(days=DAYS - 1)
    seconds = np.sort(rng.integers(0, (DAYS - 1) * 86400, TRANSACTIONS))
    ts = start + pd.to_timedelta(seconds, unit="s")
    popularity = rng.dirichlet(np.full(MERCHANTS, 0.7))
    df = pd.DataFrame({
        "transaction_id": [f"tx-{i:06d}" for i in range(TRANSACTIONS)],
        "customer_id": rng.integers(1, CUSTOMERS + 1, TRANSACTIONS),
        "merchant_id": rng.choice(np.arange(1, MERCHANTS + 1), TRANSACTIONS, p=popularity),
        "event_timestamp": ts.astype("datetime64[us, UTC]"),
    })
    # the features as of each transaction: the newest daily row at or before it
    asof = df.sort_values("event_timestamp")
    for table, key in ((customers, "customer_id"), (merchants, "merchant_id")):
        asof = pd.merge_asof(asof, table.sort_values("event_timestamp"), on="event_timestamp",
                             by=key, direction="backward")
    asof = asof.set_index("transaction_id").loc[df["transaction_id"]]
    avg = asof["amount_avg_7d"].fillna(asof["amount_avg_7d"].median()).to_numpy()
    fraud_amount = rng.random(TRANSACTIONS) < 0.5
    df["amount"] = np.round(np.minimum(avg * rng.lognormal(0, 0.5, TRANSACTIONS), 50_000), 2)
    logit = (-7.2 + 60.0 * asof["chargeback_rate_30d"].fillna(0).to_numpy()
             + 5.0 * np.exp(-asof["account_age_days"].fillna(9999).to_numpy() / 60)
             + 0.09 * asof["txn_count_7d"].fillna(0).to_numpy())
    is_fraud = rng.random(TRANSACTIONS) < 1 / (1 + np.exp(-logit))
    # fraudsters often spend more than the card's usual amount (not a model input: noise)
    df.loc[is_fraud & fraud_amount, "amount"] = np.round(avg[is_fraud & fraud_amount] * 4, 2)
    df["is_fraud"] = is_fraud.astype(np.int64)
    # customers without a feature row yet (account not open) are dropped, as a bank would
    known = asof["account_age_days"].notna().to_numpy()
    return df[known].reset_index(drop=True)


def generate(seed: int = 7) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    customers = customer_daily(rng)
    merchants = merchant_daily(rng)
    return {
        "customer_daily": customers,
        "merchant_daily": merchants,
        "transactions": transactions(rng, customers, merchants),
    }


def write(frames: dict[str, pd.DataFrame], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet", index=False, compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    write(generate(args.seed), args.out)
    for path in sorted(args.out.glob("*.parquet")):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
