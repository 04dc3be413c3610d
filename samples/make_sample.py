#!/usr/bin/env python3
"""Regenerate samples/returned-mail-2026-12-03.csv.

The file imitates a mailroom's returned-post register saved from Excel on
Windows as "CSV UTF-8": a UTF-8 byte order mark, CRLF line ends, fields
quoted only when they hold a comma, a double quote or a line break, and a
line break inside a cell written as CRLF within the quotes.

Every person and address is made up. Supporter ids come from a seeded
generator, so the output is byte-for-byte the same on every run.

Usage: python3 samples/make_sample.py [OUTPUT_PATH]
"""

import csv
import os
import random
import sys

HEADER = [
    "Supporter ID",
    "Title",
    "First Name",
    "Last Name",
    "Address Line 1",
    "Address Line 2",
    "Suburb",
    "State",
    "Postcode",
    "Return Reason",
    "Date Returned",
]

# Title, first, last, address 1, address 2, suburb, state, postcode,
# reason, date returned (DD/MM/YYYY). Postcodes are text: NT ones keep
# their leading zero.
ROWS = [
    ("Mr", "Barry", "Mundi", "14 Wattle Example Cres", "", "Casuarina", "NT", "0810", "Moved away", "24/11/2026"),
    ("Ms", "Shelley", "Beach", "Unit 4, 12 Smith St", "", "Parramatta", "NSW", "2150", "Addressee unknown", "24/11/2026"),
    ("Mrs", "Polly", "Wattle", "PO Box 9999", "", "Alice Springs", "NT", "0870", "Insufficient address", "25/11/2026"),
    ("Dr", "Ima", "Sample", "Flat 2\r\nRear of 18 Fictional Rd", "", "Fitzroy", "VIC", "3065", "Moved away", "25/11/2026"),
    ("Mr", "Noah", "Reply", "7 Placeholder Ave", "", "Toowong", "QLD", "4066", "Refused", "25/11/2026"),
    ("Miss", "Zoë", "Testcase", "33 Dummy Lane", "", "Nightcliff", "NT", "0810", "Addressee unknown", "26/11/2026"),
    ("", "Sandy", "Dunes", "Lot 5, Mock Station Rd", "via Example Creek", "Katherine", "NT", "0850", "Insufficient address", "26/11/2026"),
    ("Mr", "Bill", "Board", "101 Invented Pde", "", "Glenelg", "SA", "5045", "Deceased", "26/11/2026"),
    ("Ms", "Rhoda", "Dendron", "22 Notreal St", "", "Fremantle", "WA", "6160", "Moved away", "27/11/2026"),
    ("Mrs", "Dot", "Matrix", "Suite 3, Level 2", "88 Pretend Tce", "Hobart", "TAS", "7000", "Addressee unknown", "27/11/2026"),
    ("Mr", "José", "Placeholder", "6 Bogus Cl", "", "Palmerston", "NT", "0830", "Refused", "27/11/2026"),
    ("Dr", "Ella", "Vation", "The \"Gum Tree\" Farm", "1200 Makebelieve Hwy", "Braidwood", "NSW", "2622", "Moved away", "28/11/2026"),
    ("Mr", "Justin", "Case", "9 Sample Way", "", "Braddon", "ACT", "2612", "Addressee unknown", "28/11/2026"),
    ("Ms", "Anne", "Tipodes", "Apartment 1207\r\n45 Exemplar Blvd", "", "Southbank", "VIC", "3006", "Insufficient address", "28/11/2026"),
    ("Mr", "Douglas", "Fir", "3 Lorem Ipsum St", "", "Tennant Creek", "NT", "0860", "Moved away", "29/11/2026"),
    ("Mrs", "Carol", "Singer", "17 Festive Ct", "", "Mackay", "QLD", "4740", "Deceased", "29/11/2026"),
    ("Miss", "Kit", "Chen-Sink", "Unit 9, 2 Fauxton Rd", "", "Darwin City", "NT", "0800", "Addressee unknown", "29/11/2026"),
    ("Mr", "Rusty", "Gate", "RMB 410", "Imaginary Rd", "Mount Barker", "SA", "5251", "Insufficient address", "30/11/2026"),
    ("Ms", "Grace", "O'Fiction", "5/60 Madeup St", "", "Subiaco", "WA", "6008", "Refused", "30/11/2026"),
    ("Mr", "Al", "Beback", "12 Never Never Rd", "", "Alice Springs", "NT", "0870", "Moved away", "30/11/2026"),
    ("Dr", "Penny", "Farthing", "Shop 2, Example Arcade", "210 Test St", "Launceston", "TAS", "7250", "Addressee unknown", "01/12/2026"),
    ("Mrs", "Heidi", "Hoe", "41 Sandbox Dr", "", "Wollongong", "NSW", "2500", "Moved away", "01/12/2026"),
    ("Mr", "Chip", "Board", "8 Circuit Cres", "", "Nhulunbuy", "NT", "0880", "Insufficient address", "01/12/2026"),
    ("Ms", "Marie", "Gold", "77 Biscuit St", "", "Geelong", "VIC", "3220", "Deceased", "02/12/2026"),
    ("Mr", "Ray", "Dio", "Care of Example Post Office", "", "Humpty Doo", "NT", "0836", "Refused", "02/12/2026"),
    ("Miss", "Tess", "Tickle", "19 Specimen Rd", "", "Cairns", "QLD", "4870", "Addressee unknown", "02/12/2026"),
    ("Mr", "Hugh", "Millity", "2 Trial Pl", "", "Tuggeranong", "ACT", "2900", "Moved away", "03/12/2026"),
    ("Mrs", "Ann", "Ode", "Unit 12, 300 Fictitious Hwy", "", "Coconut Grove", "NT", "0810", "Moved away", "03/12/2026"),
    ("Ms", "Eve", "Ning", "64 Dusk Ave", "", "Norwood", "SA", "5067", "Insufficient address", "03/12/2026"),
    ("Mr", "Pat", "Pending", "1 Nowhere Lane", "", "Broome", "WA", "6725", "Addressee unknown", "03/12/2026"),
]

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SEED = 20261203


def supporter_ids(count):
    """Distinct XXXX-XXXX-XXXX-XXXX ids from a fixed seed."""
    rng = random.Random(SEED)
    seen = set()
    out = []
    while len(out) < count:
        groups = ["".join(rng.choice(ID_ALPHABET) for _ in range(4)) for _ in range(4)]
        sid = "-".join(groups)
        if sid not in seen:
            seen.add(sid)
            out.append(sid)
    return out


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    path = argv[1] if len(argv) > 1 else os.path.join(here, "returned-mail-2026-12-03.csv")
    ids = supporter_ids(len(ROWS))
    # utf-8-sig writes the BOM; newline="" keeps the CRLFs exactly as given.
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
        writer.writerow(HEADER)
        for sid, row in zip(ids, ROWS):
            writer.writerow((sid,) + row)
    print(f"wrote {len(ROWS)} rows to {path}")


if __name__ == "__main__":
    main(sys.argv)
