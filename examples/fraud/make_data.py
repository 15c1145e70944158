"""Write the fraud example's data folder: synthetic card transactions, Python 3 stdlib only.

Usage: python3 make_data.py [--flawed] DEST

Everything is generated (seed 14): no real person, account or card is in it. Layout:
    inputs/train.csv          id, features..., is_fraud     (~24,000 rows)
    inputs/test.csv           id, features...               (10,000 rows, the private test set)
    labels.csv                id, is_fraud                  (answers for test.csv; private)
    sample/inputs/train.csv   1,000 rows drawn from the training rows (public)
    sample/inputs/test.csv      500 rows drawn from the training rows (public)
    sample/labels.csv           their answers

Features: amount, hour, merchant_category, channel, account_age_days, customer_id,
customer_age, postcode, sex. customer_id is a direct identifier and (customer_age,
postcode, sex) are quasi-identifiers: the README shows how to pseudonymise and generalise
them with `holdout prepare pseudonymise` before the challenge opens.

--flawed writes the first version an organiser might export, with what the preparation
check must catch:
    - chargeback_days in every file: days until the chargeback, 0 for a genuine
      transaction, so it gives the label away (a leak);
    - in the public sample: customer_email, iban (valid mod-97), card_number (Luhn-valid)
      and a free-text note that sometimes quotes a valid French NIR.
"""

import os
import random
import sys

SEED = 14
N_TRAIN = 24000
N_TEST = 10000
SAMPLE_TRAIN = 1000
SAMPLE_TEST = 500
CATEGORIES = ["grocery", "fuel", "travel", "electronics", "fashion", "restaurants", "online", "pharmacy"]
CHANNELS = ["chip", "contactless", "online", "phone"]
DEPARTMENTS = [("75", 0.5), ("69", 0.3), ("13", 0.2)]
FIRST = ["jean", "marie", "pierre", "sophie", "luc", "claire", "paul", "julie", "marc", "anne"]
LAST = ["martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau"]


def luhn_digit(digits):
    total = 0
    for i, c in enumerate(reversed(digits)):
        v = int(c)
        if i % 2 == 0:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return str((10 - total % 10) % 10)


def card_number(rng):
    body = "4" + "".join(str(rng.randrange(10)) for _ in range(14))
    n = body + luhn_digit(body)
    return " ".join(n[i:i + 4] for i in range(0, 16, 4))


def iban(rng):
    bban = "".join(str(rng.randrange(10)) for _ in range(23))
    moved = bban + "FR00"
    number = int("".join(str(int(c, 36)) for c in moved))
    check = 98 - number % 97
    raw = "FR%02d%s" % (check, bban)
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4))


def nir(rng, sex, age):
    year = (2025 - age) % 100
    body = "%d%02d%02d%s%03d%03d" % (1 if sex == "M" else 2, year, rng.randint(1, 12), rng.choice(["75", "69", "13"]),
                                    rng.randint(1, 999), rng.randint(1, 999))
    key = 97 - int(body) % 97
    n = body + "%02d" % key
    return " ".join([n[0], n[1:3], n[3:5], n[5:7], n[7:10], n[10:13], n[13:]])


def transaction(rng, leak_rng, flawed):
    category = rng.choice(CATEGORIES)
    channel = rng.choice(CHANNELS)
    hour = rng.randrange(24)
    account_age = int(rng.expovariate(1 / 900)) + 1
    amount = round(rng.lognormvariate(3.4, 1.0), 2)
    age = rng.randint(20, 79)
    dept = rng.choices([d for d, _ in DEPARTMENTS], [w for _, w in DEPARTMENTS])[0]
    postcode = "%s%03d" % (dept, rng.choice([1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 15, 20]))
    sex = rng.choice("FM")
    score = -4.2 + 0.9 * (amount > 150) + 0.8 * (hour < 6) + 1.1 * (channel in ("online", "phone")) \
        + 1.0 * (account_age < 60) + 0.6 * (category in ("electronics", "travel")) + rng.gauss(0, 0.7)
    is_fraud = int(rng.random() < 1 / (1 + 2.718281828 ** -score))
    row = {
        "amount": "%.2f" % amount,
        "hour": hour,
        "merchant_category": category,
        "channel": channel,
        "account_age_days": account_age,
        "customer_id": "C%06d" % rng.randrange(1000000),
        "customer_age": age,
        "postcode": postcode,
        "sex": sex,
    }
    if flawed:
        row["chargeback_days"] = leak_rng.randint(3, 60) if is_fraud else 0
    return row, is_fraud


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(quote(r[h]) for h in header) + "\n")
    os.chmod(path, 0o644)


def quote(v):
    s = str(v)
    return '"%s"' % s.replace('"', '""') if any(c in s for c in ',"\n') else s


def main(flawed, dest):
    rng = random.Random(SEED)
    # The flaws draw from their own generators, so the fixed data is the flawed data minus them.
    leak_rng = random.Random(SEED + 1)
    pii_rng = random.Random(SEED + 2)
    ids = rng.sample(range(1000000, 9999999), N_TRAIN + N_TEST)
    rows = []
    for i in ids:
        row, y = transaction(rng, leak_rng, flawed)
        row["id"] = "T%d" % i
        row["is_fraud"] = y
        rows.append(row)
    train, test = rows[:N_TRAIN], rows[N_TRAIN:]
    test.sort(key=lambda r: r["id"])
    features = ["amount", "hour", "merchant_category", "channel", "account_age_days", "customer_id",
                "customer_age", "postcode", "sex"] + (["chargeback_days"] if flawed else [])
    write_csv(os.path.join(dest, "inputs", "train.csv"), ["id"] + features + ["is_fraud"], train)
    write_csv(os.path.join(dest, "inputs", "test.csv"), ["id"] + features, test)
    write_csv(os.path.join(dest, "labels.csv"), ["id", "is_fraud"], test)

    picked = rng.sample(train, SAMPLE_TRAIN + SAMPLE_TEST)
    sample_features = list(features)
    if flawed:
        sample_features += ["customer_email", "iban", "card_number", "note"]
        for r in picked:
            r["customer_email"] = "%s.%s%d@example.com" % (pii_rng.choice(FIRST), pii_rng.choice(LAST), pii_rng.randrange(100))
            r["iban"] = iban(pii_rng)
            r["card_number"] = card_number(pii_rng)
            r["note"] = "client called, NIR %s" % nir(pii_rng, r["sex"], r["customer_age"]) if pii_rng.random() < 0.05 else "ok"
    s_train = sorted(picked[:SAMPLE_TRAIN], key=lambda r: r["id"])
    s_test = sorted(picked[SAMPLE_TRAIN:], key=lambda r: r["id"])
    write_csv(os.path.join(dest, "sample", "inputs", "train.csv"), ["id"] + sample_features + ["is_fraud"], s_train)
    write_csv(os.path.join(dest, "sample", "inputs", "test.csv"), ["id"] + sample_features, s_test)
    write_csv(os.path.join(dest, "sample", "labels.csv"), ["id", "is_fraud"], s_test)
    for d in ["", "inputs", "sample", os.path.join("sample", "inputs")]:
        os.chmod(os.path.join(dest, d), 0o755)
    frauds = sum(r["is_fraud"] for r in rows)
    print("fraud%s: %d train, %d test, sample %d+%d rows, %.1f%% fraud, written to %s"
          % (" (flawed)" if flawed else "", len(train), len(test), len(s_train), len(s_test),
             100.0 * frauds / len(rows), dest))


if __name__ == "__main__":
    args = sys.argv[1:]
    flawed = "--flawed" in args
    args = [a for a in args if a != "--flawed"]
    if len(args) != 1:
        sys.exit("usage: make_data.py [--flawed] DEST")
    main(flawed, args[0])
